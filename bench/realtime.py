"""Real-time on real frame sizes: time outside the network, before and after, in one run.

    python bench/realtime.py [--threads 2] [--reps 8] [--json bench/realtime.json]

"Before" is the code at ``--before`` (default: the commit this work started from), read with
``git show`` and loaded beside the current code in the same process: ``ccnet/processing.py``
(its ``segment`` was all of ``Segmenter.segment``) and ``runtime/video.py``.  Both run on the
same ONNX Runtime CPU sessions (``--threads`` intra-op threads), interleaved repetition by
repetition, so machine load hits both alike; the JSON records how much CPU other processes
used.  Models (random weights where not trained; speed does not depend on them): ccnet-demo
(8 classes, trained), R50-D8 Cityscapes (19 classes), R50-D8 ADE20K (150 classes, memory).

Parts: (1) ccnet-demo at 1080p: segment() ÷ network time; (2) R50-D8 Cityscapes at 1080p:
pre/post-processing share of end to end (the network runs once per repetition, both paths'
processing around the same logits), plus the post-processing of smooth synthetic 19-class
logits (a random-weight network predicts one class, which is the easy case); (3) video at
1280x720: pipeline throughput ÷ pure inference rate; (4) peak RSS of segment() on a 150-class
model, in subprocesses.  Targets: bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from typing import Tuple

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BEFORE = "8296d12"  # main before the fast paths (processing.py, video.py)
DEMO_SIZES = {"640x480": (480, 640), "1280x720": (720, 1280), "1920x1080": (1080, 1920)}


# ----------------------------------------------------------------------------- set-up
def load_before(ref: str, path: str, name: str, package: str, replace=()) -> types.ModuleType:
    """Module ``name`` from ``git show ref:path`` (imports rewritten by ``replace``)."""
    source = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    for old, new in replace:
        if old not in source:
            raise SystemExit(f"{ref}:{path} has no {old!r}")
        source = source.replace(old, new)
    module = types.ModuleType(name)
    module.__package__, module.__file__ = package, f"<{ref}:{path}>"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def make_models(work: str) -> dict:
    """ONNX files (cached in ``work``): demo, demo with label head, R50 Cityscapes, R50 ADE."""
    from ccnet.checkpoint import build_model, save_checkpoint
    from ccnet.zoo import get_config
    from export.to_onnx import export_onnx

    paths = {k: os.path.join(work, f"{k}.onnx") for k in ("demo", "demo_head", "r50_city",
                                                         "r50_ade")}
    configs = {"r50_city": "ccnet_r50-d8_4xb2-80k_cityscapes-512x1024",
               "r50_ade": "ccnet_r50-d8_4xb4-80k_ade20k-512x512"}
    for key, path in paths.items():
        if os.path.exists(path):
            continue
        source = "ccnet-demo"
        if key in configs:
            source = os.path.join(work, f"{key}.pth")
            save_checkpoint(build_model(get_config(configs[key])), source)  # random weights
        export_onnx(source, path, label_head=key == "demo_head", verify=False,
                    log=lambda *a: None)
        print(f"exported {path}", file=sys.stderr)
    return paths


def street_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    from ccnet.synthetic import make_scene

    return cv2.resize(make_scene(seed)[0], (width, height), interpolation=cv2.INTER_LINEAR)


def median_of_ms(values) -> float:
    return round(float(np.median(values)) * 1e3, 2)


CPU_TIMES: dict = {}  # label -> process CPU seconds per call (all threads), filled by timed()


def timed(fn, label: str = ""):
    """(wall seconds, result); with ``label`` the process CPU time is kept too: on a shared
    machine wall time grows with other jobs, the CPU time a step costs much less so."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if label:
        CPU_TIMES.setdefault(label, []).append(time.process_time() - cpu)
    return time.perf_counter() - start, result


def cpu_ms(label: str) -> float:
    return median_of_ms(CPU_TIMES.pop(label, [float("nan")]))


def smooth_logits(shape, seed: int = 0, cell: int = 24) -> np.ndarray:
    """Logits with a network's look (smooth regions of ~cell px, many classes competing)."""
    num_classes, h, w = shape
    coarse = np.random.default_rng(seed).standard_normal(
        (num_classes, h // cell + 2, w // cell + 2)).astype(np.float32)
    return np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in coarse])


# ----------------------------------------------------------------------------- (1) demo
def demo_segment(paths: dict, old, threads: int, reps: int) -> list:
    """ccnet-demo: segment() before / after / after with the label head, and the network
    alone, per frame size; stage times of both paths around the same network."""
    from runtime import Segmenter

    seg = Segmenter(paths["demo"], device="cpu", threads=threads)
    head = Segmenter(paths["demo_head"], device="cpu", threads=threads)
    meta, rows = seg.meta, []
    for label, (height, width) in DEMO_SIZES.items():
        image = street_frame(height, width)
        batch = seg.preprocessor(image).copy()
        logits = seg.infer(batch)[0]
        runs = {"network": lambda: seg.infer(batch),
                "before": lambda: old.segment(image, meta, seg.infer),
                "after": lambda: seg.segment(image),
                "after_label_head": lambda: head.segment(image),
                "before_pre": lambda: old.preprocess(image, meta),
                "after_pre": lambda: seg.preprocessor(image),
                "before_post": lambda: old.restore_size(logits, image.shape, meta).argmax(0),
                "after_post": lambda: seg.finish(logits, image.shape)}
        times = {k: [] for k in runs}
        for rep in range(reps + 1):  # the first round warms up
            for key, fn in runs.items():
                seconds = timed(fn, key if rep else "")[0]
                if rep:
                    times[key].append(seconds)
        row = {"size": label, **{f"{k}_ms": median_of_ms(v) for k, v in times.items()},
               **{f"{k}_cpu_ms": cpu_ms(k) for k in runs}}
        reference = old.segment(image, meta, seg.infer).labels
        row["after_agreement"] = float((seg.segment(image) == reference).mean())
        row["label_head_agreement"] = float((head.segment(image) == reference).mean())
        for key in ("before", "after", "after_label_head"):
            row[f"{key}_x_network"] = round(row[f"{key}_ms"] / row["network_ms"], 3)
            row[f"{key}_x_network_cpu"] = round(row[f"{key}_cpu_ms"] / row["network_cpu_ms"], 3)
        rows.append(row)
        print(f"demo {label}: {row}", file=sys.stderr)
    return rows


# ----------------------------------------------------------------------------- (2) R50-D8
def r50_processing(paths: dict, old, threads: int, reps: int) -> dict:
    """R50-D8 Cityscapes at 1080p: pre/post of both paths around one network pass per
    repetition; then post-processing alone on smooth synthetic logits of the same shape."""
    from runtime import Segmenter

    seg = Segmenter(paths["r50_city"], device="cpu", threads=threads)
    meta, image = seg.meta, street_frame(1080, 1920)
    times = {k: [] for k in ("before_pre", "after_pre", "network", "before_post", "after_post")}
    for _ in range(reps):
        times["before_pre"].append(timed(lambda: old.preprocess(image, meta), "before_pre")[0])
        seconds, batch = timed(lambda: seg.preprocessor(image), "after_pre")
        times["after_pre"].append(seconds)
        seconds, logits = timed(lambda: seg.network_pass(batch, image.shape)[0], "network")
        times["network"].append(seconds)
        seconds, before = timed(lambda: old.restore_size(logits, image.shape, meta).argmax(0),
                                "before_post")
        times["before_post"].append(seconds)
        seconds, after = timed(lambda: seg.finish(logits, image.shape), "after_post")
        times["after_post"].append(seconds)
    out = {f"{k}_ms": median_of_ms(v) for k, v in times.items()}
    out.update({f"{k}_cpu_ms": cpu_ms(k) for k in times})
    out.update(network_input=list(batch.shape), agreement=float((before == after).mean()),
               predicted_classes=int(len(np.unique(after))))
    for path in ("before", "after"):
        total = out[f"{path}_pre_ms"] + out["network_ms"] + out[f"{path}_post_ms"]
        out[f"{path}_end_to_end_ms"] = round(total, 1)
        out[f"{path}_post_share"] = round(out[f"{path}_post_ms"] / total, 4)
        out[f"{path}_outside_network_share"] = round(1 - out["network_ms"] / total, 4)
    stress = smooth_logits(logits.shape)
    before_s, before = timed(lambda: old.restore_size(stress, image.shape, meta).argmax(0),
                             "stress_before")
    after_s, after = timed(lambda: seg.finish(stress, image.shape), "stress_after")
    out["synthetic_logits"] = {"before_post_ms": round(before_s * 1e3, 1),
                               "after_post_ms": round(after_s * 1e3, 1),
                               "before_post_cpu_ms": cpu_ms("stress_before"),
                               "after_post_cpu_ms": cpu_ms("stress_after"),
                               "classes_in_map": int(len(np.unique(before))),
                               "agreement": float((before == after).mean())}
    print(f"r50 cityscapes 1080p: {out}", file=sys.stderr)
    return out


# ----------------------------------------------------------------------------- (3) video
def write_clip(path: str, height: int, width: int, frames: int) -> str:
    scenes = [street_frame(height, width, seed) for seed in range(8)]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    for i in range(frames):
        writer.write(scenes[i % len(scenes)])
    writer.release()
    return path


def pipeline_fps(video_class, segmenter, clip: str, out: str) -> Tuple[float, float]:
    """(frames per second, process CPU seconds per frame) through a VideoSegmenter writing the
    overlay video, as ccnet-video does."""
    start, cpu, writer, frames = time.perf_counter(), time.process_time(), None, 0
    for result in video_class(segmenter, queue_size=4).run(clip):
        if writer is None:
            h, w = result.overlay.shape[:2]
            writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
        writer.write(result.overlay)
        frames += 1
    writer.release()
    return frames / (time.perf_counter() - start), (time.process_time() - cpu) / frames


def video_throughput(paths: dict, old_video, threads: int, frames: int, rounds: int,
                     work: str, model: str) -> dict:
    """``model`` at 1280x720: pipeline FPS (before, after, and segment_video itself) against
    the pure inference rate (network on a preprocessed frame, measured between the rounds)."""
    from runtime import Segmenter, VideoSegmenter
    from runtime.video_job import segment_video

    seg = Segmenter(paths[model], device="cpu", threads=threads)
    clip = os.path.join(work, f"clip720_{frames}.mp4")
    if not os.path.exists(clip):
        write_clip(clip, 720, 1280, frames)
    batch = seg.preprocessor(street_frame(720, 1280)).copy()
    seg.infer(batch)
    network, fps = [], {"before": [], "after": []}
    cpu = {"before": [], "after": []}
    out = os.path.join(work, "out.mp4")
    for _ in range(rounds):
        network += [timed(lambda: seg.infer(batch), "video_network")[0] for _ in range(5)]
        for key, video_class in (("before", old_video.VideoSegmenter),
                                 ("after", VideoSegmenter)):
            rate, seconds = pipeline_fps(video_class, seg, clip, out)
            fps[key].append(rate)
            cpu[key].append(seconds)
        summary = segment_video(paths[model], clip, output=out, progress=False, device="cpu",
                                threads=threads)
        fps.setdefault("ccnet_video", []).append(summary["fps"])
    pure, network_cpu = 1e3 / median_of_ms(network), cpu_ms("video_network")
    result = {"model": model, "frames": frames, "rounds": rounds, "pure_inference_fps": round(pure, 2),
              "network_ms": median_of_ms(network), "network_cpu_ms": network_cpu,
              "ccnet_video_ms_per_frame": {k: round(v, 2)
                                           for k, v in summary["ms_per_frame"].items()}}
    for key, values in fps.items():
        result[f"{key}_fps"] = round(float(np.mean(values)), 2)
        result[f"{key}_share_of_pure"] = round(float(np.mean(values)) / pure, 3)
    for key, values in cpu.items():
        # CPU-bound on the same cores, throughput ÷ pure inference rate = this ratio.
        result[f"{key}_cpu_ms_per_frame"] = round(float(np.mean(values)) * 1e3, 1)
        result[f"{key}_cpu_share"] = round(network_cpu / (float(np.mean(values)) * 1e3), 3)
    print(f"video 720p: {result}", file=sys.stderr)
    return result


# ----------------------------------------------------------------------------- (4) memory
def probe(kind: str, model: str, width: int, height: int, threads: int, ref: str) -> dict:
    """Run in a fresh process: peak RSS of one segment() (or of the post-processing alone on
    smooth 150-class logits: ``post``) on a width×height street frame."""
    from ccnet.processing import rescale_size
    from runtime.benchmark import peak_rss_mb, reset_peak_rss

    image = street_frame(height, width)
    if kind == "post":
        from ccnet.label_resize import resize_argmax

        new_w, new_h = rescale_size(width, height, (2048, 512))
        logits = smooth_logits((150, new_h, new_w))
        run = (lambda: resize_argmax(logits, (height, width), False))
    elif kind == "after":
        from runtime import Segmenter

        seg = Segmenter(model, device="cpu", threads=threads)
        run = (lambda: seg.segment(image))
    else:
        from runtime import OrtRunner

        old = load_before(ref, "ccnet/processing.py", "ccnet_before_processing", "ccnet")
        runner = OrtRunner(model, device="cpu", threads=threads)
        run = (lambda: old.segment(image, runner.meta, runner.infer))
    load_peak = peak_rss_mb()  # VmHWM since this process started: loading model and image
    reset_peak_rss()
    before = peak_rss_mb()
    seconds = timed(run)[0]
    call_peak = peak_rss_mb()
    return {"kind": kind, "size": f"{width}x{height}", "rss_before_mb": round(before, 1),
            "peak_rss_mb": round(call_peak, 1), "load_peak_rss_mb": round(load_peak, 1),
            "process_peak_rss_mb": round(max(load_peak, call_peak), 1),
            "seconds": round(seconds, 2)}


def memory(paths: dict, threads: int, ref: str) -> list:
    cases = [("after", "4000x3000"), ("post", "4000x3000"), ("after", "1000x750"),
             ("before", "1000x750"), ("before", "1414x1060")]
    rows = []
    for kind, size in cases:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", kind,
                              "--probe-size", size, "--probe-model", paths["r50_ade"],
                              "--threads", str(threads), "--before", ref],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"memory probe {kind} {size} failed: {out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"memory: {rows[-1]}", file=sys.stderr)
    return rows


# ----------------------------------------------------------------------------- report
def print_tables(result: dict) -> None:
    load = result["load"]["other_processes_cpu_share"]
    print(f"ONNX Runtime CPU, {result['threads']} threads; before = {result['before']}; other "
          f"processes used {'?' if load is None else f'{load * 100:.0f}%'} of the CPUs; wall "
          "time (CPU time of the process in brackets)")
    for row in result.get("demo", []):
        print(f"ccnet-demo {row['size']:>9}: network {row['network_ms']:6.1f} ms "
              f"[{row['network_cpu_ms']:6.1f}] | segment() ÷ network: before "
              f"{row['before_x_network']:.2f}x [{row['before_x_network_cpu']:.2f}x], after "
              f"{row['after_x_network']:.2f}x [{row['after_x_network_cpu']:.2f}x], label head "
              f"{row['after_label_head_x_network']:.2f}x "
              f"[{row['after_label_head_x_network_cpu']:.2f}x]")
    if "r50" in result:
        r = result["r50"]
        print(f"R50-D8 Cityscapes 1920x1080: network {r['network_ms']:.0f} ms | pre "
              f"{r['before_pre_ms']:.0f} -> {r['after_pre_ms']:.0f} ms | post "
              f"{r['before_post_ms']:.0f} -> {r['after_post_ms']:.0f} ms | post share "
              f"{r['before_post_share'] * 100:.1f}% -> {r['after_post_share'] * 100:.1f}%")
    for v in result.get("video", []):
        print(f"video 1280x720 {v['model']}: pure inference {v['pure_inference_fps']:.2f} FPS | pipeline "
              f"before {v['before_fps']:.2f} ({v['before_share_of_pure'] * 100:.0f}%) | after "
              f"{v['after_fps']:.2f} ({v['after_share_of_pure'] * 100:.0f}%) | ccnet-video "
              f"{v['ccnet_video_fps']:.2f} ({v['ccnet_video_share_of_pure'] * 100:.0f}%) | "
              f"network CPU ÷ pipeline CPU per frame: before {v['before_cpu_share'] * 100:.0f}%, "
              f"after {v['after_cpu_share'] * 100:.0f}%")
    for m in result.get("memory", []):
        print(f"memory {m['kind']:>6} {m['size']:>9}: process peak RSS "
              f"{m['process_peak_rss_mb']:6.0f} MB (in the call {m['peak_rss_mb']:.0f} MB, "
              f"{m['rss_before_mb']:.0f} MB before it), {m['seconds']} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=8, help="ccnet-demo repetitions")
    parser.add_argument("--r50-reps", type=int, default=2)
    parser.add_argument("--video-frames", type=int, default=40)
    parser.add_argument("--video-models", default="demo,r50_ade",
                        help="models of the video part (keys of make_models; the r50_* ones run "
                             "--video-frames // 4 frames, at least 4)")
    parser.add_argument("--video-rounds", type=int, default=2)
    parser.add_argument("--parts", default="demo,r50,video,memory")
    parser.add_argument("--before", default=BEFORE, help="git commit of the 'before' code")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "ccnet_realtime"))
    parser.add_argument("--json", default=os.path.join(REPO, "bench", "realtime.json"))
    parser.add_argument("--probe", choices=["before", "after", "post"], help=argparse.SUPPRESS)
    parser.add_argument("--probe-size", help=argparse.SUPPRESS)
    parser.add_argument("--probe-model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        width, height = (int(v) for v in args.probe_size.split("x"))
        print(json.dumps(probe(args.probe, args.probe_model, width, height, args.threads,
                               args.before)))
        return 0

    from ccnet.files import write_json
    from runtime.benchmark import CpuShare
    from runtime.machine import library_versions, machine_info

    os.makedirs(args.work, exist_ok=True)
    paths = make_models(args.work)
    old = load_before(args.before, "ccnet/processing.py", "ccnet_before_processing", "ccnet")
    old_video = load_before(args.before, "runtime/video.py", "runtime_before_video", "runtime", [(
        "from ccnet.processing import network_logits, preprocess, restore_size",
        "from ccnet_before_processing import network_logits, preprocess, restore_size")])
    parts = set(args.parts.split(","))
    share = CpuShare()
    result = {"threads": args.threads, "before": args.before, "machine": machine_info(),
              "versions": library_versions(),
              "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    if "demo" in parts:
        result["demo"] = demo_segment(paths, old, args.threads, args.reps)
    if "r50" in parts:
        result["r50"] = r50_processing(paths, old, args.threads, args.r50_reps)
    if "video" in parts:
        result["video"] = [video_throughput(paths, old_video, args.threads,
                                            max(4, args.video_frames // 4)
                                            if key.startswith("r50") else args.video_frames,
                                            args.video_rounds, args.work, key)
                           for key in args.video_models.split(",")]
    if "memory" in parts:
        result["memory"] = memory(paths, args.threads, args.before)
    result["load"] = {"other_processes_cpu_share": share.others(),
                      "loadavg": list(os.getloadavg())}
    print_tables(result)
    write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end speed of a model file (``ccnet bench``): decode → preprocess → infer → postprocess.

For each image size the same picture (a photo given by the caller, else a synthetic street
scene) is JPEG-encoded once, then each repetition decodes ``batch`` copies, preprocesses them
into one batch, runs the network (logits, or the label head) and turns the output into label
maps at the image size — exactly ``Segmenter.segment``'s steps, timed one by one.  Reported per
size: end-to-end latency percentiles, per-stage time and throughput, peak RSS; plus the machine,
library versions, and how busy the machine was with other processes (on a shared machine the
numbers are only comparable within one run).  Torch-free (PyTorch only for .pth models).
"""
from __future__ import annotations

import os
import re
import resource
import time
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ccnet.errors import CCNetError
from ccnet.meta import ModelMeta
from ccnet.processing import rescale_size

from .machine import library_versions, machine_info

STAGES = ("decode", "preprocess", "infer", "postprocess")
DEFAULT_SIZES = "640x480,1280x720,1920x1080"
PERCENTILES = (50, 90, 99)
# Largest side we accept: a 16k frame is already 400 MB of BGR pixels per image.
MAX_SIDE = 16384


# ----------------------------------------------------------------------------- input checks
def parse_sizes(text: str) -> List[Tuple[int, int]]:
    """``"640x480,1920x1080"`` → [(640, 480), (1920, 1080)] (width × height); one-line errors."""
    sizes = []
    for item in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", item)
        if not match:
            raise CCNetError(f"unsupported size {item.strip()!r}: give WIDTHxHEIGHT, e.g. "
                             "1920x1080 (several separated by commas)")
        width, height = int(match.group(1)), int(match.group(2))
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise CCNetError(f"unsupported size {width}x{height}: each side must be 1.."
                             f"{MAX_SIDE} pixels")
        sizes.append((width, height))
    return sizes


def network_input_shape(meta: ModelMeta, width: int, height: int, batch: int) -> Tuple[int, ...]:
    """The N×3×h×w the network sees for a width×height image (a slide window in slide mode)."""
    new_w, new_h = rescale_size(width, height, meta.test_scale)
    if meta.mode == "slide":
        new_h, new_w = min(new_h, meta.crop_size[0]), min(new_w, meta.crop_size[1])
    return batch, 3, new_h, new_w


def check_engine_profile(info, sizes: Sequence[Tuple[int, int]], batch: int) -> None:
    """Every size's network input (and output size, for a label head) inside the engine's
    profile, from its side file alone: one-line errors before TensorRT is loaded."""
    from .engine_info import find_label_head_profile, find_profile

    meta = info.model_meta()
    if meta is None:
        return
    for width, height in sizes:
        shape = network_input_shape(meta, width, height, batch)
        try:
            find_profile(shape, info)
            if info.label_head:
                find_label_head_profile((height, width), info)
        except CCNetError as e:
            raise CCNetError(f"size {width}x{height}, batch {batch}: {e}") from None


def check_contract(meta: ModelMeta, sizes: Sequence[Tuple[int, int]], batch: int) -> None:
    """A file exported with fixed batch/height/width runs only at those: one-line errors."""
    fixed = (meta.extra or {}).get("contract", {}).get("input", {}).get("shape", [])
    for width, height in sizes:
        shape = network_input_shape(meta, width, height, batch)
        for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
            if len(fixed) == 4 and isinstance(fixed[axis], int) and fixed[axis] != shape[axis]:
                what = f"batch {batch}" if axis == 0 else f"size {width}x{height}"
                raise CCNetError(f"{what} needs network input {'x'.join(map(str, shape))} but the "
                                 f"model was exported with a fixed {name} of {fixed[axis]}: "
                                 "re-export with a dynamic one, or bench that input")


# ----------------------------------------------------------------------------- machine load
class CpuShare:
    """CPU time used by *other* processes while we ran: (all busy time − ours) ÷ (wall × CPUs),
    from /proc/stat; None where that file does not exist."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat", encoding="utf-8") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / ticks
        own = sum(os.times()[:4])
        return time.monotonic(), busy, own

    def others(self) -> Optional[float]:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall = end[0] - self.start[0]
        others = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return round(max(others, 0.0) / max(wall * (os.cpu_count() or 1), 1e-9), 3)


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter of this process (Linux clear_refs); False if not
    possible (then peaks are process-wide)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process since start (or the last reset), in MiB.  From
    VmHWM: ``ru_maxrss`` also counts the parent's memory at fork for a process started by exec."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- measuring
def bench_image(width: int, height: int, image=None) -> np.ndarray:
    """The picture benchmarked at width×height: the caller's photo (a path or a BGR array),
    else a synthetic street scene, resized."""
    from ccnet.images import check_image, load_image

    if image is None:
        from ccnet.synthetic import make_scene

        source = make_scene(0)[0]
    else:
        source = load_image(image) if isinstance(image, (str, os.PathLike)) else image
        check_image(source)
    shrink = width * height < source.shape[0] * source.shape[1]
    return cv2.resize(source, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _one_pass(segmenter, encoded: np.ndarray, batch: np.ndarray) -> List[float]:
    """Seconds of each stage for one batch: decode, preprocess, network, label maps."""
    t0 = time.perf_counter()
    images = [cv2.imdecode(encoded, cv2.IMREAD_COLOR) for _ in range(batch.shape[0])]
    t1 = time.perf_counter()
    for row, image in zip(batch, images):
        segmenter.preprocessor(image, out=row)
    t2 = time.perf_counter()
    output = segmenter.network_pass(batch, images[0].shape)
    t3 = time.perf_counter()
    for item, image in zip(output, images):
        segmenter.finish(item, image.shape)
    t4 = time.perf_counter()
    return [t1 - t0, t2 - t1, t3 - t2, t4 - t3]


def _summary(ms: np.ndarray, images: int) -> dict:
    mean = float(ms.mean())
    out = {f"p{p}": round(float(np.percentile(ms, p)), 3) for p in PERCENTILES}
    out.update(mean=round(mean, 3), images_per_s=round(images * 1e3 / mean, 3) if mean else None)
    return out


def bench_size(segmenter, image: np.ndarray, batch: int, warmup: int, reps: int) -> dict:
    """Time ``reps`` passes (after ``warmup``) of a batch of ``image`` copies."""
    height, width = image.shape[:2]
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise CCNetError(f"OpenCV could not JPEG-encode a {width}x{height} image")
    new_w, new_h = rescale_size(width, height, segmenter.meta.test_scale)
    buffer = np.empty((batch, 3, new_h, new_w), np.float32)
    for _ in range(warmup):
        _one_pass(segmenter, encoded, buffer)
    scoped = reset_peak_rss()
    ms = np.array([_one_pass(segmenter, encoded, buffer) for _ in range(reps)]) * 1e3
    total = ms.sum(axis=1)
    return {
        "size": [width, height], "batch": batch,
        "network_input": list(network_input_shape(segmenter.meta, width, height, batch)),
        "latency_ms": _summary(total, batch),
        "ms_per_image": round(float(total.mean()) / batch, 3),
        "stages": {stage: dict(_summary(ms[:, i], batch),
                               share=round(float(ms[:, i].mean() / total.mean()), 4))
                   for i, stage in enumerate(STAGES)},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_scope": "this size (after warm-up)" if scoped else "process",
    }


def _check_counts(batch: int, warmup: int, reps: int) -> None:
    for name, value, least in (("--batch", batch, 1), ("--reps", reps, 1), ("--warmup", warmup, 0)):
        if int(value) < least:
            raise CCNetError(f"{name} must be >= {least}, got {value}")


def benchmark(model: str, sizes=DEFAULT_SIZES, batch: int = 1, warmup: int = 2, reps: int = 10,
              image=None, backend: Optional[str] = None, threads: Optional[int] = None,
              log=print, **runner_opts) -> dict:
    """Benchmark ``model`` (.onnx, .engine, .pth or a zoo name) at each ``sizes`` (a list of
    (width, height) or ``"640x480,..."``); see the module docstring.  Returns the report dict
    that ``ccnet bench --json`` writes."""
    from ccnet.files import require_file

    from .segmenter import Segmenter, runner_kind

    sizes = parse_sizes(sizes) if isinstance(sizes, str) else [tuple(s) for s in sizes]
    _check_counts(batch, warmup, reps)
    kind = runner_kind(model, backend)
    if kind != "torch":
        require_file(model, "engine" if kind == "trt" else "ONNX model")
    if kind == "trt":
        from .engine_info import read_engine_info

        check_engine_profile(read_engine_info(model, check_digest=False), sizes, batch)
    pictures = [bench_image(w, h, image) for w, h in sizes]
    if threads and kind == "ort":
        runner_opts["threads"] = threads
    elif threads and kind == "torch":
        import torch

        torch.set_num_threads(int(threads))
    share = CpuShare()
    start = time.perf_counter()
    with Segmenter(model, backend=backend, **runner_opts) as segmenter:
        load_seconds = time.perf_counter() - start
        load_peak = peak_rss_mb()  # before the per-size resets: includes loading the model
        check_contract(segmenter.meta, sizes, batch)
        results = []
        for (width, height), picture in zip(sizes, pictures):
            log(f"{width}x{height} batch {batch}: {warmup} warm-up + {reps} timed passes")
            results.append(bench_size(segmenter, picture, batch, warmup, reps))
        meta, backend_name = segmenter.meta, segmenter.backend
        label_head = segmenter.label_head
    return {
        "model": str(model), "name": meta.name, "backend": backend_name,
        "precision": (meta.extra or {}).get("precision", "fp32"), "label_head": label_head,
        "num_classes": meta.num_classes, "batch": batch, "warmup": warmup, "reps": reps,
        "threads": threads, "image": str(image) if isinstance(image, str) else
        ("synthetic street scene" if image is None else "array"),
        "load_seconds": round(load_seconds, 3), "results": results,
        "peak_rss_mb_process": round(max([load_peak] + [r["peak_rss_mb"] for r in results]), 1),
        "machine": machine_info(), "versions": library_versions(),
        "load": {"other_processes_cpu_share": share.others()},
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def format_report(report: dict) -> str:
    """The report as a text table (milliseconds per batch; img/s of the whole pipeline)."""
    load = report["load"]["other_processes_cpu_share"]
    busy = "unknown" if load is None else f"{load * 100:.0f}% of the CPUs"
    lines = [f"{report['model']}: {report['backend']} {report['precision']}, "
             f"{'label head' if report['label_head'] else 'logits + host resize/argmax'}, batch "
             f"{report['batch']}, {report['reps']} passes after {report['warmup']} warm-up; "
             f"other processes used {busy}",
             f"{'size':>10} | {'p50':>8} | {'p90':>8} | {'p99':>8} | {'img/s':>7} | "
             + " | ".join(f"{s:>11}" for s in STAGES) + f" | {'peak RSS':>9}"]
    lines.append("-" * len(lines[-1]))
    for r in report["results"]:
        lat = r["latency_ms"]
        stages = " | ".join(f"{r['stages'][s]['p50']:>8.1f} ms" for s in STAGES)
        lines.append(f"{'x'.join(map(str, r['size'])):>10} | {lat['p50']:>5.0f} ms | "
                     f"{lat['p90']:>5.0f} ms | {lat['p99']:>5.0f} ms | "
                     f"{lat['images_per_s']:>7.2f} | {stages} | {r['peak_rss_mb']:>6.0f} MB")
    return "\n".join(lines)

"""INT8 accuracy and speed of the built-in ``ccnet-demo``: every calibration method on a
mixed-size folder, sensitivity-guided mixed precision, ModelOpt's placement.

One run, everything side by side:

- calibration folder: the real photos of the shared data folder (VOC + ADE20K, each its own
  size; label maps skipped by ``calib.selection``) plus synthetic scenes of six other sizes
  (seeds 600000+, far from the training seeds);
- INT8 files (``calib.quantize.quantize``, TensorRT placement): entropy, percentile, minmax on
  that folder; entropy with ``--target-agreement`` (default 99.5) and with ``--max-fallback`` 6
  (the 80 %-INT8 budget), both measuring agreement on ``--holdout``: the seven real photos,
  the hard case for a model trained on synthetic streets; the same three with ``--clip-search
  mse`` (per-tensor clipping thresholds by Conv output error); ModelOpt's placement when it is
  installed;
- parity (``runtime.parity.parity_report``, what ``ccnet parity`` prints; every INT8 file is
  passed as one more model file) against PyTorch FP32 on the VOC photos, the ADE20K photos and
  held-out synthetic scenes (seeds 1000000+); "real" pools the VOC and ADE20K pixels;
- trade-off curve (``curve``): for entropy and entropy + clip search, the top-k Convs of the
  ``--target-agreement`` run's sensitivity ranking kept in float, k = 0, 2, …, 16, agreement
  with the ONNX FP32 file on the VOC + ADE20K photos (pooled) and on the synthetic test scenes
  (``calib.sensitivity.AgreementProbe``, the search's own measure);
- ONNX Runtime CPU latency of every file on one 1×3×256×512 input (network pass, median of
  ``--runs`` rounds, each round one warm-up + one timed pass per file in turn, ``--threads``
  intra-op threads).

The real photos are also calibration and held-out photos (there are only seven, and five with
labels): their agreement is not an independent test; the synthetic test scenes are.

    .venv/bin/python bench/int8_accuracy.py [--scenes 20] [--runs 15] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("CCNET_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
VOC = os.path.join(SHARED, "voc_samples", "deeplabv3plus_pytorch")
ADE = os.path.join(SHARED, "ade20k_samples")
SIZES = [(256, 512), (300, 500), (360, 480), (240, 640), (400, 400), (288, 384)]


def scenes(folder: str, seed: int, count: int) -> None:
    from ccnet.files import write_image
    from ccnet.synthetic import make_scene

    for i in range(count):
        image, _ = make_scene(seed + i, SIZES[i % len(SIZES)])
        write_image(os.path.join(folder, f"scene_{seed + i}.png"), image)


def prepare_photos(work: str):
    """The calibration folder and the held-out folder (see the module docstring)."""
    from calib.selection import photos_in_folder

    calib, holdout = os.path.join(work, "calibration"), os.path.join(work, "holdout")
    os.makedirs(calib)
    os.makedirs(holdout)
    for photo in photos_in_folder(SHARED):
        shutil.copy(photo, calib)
        shutil.copy(photo, holdout)
    scenes(calib, 600000, 24)
    return calib, holdout


def variants(fp32: str, calib: str, holdout: str, work: str, target: float) -> list:
    """(label, path, report) of every INT8 file."""
    from calib.quantize import quantize

    runs = [(f"INT8 {m}", dict(method=m)) for m in ("entropy", "percentile", "minmax")]
    for search, tag in ((None, ""), ("mse", " + clip search")):
        runs += [(f"INT8 entropy{tag}, --target-agreement {target}",
                  dict(target_agreement=target, holdout=holdout, clip_search=search,
                       cache=os.path.join(work, f"cache_{search}.json"),
                       sensitivity_json=os.path.join(work, f"sensitivity_{search}.json"))),
                 (f"INT8 entropy{tag}, --max-fallback 6",
                  dict(max_fallback=6, holdout=holdout, clip_search=search))]
    runs.insert(3, ("INT8 entropy + clip search", dict(clip_search="mse")))
    try:
        import modelopt.onnx.quantization  # noqa: F401
        runs.append(("INT8 ModelOpt placement, entropy ranges", dict(quantizer="modelopt")))
    except ImportError:
        print("ModelOpt not installed: no ModelOpt row")
    made = []
    for i, (label, kwargs) in enumerate(runs):
        out = os.path.join(work, f"int8_{i}.onnx")
        report = quantize(fp32, out, images_dir=calib, progress=False, **kwargs)
        print(f"{label}: {report['quantized_convs']}/{report['convs']} Convs INT8, "
              f"{report['seconds']} s", flush=True)
        made.append((label, out, report))
    return made


CURVE_K = (0, 2, 4, 6, 8, 10, 12, 14, 16)


def tradeoff_curves(fp32: str, work: str, scenes_dir: str, sensitivity: dict) -> dict:
    """Agreement vs Convs in float along each ``--target-agreement`` run's ranking
    (``sensitivity``: its tables, by range method)."""
    import glob

    from calib.cache import load_cache
    from calib.placement import PLACEMENTS, quantize_graph
    from calib.selection import photos_in_folder
    from calib.sensitivity import AgreementProbe
    from calib.source import load_source
    from ccnet.images import load_image

    source = load_source(fp32)
    prepared = source.prepared(work)
    real = [p for root in (VOC, ADE) for p in photos_in_folder(os.path.join(root, "images"))]
    probes = {name: AgreementProbe(prepared, source.input_name, source.meta,
                                   [load_image(p) for p in paths])
              for name, paths in (("real photos", real),
                                  ("synthetic held-out", sorted(glob.glob(
                                      os.path.join(scenes_dir, "images", "*")))))}
    curves = {}
    for search in (None, "mse"):
        cache = load_cache(os.path.join(work, f"cache_{search}.json"))
        ranked = [layer["name"] for layer in sensitivity[search or "entropy"]["layers"]]
        points = []
        for k in CURVE_K:
            model, _ = quantize_graph(prepared, cache["tensors"], cache["method"],
                                      PLACEMENTS["tensorrt"], work, ranked[:k])
            points.append(dict(float_convs=k, int8_convs=len(ranked) - k, **{
                name: round(probe.measure(model)["agreement_pct"], 3)
                for name, probe in probes.items()}))
        curves["entropy" + (" + clip search" if search else "")] = points
        print(f"curve {search or 'entropy'}: {points}", flush=True)
    return curves


def parity_rows(files: list, scenes_dir: str) -> dict:
    """Agreement and mIoU per file on each test set (one parity report per set)."""
    from runtime.parity import parity_report

    sets = {"VOC photos": (VOC, "voc"), "ADE20K photos": (ADE, "ade20k"),
            "synthetic held-out": (scenes_dir, "folder")}
    rows = {}
    for name, (data, layout) in sets.items():
        report = parity_report("ccnet-demo", data, layout, engines=[path for _, path in files],
                               progress=False)
        for (label, _), backend in zip(files, report["backends"][1:]):
            rows.setdefault(label, {})[name] = {
                "pixel_agreement": round(backend["pixel_agreement"], 3),
                "miou": round(backend["miou"], 2), "delta_miou": round(backend["delta_miou"], 2)}
        print(f"parity on {name}: {report['num_images']} image(s)", flush=True)
    pixels = {name: _pixels(data) for name, (data, _) in list(sets.items())[:2]}
    for sets_of_file in rows.values():
        agree = sum(sets_of_file[n]["pixel_agreement"] * pixels[n] for n in pixels)
        sets_of_file["real photos"] = {"pixel_agreement": round(agree / sum(pixels.values()), 3)}
    return rows


def _pixels(root: str) -> int:
    """Pixels of the photos of a dataset folder (parity scores at the photo size)."""
    import cv2

    from calib.selection import photos_in_folder

    return sum(int(np.prod(cv2.imread(p).shape[:2])) for p in photos_in_folder(root))


def latencies(files: list, runs: int, threads: int) -> dict:
    """Median ms per file; the runs are interleaved file by file so that load from other jobs on
    a shared machine spreads over every file alike."""
    from runtime.machine import median_ms
    from runtime.runners import OrtRunner

    batch = np.random.default_rng(0).standard_normal((1, 3, 256, 512)).astype(np.float32)
    runners = {label: OrtRunner(path, device="cpu", threads=threads) for label, path in files}
    try:
        times = {label: [] for label in runners}
        for _ in range(runs):
            for label, runner in runners.items():
                times[label].append(median_ms(lambda: runner.infer(batch), 1))
        return {label: round(float(np.median(t)), 1) for label, t in times.items()}
    finally:
        for runner in runners.values():
            runner.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=20, help="held-out synthetic test scenes")
    p.add_argument("--target", type=float, default=99.5)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=os.path.join(REPO, "bench", "int8_accuracy.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # ONNX Runtime's quantizer logs advice per call

    from ccnet.files import write_json
    from ccnet.synthetic import write_dataset
    from export.to_fp16 import convert_to_fp16
    from export.to_onnx import export_onnx
    from runtime.machine import library_versions, machine_info

    with tempfile.TemporaryDirectory(prefix="ccnet_int8_accuracy_") as work:
        fp32, fp16 = os.path.join(work, "fp32.onnx"), os.path.join(work, "fp16.onnx")
        export_onnx("ccnet-demo", fp32, verify=False, log=lambda *a, **k: None)
        convert_to_fp16(fp32, fp16, verify=False, log=lambda *a, **k: None)
        calib, holdout = prepare_photos(work)
        scenes_dir = write_dataset(os.path.join(work, "test_scenes"), args.scenes, seed=1000000)
        made = variants(fp32, calib, holdout, work, args.target)
        files = [("ONNX FP32", fp32), ("ONNX FP16", fp16)] + [(lb, path) for lb, path, _ in made]
        rows = parity_rows(files, scenes_dir)
        sensitivity = {}
        for search in (None, "mse"):
            with open(os.path.join(work, f"sensitivity_{search}.json")) as f:
                sensitivity[search or "entropy"] = json.load(f)
        curves = tradeoff_curves(fp32, work, scenes_dir, sensitivity)
        speed = latencies(files, args.runs, args.threads)
    result = {"machine": machine_info(), "versions": library_versions(),
              "threads": args.threads, "runs": args.runs, "test_scenes": args.scenes,
              "rows": [dict(model=label, ort_cpu_ms=speed[label], **rows[label],
                            **_int8_info(made, label)) for label, _ in files],
              "curves": curves, "sensitivity_target": sensitivity}
    print_table(result)
    write_json(args.json, result, make_dirs=True)
    print(f"wrote {args.json}")
    return 0


def _int8_info(made: list, label: str) -> dict:
    for lb, _, report in made:
        if lb == label:
            return {"int8_convs": report["quantized_convs"], "convs": report["convs"],
                    "clip_search": report["clip_search"],
                    "fallback_layers": report["fallback_layers"],
                    "holdout_agreement_pct": report["holdout_agreement_pct"]}
    return {}


def print_table(result: dict) -> None:
    print(f"ONNX Runtime {result['versions'].get('onnxruntime')} CPU, {result['machine']['cpu']}, "
          f"{result['threads']} threads; agreement with PyTorch FP32 in %")
    print(f"{'model':<62} {'INT8 Convs':>10} {'VOC':>7} {'ADE20K':>7} {'real':>7} {'synth':>7} "
          f"{'ΔmIoU synth':>11} {'ms':>7}")
    for r in result["rows"]:
        convs = f"{r['int8_convs']}/{r['convs']}" if "convs" in r else "-"
        print(f"{r['model']:<62} {convs:>10} {r['VOC photos']['pixel_agreement']:>7.2f} "
              f"{r['ADE20K photos']['pixel_agreement']:>7.2f} "
              f"{r['real photos']['pixel_agreement']:>7.2f} "
              f"{r['synthetic held-out']['pixel_agreement']:>7.2f} "
              f"{r['synthetic held-out']['delta_miou']:>+11.2f} {r['ort_cpu_ms']:>7.1f}")
    for name, points in result["curves"].items():
        print(f"{name}: " + ", ".join(f"{p['int8_convs']} INT8: {p['real photos']:.2f} / "
                                      f"{p['synthetic held-out']:.2f}" for p in points))


if __name__ == "__main__":
    sys.exit(main())

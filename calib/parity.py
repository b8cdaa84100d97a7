"""mIoU parity report: PyTorch FP32 vs every exported model (ONNX FP32/FP16/INT8, TensorRT).

All backends see the same images with the same pre/post-processing: PyTorch through
``ccnet.predict`` and every file through ``runtime.Segmenter`` (both call
``ccnet.processing.segment``), so any difference is the network pass alone.  Reported per backend:
mIoU (mmseg's dataset-level IoUMetric), ΔmIoU vs PyTorch, per-class ΔIoU and the argmax pixel
agreement with PyTorch.  mIoU, IoU, Δ and agreement are all in percent (mIoU points).

CLI: ``ccnet-parity --ckpt CKPT --data DIR --dataset voc --onnx fp32.onnx --onnx-int8 int8.onnx``
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as `python calib/parity.py`: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from ccnet.datasets import DATASET_KINDS
from ccnet.errors import CCNetError, cli_main
from ccnet.files import atomic_output, atomic_write

EXIT_PARITY_FAILED = 1


def _pct(x) -> Optional[float]:
    x = float(x)
    return None if math.isnan(x) else x * 100.0


def _model_precision(meta, fallback: str) -> str:
    return str((meta.extra or {}).get("precision", fallback))


def parity_report(ckpt: str, data: str, dataset: str, onnx: Optional[str] = None,
                  onnx_fp16: Optional[str] = None, onnx_int8: Optional[str] = None,
                  engines: Sequence[str] = (), max_images: Optional[int] = None,
                  progress: bool = True, config=None) -> Dict[str, object]:
    """Evaluate PyTorch FP32 (``ckpt``) and every given model on ``data`` (``dataset`` layout).

    Returns ``{"dataset", "num_images", "classes", "backends": [{"name", "model", "precision",
    "miou", "delta_miou", "pixel_agreement", "per_class": {class: IoU},
    "per_class_delta": {class: ΔIoU}}, ...]}`` with PyTorch first; values in percent
    (None for a class absent from labels and predictions).
    """
    from tqdm import tqdm

    from ccnet.checkpoint import load_model
    from ccnet.datasets import open_dataset
    from ccnet.inference import predict
    from ccnet.metrics import IoUAccumulator
    from runtime import Segmenter

    given = [(onnx, "fp32"), (onnx_fp16, "fp16"), (onnx_int8, "int8")]
    given += [(e, None) for e in engines]
    given = [(path, precision) for path, precision in given if path]
    if not given:
        raise CCNetError("nothing to compare: give --onnx, --onnx-fp16, --onnx-int8 or --engine")
    data_set = open_dataset(data, dataset).head(max_images)
    model = load_model(ckpt, config=config)
    meta = model.meta
    classes = list(meta.classes)

    backends = [{"name": "pytorch", "model": str(ckpt), "precision": "fp32", "run": None}]
    try:
        for path, flag_precision in given:
            segmenter = Segmenter(path)
            backends.append({"name": segmenter.backend, "model": path, "run": segmenter,
                             "precision": _model_precision(segmenter.meta, flag_precision or "fp32")})
            if segmenter.meta.num_classes != meta.num_classes:
                raise CCNetError(f"{path} predicts {segmenter.meta.num_classes} classes, the "
                                 f"checkpoint {meta.num_classes}: compare files exported from "
                                 "this checkpoint")
        for b in backends:
            b["acc"] = IoUAccumulator(meta.num_classes, meta.ignore_index)
            b["agree"] = 0
        total_pixels = 0
        bar = tqdm(data_set.samples(), total=len(data_set), desc="parity", unit="image",
                   disable=not progress, leave=False)
        for _, image, label in bar:
            reference = predict(model, image).labels
            total_pixels += reference.size
            for b in backends:
                labels = reference if b["run"] is None else b["run"].segment(image)
                b["acc"].update(labels, label)
                b["agree"] += int(np.count_nonzero(labels == reference))
    finally:
        for b in backends:
            if b.get("run") is not None:
                b["run"].close()

    results = []
    ref = backends[0]["acc"].compute()
    for b in backends:
        res = b["acc"].compute()
        per_class = {c: _pct(v) for c, v in zip(classes, res["iou"])}
        per_class_delta = {c: (None if math.isnan(v - r) else (v - r) * 100.0)
                           for c, v, r in zip(classes, res["iou"], ref["iou"])}
        results.append({
            "name": b["name"], "model": b["model"], "precision": b["precision"],
            "miou": _pct(res["miou"]),
            "delta_miou": _pct(res["miou"] - ref["miou"]),
            "pixel_agreement": 100.0 * b["agree"] / max(total_pixels, 1),
            "per_class": per_class, "per_class_delta": per_class_delta,
        })
    return {"dataset": dataset, "data": data, "num_images": len(data_set), "classes": classes,
            "units": "percent (mIoU points)", "backends": results}


def format_report(report: Dict[str, object]) -> str:
    """Summary table per backend, then the per-class ΔIoU table (text)."""
    def num(x, signed=False):
        return "   n/a" if x is None else (f"{x:+6.2f}" if signed else f"{x:6.2f}")

    backends = report["backends"]
    labels = [f"{b['name']}-{b['precision']}" for b in backends]
    width = max(len(s) for s in labels + ["backend"])
    lines = [f"{report['num_images']} image(s), {report['dataset']} layout; values in percent",
             f"{'backend':<{width}} | {'mIoU':>6} | {'ΔmIoU':>6} | {'agree%':>6} | model",
             "-" * (width + 36)]
    for label, b in zip(labels, backends):
        lines.append(f"{label:<{width}} | {num(b['miou'])} | {num(b['delta_miou'], True)} | "
                     f"{b['pixel_agreement']:6.2f} | {b['model']}")
    cwidth = max(len(c) for c in report["classes"] + ["class"])
    lines += ["", f"{'class':<{cwidth}} | {'IoU':>6} | " + " | ".join(
        f"Δ {s}" for s in labels[1:])]
    for c in report["classes"]:
        row = [num(backends[0]["per_class"][c])]
        row += [f"{num(b['per_class_delta'][c], True):>{len(s) + 2}}"
                for s, b in zip(labels[1:], backends[1:])]
        lines.append(f"{c:<{cwidth}} | " + " | ".join(row))
    return "\n".join(lines)


def plot_deltas(report: Dict[str, object], out: str) -> None:
    """Per-class ΔIoU bar chart (one bar group per class, one colour per backend) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = report["classes"]
    others = report["backends"][1:]
    x = np.arange(len(classes))
    width = 0.8 / max(len(others), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(classes) + 2), 4))
    for i, b in enumerate(others):
        values = [b["per_class_delta"][c] or 0.0 for c in classes]
        ax.bar(x + (i - (len(others) - 1) / 2) * width, values, width,
               label=f"{b['name']} {b['precision']} (ΔmIoU {b['delta_miou'] or 0:+.2f})")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("ΔIoU vs PyTorch FP32 (points)")
    ax.set_title(f"Per-class IoU parity ({report['num_images']} images)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_output(out, make_dirs=True) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def write_json(report: Dict[str, object], out: str) -> None:
    atomic_write(out, json.dumps(report, indent=1).encode(), make_dirs=True)


def exceeding(report: Dict[str, object], max_delta: float) -> List[str]:
    """Backends whose |ΔmIoU| (points) exceeds ``max_delta``."""
    return [f"{b['name']}-{b['precision']} ({b['model']}): ΔmIoU {b['delta_miou']:+.2f}"
            for b in report["backends"][1:]
            if b["delta_miou"] is not None and abs(b["delta_miou"]) > max_delta]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ccnet-parity",
        description="mIoU parity of exported models vs PyTorch FP32 on one dataset: mIoU, ΔmIoU, "
                    "per-class ΔIoU and argmax pixel agreement (all in percent).")
    p.add_argument("--ckpt", required=True, help="reference checkpoint (.pth, zoo or built-in name)")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset", required=True, choices=DATASET_KINDS,
                   help="dataset layout")
    p.add_argument("--onnx", help="FP32 ONNX (ONNX Runtime)")
    p.add_argument("--onnx-fp16", help="FP16 ONNX (ONNX Runtime)")
    p.add_argument("--onnx-int8", help="INT8 Q/DQ ONNX from ccnet-calibrate (ONNX Runtime)")
    p.add_argument("--engine", nargs="+", action="extend", default=[],
                   help="TensorRT engine(s); precision read from the engine's metadata")
    p.add_argument("--max-delta", type=float,
                   help="fail (exit 1) when any backend's |ΔmIoU| vs PyTorch exceeds this many "
                        "mIoU points (percent, e.g. 0.3)")
    p.add_argument("--max-images", type=int, help="evaluate only the first N images")
    p.add_argument("--json", help="write the report as JSON")
    p.add_argument("--plot", help="write a per-class ΔIoU bar chart (PNG)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_delta is not None and args.max_delta < 0:
        raise CCNetError(f"--max-delta must be >= 0 (mIoU points), got {args.max_delta}")
    report = parity_report(args.ckpt, args.data, args.dataset, onnx=args.onnx,
                           onnx_fp16=args.onnx_fp16, onnx_int8=args.onnx_int8,
                           engines=args.engine, max_images=args.max_images,
                           progress=not args.no_progress)
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot_deltas(report, args.plot)
        print(f"wrote {args.plot}")
    if args.max_delta is not None:
        failed = exceeding(report, args.max_delta)
        if failed:
            print(f"parity FAILED (|ΔmIoU| > {args.max_delta} points): " + "; ".join(failed),
                  file=sys.stderr)
            return EXIT_PARITY_FAILED
        print(f"parity OK: every |ΔmIoU| <= {args.max_delta} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""mIoU parity report: PyTorch FP32 vs every exported model (ONNX FP32/FP16/INT8, TensorRT).

All backends see the same images with the same pre/post-processing through
``runtime.Segmenter`` (PyTorch, ONNX Runtime, TensorRT runners around the one
``ccnet.processing.segment``), so any difference is the network pass alone, and the one
evaluation loop (``ccnet.evaluation.evaluate``) scores them side by side.  Reported per backend:
mIoU (mmseg's dataset-level IoUMetric), ΔmIoU vs PyTorch, per-class ΔIoU and the argmax pixel
agreement with PyTorch.  mIoU, IoU, Δ and agreement are all in percent (mIoU points).

    ccnet parity --model CKPT --data DIR --dataset voc --onnx fp32.onnx --onnx-int8 int8.onnx
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from ccnet.errors import CCNetError
from ccnet.files import atomic_output, write_json as _write_json

from .machine import Timed


def _pct(x) -> Optional[float]:
    x = float(x)
    return None if math.isnan(x) else x * 100.0


def _model_precision(meta, fallback: str) -> str:
    return str((meta.extra or {}).get("precision", fallback))


def _int8_layers(meta) -> Optional[dict]:
    """Convs in INT8 and those kept in float, from an INT8 file's calibration metadata."""
    calibration = (meta.extra or {}).get("calibration")
    if not isinstance(calibration, dict) or "convs" not in calibration:
        return None
    return {"convs": calibration.get("convs"), "int8_convs": calibration.get("int8_convs"),
            "fallback_layers": list(calibration.get("fallback_layers") or []),
            "quantizer": calibration.get("quantizer", "ort")}


def parity_report(ckpt: str, data: str, dataset: str, onnx: Optional[str] = None,
                  onnx_fp16: Optional[str] = None, onnx_int8: Optional[str] = None,
                  engines: Sequence[str] = (), max_images: Optional[int] = None,
                  progress: bool = True, config=None) -> Dict[str, object]:
    """Evaluate PyTorch FP32 (``ckpt``) and every given model on ``data`` (``dataset`` layout).

    Returns ``{"dataset", "num_images", "classes", "backends": [{"name", "model", "precision",
    "miou", "delta_miou", "pixel_agreement", "ms_per_image" (segment() wall time, image
    decoding excluded), "per_class": {class: IoU},
    "per_class_delta": {class: ΔIoU}}, ...]}`` with PyTorch first; values in percent
    (None for a class absent from labels and predictions).
    """
    from ccnet.datasets import open_dataset
    from ccnet.evaluation import evaluate

    from .segmenter import Segmenter

    given = [(onnx, "fp32"), (onnx_fp16, "fp16"), (onnx_int8, "int8")]
    given += [(e, None) for e in engines]
    given = [(path, precision) for path, precision in given if path]
    if not given:
        raise CCNetError("nothing to compare: give --onnx, --onnx-fp16, --onnx-int8 or --engine")
    data_set = open_dataset(data, dataset).head(max_images)
    backends: List[dict] = []
    try:
        reference = Segmenter(ckpt, backend="pytorch", config=config)
        backends.append({"name": "pytorch", "model": str(ckpt), "precision": "fp32",
                         "run": reference})
        meta = reference.meta
        for path, flag_precision in given:
            segmenter = Segmenter(path)
            backends.append({"name": segmenter.backend, "model": path, "run": segmenter,
                             "precision": _model_precision(segmenter.meta, flag_precision or "fp32"),
                             "int8_layers": _int8_layers(segmenter.meta)})
            if segmenter.meta.num_classes != meta.num_classes:
                raise CCNetError(f"{path} predicts {segmenter.meta.num_classes} classes, the "
                                 f"checkpoint {meta.num_classes}: compare files exported from "
                                 "this checkpoint")
        keys = [f"{i}:{b['name']}" for i, b in enumerate(backends)]
        for b in backends:
            b["timed"] = Timed(b["run"].segment)
        results = evaluate({k: b["timed"] for k, b in zip(keys, backends)}, data_set,
                           meta.num_classes, meta.ignore_index, reference=keys[0],
                           progress=progress)
    finally:
        for b in backends:
            b["run"].close()
    rows = [_backend_row(b, results[k], results[keys[0]], meta.classes)
            for k, b in zip(keys, backends)]
    return {"dataset": dataset, "data": data, "num_images": len(data_set),
            "classes": list(meta.classes), "units": "percent (mIoU points)", "backends": rows}


def _backend_row(backend: dict, result: dict, ref: dict, classes: Sequence[str]) -> dict:
    per_class = {c: _pct(v) for c, v in zip(classes, result["iou"])}
    per_class_delta = {c: (None if math.isnan(v - r) else (v - r) * 100.0)
                       for c, v, r in zip(classes, result["iou"], ref["iou"])}
    return {"name": backend["name"], "model": backend["model"], "precision": backend["precision"],
            "miou": _pct(result["miou"]), "delta_miou": _pct(result["miou"] - ref["miou"]),
            "pixel_agreement": _pct(result["pixel_agreement"]),
            "int8_layers": backend.get("int8_layers"),
            "ms_per_image": round(backend["timed"].ms_per_call, 2),
            "per_class": per_class, "per_class_delta": per_class_delta}


def format_report(report: Dict[str, object]) -> str:
    """Summary table per backend, then the per-class ΔIoU table (text)."""
    def num(x, signed=False):
        return "   n/a" if x is None else (f"{x:+6.2f}" if signed else f"{x:6.2f}")

    backends = report["backends"]
    labels = [f"{b['name']}-{b['precision']}" for b in backends]
    width = max(len(s) for s in labels + ["backend"])
    lines = [f"{report['num_images']} image(s), {report['dataset']} layout; values in percent",
             f"{'backend':<{width}} | {'mIoU':>6} | {'ΔmIoU':>6} | {'agree%':>6} | "
             f"{'ms/img':>7} | model",
             "-" * (width + 46)]
    for label, b in zip(labels, backends):
        lines.append(f"{label:<{width}} | {num(b['miou'])} | {num(b['delta_miou'], True)} | "
                     f"{b['pixel_agreement']:6.2f} | {b['ms_per_image']:7.1f} | {b['model']}")
    for label, b in zip(labels, backends):
        layers = b.get("int8_layers")
        if layers:
            kept = layers["fallback_layers"]
            lines.append(f"{label}: {layers['int8_convs']} of {layers['convs']} Convs INT8 "
                         f"({layers['quantizer']} quantizer); kept in float: "
                         f"{', '.join(kept) if kept else 'none'}")
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
    _write_json(out, report, make_dirs=True)


def exceeding(report: Dict[str, object], max_delta: float) -> List[str]:
    """Backends whose |ΔmIoU| (points) exceeds ``max_delta``."""
    return [f"{b['name']}-{b['precision']} ({b['model']}): ΔmIoU {b['delta_miou']:+.2f}"
            for b in report["backends"][1:]
            if b["delta_miou"] is not None and abs(b["delta_miou"]) > max_delta]

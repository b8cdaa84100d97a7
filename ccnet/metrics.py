"""mIoU / aAcc / mAcc exactly as mmseg's IoUMetric (docs/mmseg-inference.md).  Torch-free.

Per image the pixels with ``gt == ignore_index`` are dropped, then the intersect / prediction /
label histograms (``num_classes`` bins) are **summed over the whole dataset** before any ratio is
taken.  A class whose union is 0 (absent from both predictions and labels) gives NaN and is
skipped by the nan-means, as mmseg does (no ``nan_to_num``).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from .errors import CCNetError


class IoUAccumulator:
    """Accumulate mmseg's four area histograms over a dataset; ``compute()`` gives the metrics.

    >>> acc = IoUAccumulator(num_classes=19)
    >>> acc.update(pred, gt)        # once per image, both H×W at the original resolution
    >>> result = acc.compute()      # dict(miou, aacc, macc, iou, acc, ...), raw floats
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise CCNetError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.area_intersect = np.zeros(num_classes, dtype=np.int64)
        self.area_union = np.zeros(num_classes, dtype=np.int64)
        self.area_pred = np.zeros(num_classes, dtype=np.int64)
        self.area_label = np.zeros(num_classes, dtype=np.int64)
        self.num_images = 0

    def _histogram(self, values: np.ndarray) -> np.ndarray:
        # mmseg: torch.histc(x, bins=C, min=0, max=C-1), i.e. values outside [0, C-1] are dropped.
        values = values[(values >= 0) & (values < self.num_classes)]
        return np.bincount(values.astype(np.int64), minlength=self.num_classes)

    def image_areas(self, pred: np.ndarray, gt: np.ndarray):
        """(intersect, union, pred, label) histograms of one image, mmseg's intersect_and_union."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise CCNetError(f"prediction shape {pred.shape} differs from label shape {gt.shape}: "
                             "resize the prediction to the label's (original) size")
        mask = gt != self.ignore_index
        pred = pred[mask].astype(np.int64)
        gt = gt[mask].astype(np.int64)
        intersect = self._histogram(pred[pred == gt])
        area_pred = self._histogram(pred)
        area_label = self._histogram(gt)
        return intersect, area_pred + area_label - intersect, area_pred, area_label

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image (prediction and ground truth, same H×W, class indices)."""
        intersect, union, area_pred, area_label = self.image_areas(pred, gt)
        self.area_intersect += intersect
        self.area_union += union
        self.area_pred += area_pred
        self.area_label += area_label
        self.num_images += 1

    def compute(self) -> Dict[str, object]:
        """Metrics of everything accumulated so far (fractions in [0, 1], raw floats).

        Keys: ``miou``, ``aacc``, ``macc`` (floats), ``iou``, ``acc`` (per-class float64 arrays,
        NaN for a class absent from labels/predictions), the four area arrays, ``num_images``.
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = self.area_intersect / self.area_union.astype(np.float64)
            acc = self.area_intersect / self.area_label.astype(np.float64)
            total = self.area_label.sum()
            aacc = float(self.area_intersect.sum() / total) if total else float("nan")
        return {
            "miou": _nanmean(iou), "aacc": aacc, "macc": _nanmean(acc),
            "iou": iou, "acc": acc,
            "area_intersect": self.area_intersect.copy(), "area_union": self.area_union.copy(),
            "area_pred": self.area_pred.copy(), "area_label": self.area_label.copy(),
            "num_images": self.num_images,
        }


def _nanmean(values: np.ndarray) -> float:
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else float("nan")


def _pct(x: float) -> str:
    """mmseg's display rounding: round(x * 100, 2); NaN shown as 'nan'."""
    return "nan" if np.isnan(x) else f"{round(float(x) * 100, 2):.2f}"


def format_table(result: Dict[str, object], class_names: Optional[Sequence[str]] = None) -> str:
    """Per-class table (Class | IoU | Acc) plus the summary line, as text (percent, 2 decimals)."""
    iou = np.asarray(result["iou"])
    acc = np.asarray(result["acc"])
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(iou))]
    if len(names) != len(iou):
        raise CCNetError(f"{len(names)} class names for {len(iou)} classes")
    width = max([len("Class")] + [len(n) for n in names])
    lines = [f"{'Class':<{width}} | {'IoU':>6} | {'Acc':>6}",
             f"{'-' * width}-+-{'-' * 6}-+-{'-' * 6}"]
    lines += [f"{n:<{width}} | {_pct(i):>6} | {_pct(a):>6}" for n, i, a in zip(names, iou, acc)]
    lines.append(summary_line(result))
    return "\n".join(lines)


def summary_line(result: Dict[str, object]) -> str:
    return (f"mIoU: {_pct(result['miou'])}  aAcc: {_pct(result['aacc'])}  "
            f"mAcc: {_pct(result['macc'])}  ({result.get('num_images', '?')} images)")


def result_to_json(result: Dict[str, object], class_names: Optional[Sequence[str]] = None) -> dict:
    """JSON-ready copy of a result (NaN → None; per-class values keyed by class name)."""
    def num(x):
        x = float(x)
        return None if np.isnan(x) else x

    iou = np.asarray(result["iou"])
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(iou))]
    return {
        "miou": num(result["miou"]), "aacc": num(result["aacc"]), "macc": num(result["macc"]),
        "num_images": int(result["num_images"]),
        "per_class": [{"class": n, "iou": num(i), "acc": num(a)}
                      for n, i, a in zip(names, iou, np.asarray(result["acc"]))],
    }


__all__ = ["IoUAccumulator", "format_table", "summary_line", "result_to_json"]

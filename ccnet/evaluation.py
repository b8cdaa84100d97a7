"""The one evaluation loop: segmenters over a labelled dataset → mmseg's IoUMetric per segmenter.

Used by ``ccnet eval`` (one model), training validation (the PyTorch model) and the parity
report (PyTorch plus every exported file, agreement measured against the PyTorch labels).
A segmenter is any callable ``image_bgr -> H×W labels`` (or an object with ``.labels``).
Torch-free.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple

import numpy as np

from .errors import CCNetError
from .images import load_image
from .meta import IGNORE_INDEX
from .metrics import IoUAccumulator
from .progress import progress_bar

SegmentFn = Callable[[np.ndarray], object]


def _labels_of(output) -> np.ndarray:
    return np.asarray(getattr(output, "labels", output))


def evaluate(segmenters: Mapping[str, SegmentFn], dataset: Iterable[Tuple[str, np.ndarray]],
             num_classes: int, ignore_index: int = IGNORE_INDEX,
             reference: Optional[str] = None, progress: bool = True) -> Dict[str, dict]:
    """Run every segmenter on every (image path, label) pair of ``dataset``.

    Returns, per segmenter name, :meth:`IoUAccumulator.compute`'s dict; with ``reference`` (one
    of the names) each entry also has ``pixel_agreement``: the fraction of pixels whose label
    equals the reference segmenter's.  Labels must be at the image size (mmseg evaluates at the
    original resolution).
    """
    if reference is not None and reference not in segmenters:
        raise ValueError(f"reference {reference!r} is not one of the segmenters")
    accumulators = {name: IoUAccumulator(num_classes, ignore_index) for name in segmenters}
    agree = {name: 0 for name in segmenters}
    pixels = 0
    bar = progress_bar(dataset, desc="eval", unit="img", enabled=progress, leave=False)
    try:
        for image_path, label in (bar if bar is not None else dataset):
            image = load_image(image_path)
            predictions = {name: _labels_of(fn(image)) for name, fn in segmenters.items()}
            for name, pred in predictions.items():
                if pred.shape != label.shape:
                    raise CCNetError(f"{name}: prediction for {image_path} is {pred.shape[:2]} "
                                     f"but its label is {label.shape[:2]}: the label must match "
                                     "the image size")
                accumulators[name].update(pred, label)
            if reference is not None:
                ref = predictions[reference]
                pixels += ref.size
                for name, pred in predictions.items():
                    agree[name] += int(np.count_nonzero(pred == ref))
            if bar is not None:
                first = next(iter(accumulators.values()))
                bar.set_postfix(mIoU=f"{first.compute()['miou'] * 100:.2f}")
    finally:
        if bar is not None:
            bar.close()
    results = {}
    for name, accumulator in accumulators.items():
        results[name] = accumulator.compute()
        if reference is not None:
            results[name]["pixel_agreement"] = agree[name] / pixels if pixels else float("nan")
    return results


def evaluate_one(segment_fn: SegmentFn, dataset, num_classes: int,
                 ignore_index: int = IGNORE_INDEX, progress: bool = True) -> dict:
    """:func:`evaluate` for a single segmenter: its metrics dict."""
    return evaluate({"model": segment_fn}, dataset, num_classes, ignore_index,
                    progress=progress)["model"]

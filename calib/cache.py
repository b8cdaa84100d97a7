"""Our calibration cache: the measured ranges of one exact ONNX file, as JSON.

``{"format": "ccnet-calibration-cache", "version": 1, "model_sha256", "method", "num_images",
"seed", "images": [...], "holdout_images": [...], "clip_search": null or "mse",
"tensors": {name: [low, high]}}``.  ``tensors`` are the ranges the Q/DQ scales are computed from:
after ``--clip-search`` the searched ones (``clip_search`` says so; absent in older caches =
none).  The range
ends are float32 values written as Python floats (exact in JSON), so reading them back gives the
same float32 values and therefore the same scales.

A cache is user input: ``load_cache`` checks every field (types, finite numbers, low <= high,
a non-empty range, tensor names of this model) and turns each defect into a one-line error.
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from ccnet.errors import CCNetError
from ccnet.files import atomic_write, require_file

from .calibrate import Ranges
from .options import CLIP_SEARCHES, METHODS

CACHE_FORMAT = "ccnet-calibration-cache"
CACHE_VERSION = 1
_RECALIBRATE = "recalibrate with --images (and --cache to write a new cache)"


def save_cache(path: str, ranges: Ranges, model_sha256: str, method: str,
               images: Sequence[str] = (), holdout_images: Sequence[str] = (),
               seed: Optional[int] = None, clip_search: Optional[str] = None) -> dict:
    """Write the cache atomically; returns the dict written."""
    cache = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "model_sha256": model_sha256,
             "method": method, "num_images": len(images), "seed": seed,
             "images": [os.path.abspath(p) for p in images],
             "holdout_images": [os.path.abspath(p) for p in holdout_images],
             "clip_search": clip_search,
             "tensors": {name: [low, high] for name, (low, high) in sorted(ranges.items())}}
    atomic_write(path, json.dumps(cache, indent=1, sort_keys=True).encode(), make_dirs=True)
    return cache


def load_cache(path: str, model_sha256: Optional[str] = None,
               tensor_names: Optional[Iterable[str]] = None) -> dict:
    """Read and check a calibration cache; with ``model_sha256`` refuse a cache of another
    model, with ``tensor_names`` (the model's calibrated tensors) refuse unknown or missing
    names.  Returns the cache dict with ``tensors`` as ``{name: (low, high)}``."""
    require_file(path, "calibration cache")
    try:
        with open(path, encoding="utf-8") as f:
            cache = json.load(f)
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CCNetError(f"cannot read calibration cache {path} ({type(e).__name__}): "
                         f"{_RECALIBRATE}") from None
    if not isinstance(cache, dict) or cache.get("format") != CACHE_FORMAT:
        raise CCNetError(f"{path} is not a ccnet calibration cache: {_RECALIBRATE}")
    _check_header(path, cache)
    if model_sha256 is not None and cache["model_sha256"] != model_sha256:
        raise CCNetError(f"calibration cache {path} was made for another model (sha256 "
                         f"{cache['model_sha256'][:12]}…, this model {model_sha256[:12]}…): "
                         "recalibrate with --images, or pass the cache of this exact ONNX file")
    cache["tensors"] = check_ranges(cache["tensors"], f"calibration cache {path}")
    if tensor_names is not None:
        _check_names(path, cache["tensors"], set(tensor_names))
    return cache


def _check_header(path: str, cache: dict) -> None:
    if cache.get("version") != CACHE_VERSION:
        raise CCNetError(f"calibration cache {path} has version {cache.get('version')!r}, this "
                         f"toolkit reads version {CACHE_VERSION}: {_RECALIBRATE}")
    if cache.get("method") not in METHODS:
        raise CCNetError(f"calibration cache {path} names method {cache.get('method')!r}, not "
                         f"one of {', '.join(METHODS)}: {_RECALIBRATE}")
    sha = cache.get("model_sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise CCNetError(f"calibration cache {path} has no valid model_sha256: {_RECALIBRATE}")
    count = cache.get("num_images")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise CCNetError(f"calibration cache {path} has num_images {count!r}, not a count: "
                         f"{_RECALIBRATE}")
    cache.setdefault("clip_search", None)
    if cache["clip_search"] is not None and cache["clip_search"] not in CLIP_SEARCHES:
        raise CCNetError(f"calibration cache {path} names clip search "
                         f"{cache['clip_search']!r}, not one of {', '.join(CLIP_SEARCHES)}: "
                         f"{_RECALIBRATE}")
    for key in ("images", "holdout_images"):
        value = cache.get(key, [])
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise CCNetError(f"calibration cache {path}: {key} must be a list of file names: "
                             f"{_RECALIBRATE}")
    if not isinstance(cache.get("tensors"), dict) or not cache["tensors"]:
        raise CCNetError(f"calibration cache {path} has no tensor ranges: {_RECALIBRATE}")


def check_ranges(tensors: dict, source: str) -> Ranges:
    """``{name: [low, high]}`` of finite float32 numbers with low < high, or a one-line error
    naming the first bad tensor (also used on freshly measured ranges)."""
    checked = {}
    for name, value in tensors.items():
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise CCNetError(f"{source}: range of {name} is {value!r}, not [low, high] numbers: "
                             f"{_RECALIBRATE}")
        low, high = (_float32(v) for v in value)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise CCNetError(f"{source}: range of {name} is {list(value)}, not finite float32 "
                             f"numbers: {_RECALIBRATE}")
        if low > high:
            raise CCNetError(f"{source}: range of {name} is inverted (low {low} > high {high}): "
                             f"{_RECALIBRATE}")
        if low == high:
            raise CCNetError(f"{source}: range of {name} is empty ([{low}, {high}]; the tensor "
                             "never varied on the calibration photos): calibrate on more, and "
                             "more varied, photos")
        checked[name] = (low, high)
    return checked


def _float32(value) -> float:
    """``value`` as a float32-exact Python float; inf when it is not a finite float32."""
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return math.inf
    if not math.isfinite(number) or abs(number) > float(np.finfo(np.float32).max):
        return math.inf
    return float(np.float32(number))


def _check_names(path: str, tensors: Ranges, names: set) -> None:
    unknown = sorted(set(tensors) - names)
    if unknown:
        raise CCNetError(f"calibration cache {path} has ranges for {len(unknown)} tensor(s) "
                         f"this model does not have (e.g. {unknown[0]!r}): pass the cache made "
                         "for this model, or recalibrate with --images")
    missing = sorted(names - set(tensors))
    if missing:
        raise CCNetError(f"calibration cache {path} lacks the ranges of {len(missing)} tensor(s) "
                         f"of this model (e.g. {missing[0]!r}): {_RECALIBRATE}")

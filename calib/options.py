"""What decides an INT8 file, in one object (in the spirit of ONNX Runtime's StaticQuantConfig).

``QuantOptions`` holds every choice of ``calib.quantize.quantize`` besides the input model, the
output path and the calibration data: the range method, how photos are chosen, the Q/DQ
placement (a row of ``calib.placement.PLACEMENTS``), the quantiser, and the mixed-precision
goal.  ``checked()`` turns a bad value into a one-line ``CCNetError`` before any work is done.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from ccnet.errors import CCNetError

METHODS = ("entropy", "percentile", "minmax")
DEFAULT_METHOD = "entropy"
QUANTIZERS = ("ort", "modelopt")
CLIP_SEARCHES = ("mse",)
DEFAULT_NUM_IMAGES = 16
DEFAULT_HOLDOUT_IMAGES = 4
DEFAULT_SEED = 0


@dataclass
class QuantOptions:
    """Options of one quantization run (see ``calib.quantize.quantize`` for their meaning)."""

    method: Optional[str] = None  # None: entropy, or the cache's method
    num_images: int = DEFAULT_NUM_IMAGES
    seed: int = DEFAULT_SEED
    target: str = "tensorrt"
    quantizer: str = "ort"
    function: bool = True
    residual_qdq: bool = True
    clip_search: Optional[str] = None  # "mse": per-tensor thresholds by layer output error
    target_agreement: Optional[float] = None  # percent of pixels agreeing with FP32
    max_fallback: Optional[int] = None  # most Convs kept in float
    holdout_images: int = DEFAULT_HOLDOUT_IMAGES
    sensitivity_json: Optional[str] = None
    progress: bool = True

    @property
    def mixed_precision(self) -> bool:
        """Whether sensitivity analysis chooses Convs to keep in float."""
        return self.target_agreement is not None or self.max_fallback is not None

    def replace(self, **changes) -> "QuantOptions":
        return dataclasses.replace(self, **changes)

    def checked(self) -> "QuantOptions":
        """``self`` if every value is usable, else a one-line CCNetError naming the option."""
        from .placement import PLACEMENTS

        if self.method is not None and self.method not in METHODS:
            raise CCNetError(f"unknown calibration method {self.method!r}: use one of "
                             f"{', '.join(METHODS)}")
        if self.target not in PLACEMENTS:
            raise CCNetError(f"unknown target {self.target!r}: use one of {', '.join(PLACEMENTS)}")
        if self.quantizer not in QUANTIZERS:
            raise CCNetError(f"unknown quantizer {self.quantizer!r}: use one of "
                             f"{', '.join(QUANTIZERS)}")
        if self.clip_search is not None and self.clip_search not in CLIP_SEARCHES:
            raise CCNetError(f"unknown clip search {self.clip_search!r}: use one of "
                             f"{', '.join(CLIP_SEARCHES)}")
        _require_int(self.num_images, "--num-images", 1)
        _require_int(self.seed, "--seed", 0)
        _require_int(self.holdout_images, "--holdout-images", 1)
        if self.max_fallback is not None:
            _require_int(self.max_fallback, "--max-fallback", 0)
        if self.target_agreement is not None:
            value = self.target_agreement
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or not 0 < value <= 100:
                raise CCNetError(f"--target-agreement must be a percentage in (0, 100], got "
                                 f"{value!r}")
        self._check_combinations()
        return self

    def _check_combinations(self) -> None:
        if self.mixed_precision and self.quantizer != "ort":
            raise CCNetError("--target-agreement/--max-fallback choose float layers for our "
                             "placement: use them with --quantizer ort")
        if self.mixed_precision and self.target != "tensorrt":
            raise CCNetError("--target-agreement/--max-fallback work with --target tensorrt "
                             "(the placement whose float fallback TensorRT runs)")
        if self.sensitivity_json and not self.mixed_precision:
            raise CCNetError("--sensitivity-json needs --target-agreement or --max-fallback "
                             "(the table is measured for the fallback choice)")
        if self.clip_search and (self.quantizer != "ort" or self.target != "tensorrt"):
            raise CCNetError("--clip-search chooses symmetric int8 ranges for our TensorRT "
                             "placement: use it with --quantizer ort --target tensorrt")
        if self.quantizer == "modelopt" and self.target != "tensorrt":
            raise CCNetError("--quantizer modelopt places Q/DQ for TensorRT: drop --target")


def _require_int(value, flag: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CCNetError(f"{flag} must be an integer >= {minimum}, got {value!r}")

"""Model metadata: the one description of how a CCNet model is fed and read.

Written into ONNX ``metadata_props`` (and engine side files) at export and read back by every
runtime, so nothing downstream needs the checkpoint.  Torch-free on purpose.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from .errors import CCNetError, first_line

# mmseg's SegDataPreProcessor values (RGB order).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
IGNORE_INDEX = 255
METADATA_KEY = "ccnet_deploy"
MODES = ("whole", "slide")
PRECISIONS = ("fp32", "fp16", "int8")
# Smallest network input side: output stride 8 leaves a 2×2 feature map, the least on which
# criss-cross attention attends to anything but the pixel itself (1×1 gives a softmax over
# nothing but the masked self term: NaN logits).
MIN_INPUT_SIDE = 16
REQUIRED_KEYS = ("name", "dataset", "classes", "palette", "test_scale")


@dataclass
class Limits:
    """Resource limits on what a model file or image may ask for.  Metadata, checkpoints and
    images come from files users download, so every size that drives an allocation or a loop
    is bounded; the defaults are far above every mmseg CCNet.  Each limit can be raised with
    its environment variable (read at import) or by setting the attributes of
    ``ccnet.meta.LIMITS`` (assigning a new object does not reach modules that imported it)."""

    max_classes: int = 4096  # palette, logits and label maps grow with it
    max_recurrence: int = 16  # mmseg uses 2; each is one attention pass
    max_side: int = 16384  # test scale and slide crop sides, in pixels
    max_slide_windows: int = 1024  # network passes per image in slide mode (zoo: 8)
    max_image_pixels: int = 1 << 26  # 64 megapixels; logits at full size are C×H×W float32
    max_channels: int = 8192  # head and backbone widths (zoo: 512 / 64)

    ENV = {"max_classes": "CCNET_MAX_CLASSES", "max_recurrence": "CCNET_MAX_RECURRENCE",
           "max_side": "CCNET_MAX_SIDE", "max_slide_windows": "CCNET_MAX_SLIDE_WINDOWS",
           "max_image_pixels": "CCNET_MAX_IMAGE_PIXELS", "max_channels": "CCNET_MAX_CHANNELS"}

    @classmethod
    def from_env(cls, environ=os.environ) -> "Limits":
        values = {}
        for name, var in cls.ENV.items():
            text = environ.get(var)
            if text is None:
                continue
            try:
                values[name] = int(text)
            except ValueError:
                raise CCNetError(f"{var}={text!r} is not an integer") from None
        return cls(**values)

    def hint(self, name: str) -> str:
        """How to raise one limit, for error messages."""
        return f"limit {getattr(self, name)}, raise it with {self.ENV[name]}=N"


LIMITS = Limits.from_env()


# ----------------------------------------------------------------------------- field checks
def _bad(name: str, value, wanted: str) -> CCNetError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return CCNetError(f"invalid model metadata: {name} = {shown} must be {wanted}; re-export "
                      "the model with ccnet-export or fix the metadata")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, low: int, high: Optional[int] = None, hint: str = "") -> int:
    """``value`` as an int within [low, high]; a one-line error otherwise."""
    wanted = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
    if not _is_int(value) or value < low or (high is not None and value > high):
        raise _bad(name, value, wanted + (f" ({hint})" if hint else ""))
    return int(value)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, value, "true or false")
    return value


def check_str(name: str, value) -> str:
    if not isinstance(value, str):
        raise _bad(name, value, "a string")
    return value


def _sequence(name: str, value, length: Optional[int] = None, wanted: str = "a list") -> tuple:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
        raise _bad(name, value, wanted)
    if length is not None and len(value) != length:
        raise _bad(name, value, wanted)
    return tuple(value)


def check_pair(name: str, value, low: int, high: int) -> Tuple[int, int]:
    """Two ints in [low, high] (a size such as the test scale, crop or stride)."""
    wanted = f"two integers in [{low}, {high}]"
    pair = _sequence(name, value, 2, wanted)
    if not all(_is_int(v) and low <= v <= high for v in pair):
        raise _bad(name, value, wanted)
    return tuple(int(v) for v in pair)


def _floats(name: str, value, positive: bool = False) -> Tuple[float, float, float]:
    wanted = "three finite numbers" + (" > 0" if positive else "")
    triple = _sequence(name, value, 3, wanted)
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
               and (v > 0 or not positive) for v in triple):
        raise _bad(name, value, wanted)
    return tuple(float(v) for v in triple)


def _classes(value) -> Tuple[str, ...]:
    classes = _sequence("classes", value, wanted="a list of class names")
    if not 1 <= len(classes) <= LIMITS.max_classes:
        raise CCNetError(f"invalid model metadata: {len(classes)} classes (at least 1; "
                         f"{LIMITS.hint('max_classes')})")
    if not all(isinstance(c, str) for c in classes):
        raise _bad("classes", value, "a list of strings")
    return classes


def _palette(value, num_classes: int) -> Tuple[Tuple[int, int, int], ...]:
    wanted = f"{num_classes} RGB triples of integers 0..255"
    palette = _sequence("palette", value, num_classes, wanted)
    for colour in palette:
        rgb = _sequence("palette entry", colour, 3, "an RGB triple of integers 0..255")
        if not all(_is_int(c) and 0 <= c <= 255 for c in rgb):
            raise _bad("palette entry", colour, "an RGB triple of integers 0..255")
    return tuple(tuple(int(c) for c in p) for p in palette)


def slide_grid(length: int, crop: int, stride: int) -> int:
    """Windows along one axis of ``length`` pixels (mmseg slide_inference)."""
    return max(length - crop + stride - 1, 0) // stride + 1


def _check_slide(crop_size, stride, test_scale) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    if crop_size is None or stride is None:
        raise CCNetError("invalid model metadata: slide mode needs crop_size and stride")
    crop = check_pair("crop_size", crop_size, MIN_INPUT_SIDE, LIMITS.max_side)
    step = check_pair("stride", stride, 1, LIMITS.max_side)
    if step[0] > crop[0] or step[1] > crop[1]:
        # mmseg asserts every pixel is covered by a window: a stride above the crop leaves gaps.
        raise _bad("stride", stride,
                   f"at most the crop size {crop} (windows must overlap or touch)")
    # The resized image fits in max(scale) × max(scale) whatever the aspect ratio.
    longest = max(test_scale)
    windows = slide_grid(longest, crop[0], step[0]) * slide_grid(longest, crop[1], step[1])
    if windows > LIMITS.max_slide_windows:
        raise CCNetError(f"invalid model metadata: crop {crop} with stride {step} gives up to "
                         f"{windows} slide windows per image at test scale {test_scale} "
                         f"({LIMITS.hint('max_slide_windows')}); use a larger stride")
    return crop, step


def _check_extra(extra) -> dict:
    if not isinstance(extra, dict):
        raise _bad("extra", extra, "an object")
    precision = extra.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise _bad("extra.precision", precision, f"one of {', '.join(PRECISIONS)}")
    contract = extra.get("contract", {})
    if not isinstance(contract, dict):
        raise _bad("extra.contract", contract, "an object")
    for side, ranks in (("input", (4,)), ("output", (3, 4))):
        io = contract.get(side, {})
        if not isinstance(io, dict):
            raise _bad(f"extra.contract.{side}", io, "an object")
        if "shape" not in io:
            continue
        wanted = f"{' or '.join(map(str, ranks))} dimensions, each a name or an integer >= 1"
        dims = _sequence(f"extra.contract.{side}.shape", io["shape"], wanted=wanted)
        if len(dims) not in ranks or not all(isinstance(d, str) or (_is_int(d) and d >= 1)
                                             for d in dims):
            raise _bad(f"extra.contract.{side}.shape", io["shape"], wanted)
    digest = extra.get("sha256")  # the file's checksum (export.metadata)
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        raise _bad("extra.sha256", digest, "a SHA-256 hex digest")
    return extra


@dataclass
class ModelMeta:
    """Everything a runtime needs besides the network itself.

    Constructing one validates every field (types, ranges, slide window sanity and the
    resource limits of :data:`LIMITS`): metadata read from a checkpoint, an ONNX file, an
    engine side file or given by a user passes the same checks, and a bad value is a one-line
    CCNetError instead of a failure deep inside processing.
    """

    name: str
    dataset: str
    classes: Tuple[str, ...]
    palette: Tuple[Tuple[int, int, int], ...]
    test_scale: Tuple[int, int]  # mmcv (w, h); only max/min matter with keep_ratio
    mode: str = "whole"  # "whole" or "slide"
    crop_size: Optional[Tuple[int, int]] = None  # (h, w), slide only
    stride: Optional[Tuple[int, int]] = None  # (h, w), slide only
    align_corners: bool = False
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    bgr_to_rgb: bool = True
    reduce_zero_label: bool = False
    ignore_index: int = IGNORE_INDEX
    extra: dict = field(default_factory=dict)  # e.g. ONNX contract, toolkit version

    def __post_init__(self):
        self.validate()

    def validate(self) -> "ModelMeta":
        """Check (and normalize to tuples) every field; returns self."""
        self.name = check_str("name", self.name)
        self.dataset = check_str("dataset", self.dataset)
        self.classes = _classes(self.classes)
        self.palette = _palette(self.palette, len(self.classes))
        self.test_scale = check_pair("test_scale", self.test_scale, MIN_INPUT_SIDE,
                                     LIMITS.max_side)
        if self.mode not in MODES:
            raise _bad("mode", self.mode, "'whole' or 'slide'")
        if self.mode == "slide":
            self.crop_size, self.stride = _check_slide(self.crop_size, self.stride,
                                                       self.test_scale)
        else:  # unused by whole inference, but still written to every file
            for name in ("crop_size", "stride"):
                if getattr(self, name) is not None:
                    setattr(self, name, check_pair(name, getattr(self, name), 1, LIMITS.max_side))
        self.align_corners = check_bool("align_corners", self.align_corners)
        self.mean = _floats("mean", self.mean)
        self.std = _floats("std", self.std, positive=True)
        self.bgr_to_rgb = check_bool("bgr_to_rgb", self.bgr_to_rgb)
        self.reduce_zero_label = check_bool("reduce_zero_label", self.reduce_zero_label)
        self.ignore_index = check_int("ignore_index", self.ignore_index, 0, 65535)
        self.extra = _check_extra(self.extra)
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["num_classes"] = self.num_classes
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d) -> "ModelMeta":
        """A validated ModelMeta from a JSON-like dict (unknown keys are ignored)."""
        if not isinstance(d, dict):
            raise CCNetError(f"model metadata is a {type(d).__name__}, not an object: re-export "
                             "the model with ccnet-export")
        missing = [n for n in REQUIRED_KEYS if n not in d]
        if missing:
            raise CCNetError(f"model metadata lacks {missing}: re-export the model with "
                             "ccnet-export")
        names = {f.name for f in dataclasses.fields(cls)}
        meta = cls(**{k: v for k, v in d.items() if k in names})
        if "num_classes" in d and d["num_classes"] != meta.num_classes:
            raise _bad("num_classes", d["num_classes"],
                       f"{meta.num_classes}, the number of classes")
        return meta

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, nesting too deep
            raise CCNetError(f"model metadata is not valid JSON ({first_line(e, 80)}): re-export "
                             "the model") from None
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> "ModelMeta":
        return dataclasses.replace(self, **changes)

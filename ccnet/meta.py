"""Model metadata: the one description of how a CCNet model is fed and read.

Written into ONNX ``metadata_props`` (and engine side files) at export and read back by every
runtime, so nothing downstream needs the checkpoint.  Torch-free on purpose.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from .errors import CCNetError

# mmseg's SegDataPreProcessor values (RGB order).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
IGNORE_INDEX = 255
METADATA_KEY = "ccnet_deploy"


@dataclass
class ModelMeta:
    """Everything a runtime needs besides the network itself."""

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
        self.classes = tuple(self.classes)
        self.palette = tuple(tuple(int(c) for c in p) for p in self.palette)
        self.test_scale = tuple(int(s) for s in self.test_scale)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if self.crop_size is not None:
            self.crop_size = tuple(int(s) for s in self.crop_size)
        if self.stride is not None:
            self.stride = tuple(int(s) for s in self.stride)
        if self.mode not in ("whole", "slide"):
            raise CCNetError(f"unknown inference mode {self.mode!r}: use 'whole' or 'slide'")
        if self.mode == "slide" and (self.crop_size is None or self.stride is None):
            raise CCNetError("slide mode needs crop_size and stride")
        if len(self.palette) != len(self.classes):
            raise CCNetError(
                f"palette has {len(self.palette)} colours for {len(self.classes)} classes")

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
    def from_dict(cls, d: dict) -> "ModelMeta":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("name", "dataset", "classes", "palette", "test_scale") if n not in d]
        if missing:
            raise CCNetError(f"model metadata lacks {missing}: re-export the model with ccnet-export")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise CCNetError(f"model metadata is not valid JSON ({e}): re-export the model") from e
        return cls.from_dict(d)

    def replace(self, **changes: Any) -> "ModelMeta":
        return dataclasses.replace(self, **changes)

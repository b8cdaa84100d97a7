"""The side file written beside every engine (``model.engine.json``) and the checks built on it.

A TensorRT engine carries no room for our metadata, so ``ccnet-build`` writes the ONNX's
ModelMeta plus what the runtime must check before touching the engine: the TensorRT version that
built it, the plugin it needs, the optimization profile(s) and the precision.  Everything here is
pure Python (no tensorrt, no torch), so the checks are testable anywhere.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ccnet.errors import CCNetError
from ccnet.files import atomic_write, file_sha256
from ccnet.labels import LABEL_HEAD_INPUT, label_head_feed
from ccnet.meta import ModelMeta

FORMAT = "ccnet-engine-info/1"
Shape = Tuple[int, ...]


@dataclass
class EngineInfo:
    """What ``model.engine.json`` holds.  ``profiles``: one dict per optimization profile,
    input name -> {"min": [...], "opt": [...], "max": [...]}."""

    tensorrt_version: str
    meta: Optional[dict] = None  # ModelMeta.to_dict() of the ONNX the engine was built from
    input_name: str = "input"
    output_name: str = "logits"
    output_kind: str = "logits"  # or "labels"
    precision: str = "fp32"  # fp32 / fp16 / int8 (from the ONNX: strongly typed network)
    cca: str = "unknown"  # "plugin", "inlined" (local function body), "none"
    plugin: Optional[dict] = None  # {"library", "name", "version", "namespace"}
    profiles: List[Dict[str, Dict[str, List[int]]]] = field(default_factory=list)
    version_compatible: bool = False
    onnx: Optional[str] = None
    engine_sha256: Optional[str] = None  # of the engine file, checked before deserialising
    format: str = FORMAT

    @property
    def label_head(self) -> bool:
        """Whether the engine ends in the label head: profiles cover every network input, so
        one for the head's output-size input tells it."""
        return any(LABEL_HEAD_INPUT in p for p in self.profiles)

    def model_meta(self) -> Optional[ModelMeta]:
        return ModelMeta.from_dict(self.meta) if self.meta else None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "EngineInfo":
        if "tensorrt_version" not in d:
            raise CCNetError("engine side file lacks tensorrt_version: rebuild the engine with "
                             "ccnet-build")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def side_file_path(engine_path: str) -> str:
    """``model.engine`` -> ``model.engine.json``."""
    return engine_path + ".json"


def read_engine_info(engine_path: str, check_digest: bool = True) -> EngineInfo:
    """Read the side file of an engine; one-line errors when it is missing or broken, or (with
    ``check_digest``) when the engine no longer matches the digest written beside it."""
    path = side_file_path(engine_path)
    if not os.path.isfile(path):
        raise CCNetError(f"{path} not found: engines need the side file ccnet-build writes beside "
                         "them (model metadata, TensorRT version, profile); rebuild with "
                         "ccnet-build or copy the .json along with the engine")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CCNetError(f"cannot read engine side file {path} ({e}): rebuild with "
                         "ccnet-build") from e
    if not isinstance(d, dict):
        raise CCNetError(f"{path} is not an engine side file: rebuild with ccnet-build")
    info = EngineInfo.from_dict(d)
    if check_digest:
        check_engine_digest(engine_path, info)
    return info


def write_engine_info(engine_path: str, info: EngineInfo) -> str:
    """Write the side file atomically, ``info`` as given; returns its path.  The engine digest
    comes from ``with_engine_digest`` on the bytes being written, never from the file on disk:
    a stale engine there must not lend a side file written before its engine its digest."""
    path = side_file_path(engine_path)
    atomic_write(path, info.to_json().encode("utf-8"))
    return path


def with_engine_digest(info: EngineInfo, engine: bytes) -> EngineInfo:
    """``info`` recording the digest of the serialized ``engine`` about to be written."""
    return dataclasses.replace(info, engine_sha256=hashlib.sha256(engine).hexdigest())


def check_engine_digest(engine_path: str, info: EngineInfo) -> None:
    """Refuse an engine whose bytes differ from the digest its side file recorded (a damaged
    copy, or a side file of another engine), before TensorRT deserialises it.  Side files
    without a digest (written before it existed) are not checked."""
    if info.engine_sha256 is None:
        return
    if not isinstance(info.engine_sha256, str):
        raise CCNetError(f"{side_file_path(engine_path)}: engine_sha256 is not a digest; "
                         "rebuild with ccnet-build")
    try:
        actual = file_sha256(engine_path)
    except OSError as e:
        raise CCNetError(f"cannot read engine {engine_path}: {e.strerror}") from None
    if actual != info.engine_sha256:
        raise CCNetError(f"{engine_path} does not match the digest in its side file "
                         f"{side_file_path(engine_path)}: the engine is damaged or the side "
                         "file belongs to another engine; copy both again or rebuild with "
                         "ccnet-build")


# ----------------------------------------------------------------------------- checks
def version_tuple(version: str) -> Tuple[int, ...]:
    """``"10.14.1.48"`` -> (10, 14, 1, 48); stops at the first part that is not a number."""
    parts = []
    for p in str(version).split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


# TensorRT's engine compatibility rules (developer guide, "Version Compatibility"; support
# matrix, "Engine Portability"): a plain engine runs only on the release that built it; a
# version-compatible one (built by 8.6 or later) also runs on later releases of its major
# version, and across majors only 8 -> 9, 8 -> 10 and 10 -> 11; no release runs an engine built
# by a later one.
VERSION_COMPATIBLE_SINCE = (8, 6)
CROSS_MAJOR = {(8, 9), (8, 10), (10, 11)}


def incompatibility(info: EngineInfo, installed: str) -> Optional[str]:
    """The TensorRT rule that keeps ``installed`` from running the engine, or None."""
    built, here = version_tuple(info.tensorrt_version)[:3], version_tuple(installed)[:3]
    if built == here:
        return None
    if not info.version_compatible:
        return ("an engine built without --versionCompatible runs only on the TensorRT release "
                "that built it")
    if here < built:
        return "no TensorRT release runs an engine built by a later one"
    if built[:2] < VERSION_COMPATIBLE_SINCE:
        return "version compatibility starts with engines built by TensorRT 8.6"
    if built[0] != here[0] and (built[0], here[0]) not in CROSS_MAJOR:
        return ("version-compatible engines cross major versions only from 8 to 9 or 10 and "
                "from 10 to 11")
    return None


def check_tensorrt_version(info: EngineInfo, installed: str, engine_path: str = "engine") -> None:
    """Refuse an engine the installed TensorRT cannot run, naming both versions, the rule that
    refused it and the fix."""
    rule = incompatibility(info, installed)
    if rule:
        raise CCNetError(
            f"{engine_path} was built with TensorRT {info.tensorrt_version} but TensorRT "
            f"{installed} is installed, and {rule}: rebuild it here with ccnet build "
            "(with --versionCompatible it also runs on later releases)")


def format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def parse_shapes(text: Optional[str], default_name: str = "input") -> Dict[str, Shape]:
    """trtexec shape syntax: ``input:1x3x512x512[,other:1x2]`` -> {name: (dims)}.
    A bare ``1x3x512x512`` applies to ``default_name``."""
    if not text:
        return {}
    shapes: Dict[str, Shape] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, dims = item.rpartition(":")
        name = name.strip().strip("'\"") if sep else default_name
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise CCNetError(f"bad shape {item!r}: use name:NxCxHxW, e.g. "
                             f"{default_name}:1x3x512x512") from None
        if not shape or any(d < 1 for d in shape):
            raise CCNetError(f"bad shape {item!r}: dimensions must be positive integers")
        shapes[name] = shape
    return shapes


def find_profile(shape: Sequence[int], info: EngineInfo) -> int:
    """Index of the first profile whose range contains ``shape`` for the engine's input; raises
    a one-line error giving the range(s) when none does."""
    shape = tuple(int(s) for s in shape)
    name = info.input_name
    ranges = []
    for index, profile in enumerate(info.profiles):
        rng = profile.get(name)
        if rng is None:
            continue
        lo, hi = tuple(rng["min"]), tuple(rng["max"])
        if len(lo) == len(shape) and all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return index
        ranges.append(f"{format_shape(lo)} .. {format_shape(hi)}")
    if not ranges:
        raise CCNetError(f"the engine side file has no optimization profile for input {name!r}: "
                         "rebuild with ccnet-build")
    raise CCNetError(
        f"input shape {format_shape(shape)} is outside the engine's profile for {name!r} "
        f"(min .. max: {'; '.join(ranges)}): rebuild with --minShapes/--maxShapes covering it, "
        "or use an image size the profile covers")


def find_label_head_profile(size: Sequence[int], info: EngineInfo) -> int:
    """``find_profile`` for the label head's output-size input at an H×W output ``size``."""
    return find_profile(label_head_feed(size).shape,
                        dataclasses.replace(info, input_name=LABEL_HEAD_INPUT))

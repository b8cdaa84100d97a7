"""Every fuzz case, in a fixed order: the fast slice (default suite) or the full campaign."""
from __future__ import annotations

from typing import List

from .environment import Environment
from .gen_checkpoints import checkpoint_cases
from .gen_media import MAX_IMAGE_PIXELS, image_cases, path_cases, signal_cases, video_cases
from .gen_onnx import onnx_cases
from .harness import Case

SIZES = ("fast", "full")
# The worker's environment: a low pixel limit so the over-limit image case stays cheap.
WORKER_ENV = {"CCNET_MAX_IMAGE_PIXELS": str(MAX_IMAGE_PIXELS)}


def all_cases(env: Environment, size: str = "fast") -> List[Case]:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    return (checkpoint_cases(env, size) + onnx_cases(env, size) + image_cases(env, size)
            + path_cases(env) + video_cases(env, size) + signal_cases(env, size))

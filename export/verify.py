"""Checks every exported file passes before it is written: ONNX full check, then ONNX Runtime
against PyTorch (or FP16 against FP32) on a photo-sized input.  Shared by the FP32 export and the
FP16 conversion; a file that fails is never left behind."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from ccnet.errors import CCNetError, first_line
from ccnet.files import atomic_output
from ccnet.meta import ModelMeta

from .graph import register_schema

# FP32 file vs PyTorch.  The primary criterion is argmax agreement (the labels users get); the
# logits must also be close, polygraphy-style: an element passes when |got - expected| <=
# max(atol, rtol * |expected|).  FP32 rounding through 100+ layers (R50/R101-D8) legitimately
# moves logits by ~1e-4 of the largest |logit| (0.0022 on an R50-D8 ADE20K model whose argmax
# agrees on 100 % of pixels), so the defaults leave room for that while an export defect
# (a wrong op, layout or weight) moves logits by whole units.  polygraphy's own defaults
# (1e-5/1e-5) are sized for single layers.
DEFAULT_ATOL = 1e-2
DEFAULT_RTOL = 1e-3
MIN_AGREEMENT = 0.999
# FP16 on real photos (tests/test_fp16.py holds the trained model to this).
FP16_MIN_AGREEMENT = 0.995
# The export-time gate for FP16 is looser: it refuses broken conversions, while random-weight
# models with tiny argmax margins land at ~99.5% (see bench/RESULTS.md) and must not flap.
FP16_VERIFY_MIN_AGREEMENT = 0.99
# Verification runs PyTorch and ORT on an input at the model's test scale, capped so an R50 at
# Cityscapes scale (1024×2048) verifies in seconds, not minutes, on a small CPU.
VERIFY_MAX_SIDE = 512
# Smallest input side: output stride 8 leaves a 2×2 feature map, the least on which criss-cross
# attention attends to anything but the pixel's own row.
MIN_SIZE = 16

ImageLike = Union[None, str, np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """What an FP32 file must meet against PyTorch (``ccnet export --atol/--rtol/
    --min-agreement``)."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    min_agreement: float = MIN_AGREEMENT

    def __post_init__(self):
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise CCNetError(f"--{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.min_agreement, (int, float)) and 0 <= self.min_agreement <= 1):
            raise CCNetError(f"--min-agreement must be a fraction in [0, 1], got "
                             f"{self.min_agreement!r}")


# ----------------------------------------------------------------------------- inputs
def synthetic_photo(height: int = 480, width: int = 640) -> np.ndarray:
    """A deterministic photo-like BGR image (smooth gradients and a block) for verification
    when the caller gives no photo."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    img[height // 4: height // 2, width // 3: width // 2] = (30, 200, 90)
    return img.astype(np.uint8)


def _photo(image: ImageLike) -> np.ndarray:
    from ccnet.images import check_image, load_image

    if image is None:
        return synthetic_photo()
    return check_image(load_image(image) if isinstance(image, str) else image)


def photo_input(meta: ModelMeta, image: ImageLike = None,
                fixed_hw: Tuple[Optional[int], Optional[int]] = (None, None),
                max_side: Optional[int] = VERIFY_MAX_SIDE, ratio: float = 1.0) -> np.ndarray:
    """``image`` (a path, a BGR array, or None for a synthetic photo) as network input 1×3×h×w
    at the model's test scale (× ``ratio``), capped to ``max_side``; fixed dims force that size."""
    import cv2

    from ccnet.processing import normalize, rescale_size

    photo = _photo(image)
    h0, w0 = photo.shape[:2]
    w, h = rescale_size(w0, h0, [int(s * ratio) for s in meta.test_scale])
    if max_side and max(h, w) > max_side:
        f = max_side / max(h, w)
        h, w = max(1, round(h * f)), max(1, round(w * f))
    h, w = fixed_hw[0] or h, fixed_hw[1] or w
    return normalize(cv2.resize(photo, (w, h), interpolation=cv2.INTER_LINEAR), meta)[None]


def batch_of(x: np.ndarray, n: int) -> np.ndarray:
    """n images from one: the copies alternate with horizontal flips so they differ."""
    return np.concatenate([x if i % 2 == 0 else x[:, :, :, ::-1] for i in range(n)]).copy()


def verification_inputs(meta: ModelMeta, batch, height, width, image: ImageLike = None,
                        sizes: Optional[Sequence[Tuple[int, int, int]]] = None) -> List[np.ndarray]:
    """Inputs to compare ORT and PyTorch on: the photo at the test scale and (dynamic dims) a
    second, odd size with batch 2; or the explicit (N, H, W) ``sizes``."""
    photo = _photo(image)
    if sizes:
        return [batch_of(photo_input(meta, photo, (h, w)), n) for n, h, w in sizes]
    first = photo_input(meta, photo, (height, width))
    inputs = [batch_of(first, batch or 1)]
    if height is None or width is None or batch is None:
        _, _, h, w = first.shape
        # Not a multiple of 8, at a different aspect ratio.
        h2 = height or max(MIN_SIZE, h * 3 // 4 + 3)
        w2 = width or max(MIN_SIZE, w * 2 // 3 + 5)
        inputs.append(batch_of(photo_input(meta, photo, (h2, w2)), batch or 2))
    return inputs


# ----------------------------------------------------------------------------- checks
def write_verified(model: onnx.ModelProto, out: str, verify_fn: Callable[[str], object],
                   full_check: bool = True, log: Callable = print):
    """Save to a temp file beside ``out``, run the onnx full check and ``verify_fn(tmp)``, then
    move it into place; on any failure nothing is left and the error says which check failed."""
    register_schema()  # the checker needs the custom op's schema (plugin-only form)
    with atomic_output(out) as tmp:
        onnx.save(model, tmp)
        if full_check:
            try:
                onnx.checker.check_model(tmp, full_check=True)
            except Exception as e:
                raise CCNetError(f"verification failed: onnx.checker full check: "
                                 f"{first_line(e)}") from e
            log("onnx.checker full check: ok")
        return verify_fn(tmp)


def check_finite(array: np.ndarray, what: str, shape) -> None:
    """Refuse NaN/Inf outputs: every comparison with NaN is False and argmax of an all-NaN row
    is 0 on both sides, so without this a broken model would "agree" on 100 % of pixels."""
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise CCNetError(f"verification failed: {what} has {bad} NaN/Inf value(s) at input "
                         f"{tuple(shape)}; the weights or the file are broken")


def compare(expected: np.ndarray, got: np.ndarray, labels: bool,
            tolerance: Tolerance = Tolerance()) -> dict:
    """Argmax agreement and the logit error distribution (max, p99, largest |logit|, elements
    outside the tolerance) of two outputs."""
    if labels:
        return {"agreement": float((expected == got).mean())}
    expected64 = expected.astype(np.float64)
    err = np.abs(expected64 - got)
    allowed = np.maximum(tolerance.atol, tolerance.rtol * np.abs(expected64))
    return {"agreement": float((expected.argmax(1) == got.argmax(1)).mean()),
            "max_abs_error": float(err.max()), "p99_abs_error": float(np.percentile(err, 99)),
            "max_abs_logit": float(np.abs(expected).max()),
            "outside_tolerance": int(np.count_nonzero(err > allowed))}


def check_comparison(result: dict, shape, labels: bool, fp16: bool,
                     tolerance: Tolerance = Tolerance()) -> None:
    """Raise CCNetError when a comparison misses the agreement or the tolerance."""
    min_agreement = FP16_VERIFY_MIN_AGREEMENT if fp16 else tolerance.min_agreement
    if result["agreement"] < min_agreement:
        raise CCNetError(f"verification failed: argmax agreement {result['agreement'] * 100:.3f}%"
                         f" < {min_agreement * 100:.2f}% at input {tuple(shape)}")
    if not labels and not fp16 and result["outside_tolerance"]:
        raise CCNetError(
            f"verification failed: {result['outside_tolerance']} logit(s) differ by more than "
            f"max(atol={tolerance.atol:g}, rtol={tolerance.rtol:g} × |logit|) at input "
            f"{tuple(shape)} (max abs error {result['max_abs_error']:.3g}, p99 "
            f"{result['p99_abs_error']:.3g}); loosen with --atol/--rtol if the model is known "
            "to be this sensitive")


def _torch_outputs(module, x: np.ndarray, labels: bool):
    """PyTorch's output for ``x`` and the logits behind it (checked for NaN/Inf even when the
    file outputs labels)."""
    import torch

    net = getattr(module, "net", None) if labels else module
    with torch.inference_mode():
        if net is None:
            return module(torch.from_numpy(x)).numpy(), None
        logits = net(torch.from_numpy(x))
        return (logits.argmax(1) if labels else logits).numpy(), logits.numpy()


def verify_against_torch(runnable: onnx.ModelProto, module, inputs: List[np.ndarray],
                         labels: bool, fp16: bool, log: Callable = print,
                         tolerance: Tolerance = Tolerance(),
                         ort_outputs: Optional[List[np.ndarray]] = None) -> List[dict]:
    """Run ORT CPU and PyTorch on each input; raise CCNetError if a limit is missed.
    ``ort_outputs``, when given, receives ORT's output for each input (in order)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(runnable.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's own error types (Fail, InvalidGraph, ...)
        raise CCNetError(f"verification failed: ONNX Runtime cannot load the exported model "
                         f"({first_line(e)})") from None
    results = []
    for x in inputs:
        expected, logits = _torch_outputs(module, x, labels)
        if logits is not None:
            check_finite(logits, "the PyTorch model's output", x.shape)
        try:
            got = session.run(None, {"input": x})[0]
        except Exception as e:
            raise CCNetError(f"verification failed: ONNX Runtime cannot run the exported model "
                             f"at input {tuple(x.shape)} ({first_line(e)})") from None
        if got.shape != expected.shape:
            raise CCNetError(f"verification failed: ONNX Runtime output shape {got.shape} != "
                             f"PyTorch {expected.shape} for input {x.shape}")
        if not labels:
            check_finite(got, "the ONNX Runtime output", x.shape)
        if ort_outputs is not None:
            ort_outputs.append(got)
        r = {"shape": list(x.shape), **compare(expected, got, labels, tolerance)}
        results.append(r)
        what = "fp16 vs PyTorch fp32" if fp16 else "vs PyTorch"
        err = (f", logit error max {r['max_abs_error']:.3g} p99 {r['p99_abs_error']:.3g} (max "
               f"|logit| {r['max_abs_logit']:.3g})" if not labels else "")
        log(f"verify ORT CPU {what} {tuple(x.shape)}: argmax agreement "
            f"{r['agreement'] * 100:.3f}%{err}")
        check_comparison(r, x.shape, labels, fp16, tolerance)
    return results


def head_check_size(height: int, width: int) -> Tuple[int, int]:
    """The output size a label head is verified at for an h×w input: an odd, non-integer
    upscale, like resizing back to a photo."""
    return height * 3 // 2 + 1, width * 3 // 2 + 1


def verify_label_head(head: onnx.ModelProto, logits: List[np.ndarray], inputs: List[np.ndarray],
                      meta: ModelMeta, log: Callable = print) -> List[dict]:
    """The head's labels (ORT CPU) against the host resize + argmax of the logits file's output
    for each input (``logits``, as ``verify_against_torch`` collected them; resized with
    ``ccnet.label_resize``, equal to the exact float32 reference up to ties) at
    ``head_check_size``; raise CCNetError below MIN_AGREEMENT."""
    import onnxruntime as ort

    from ccnet.labels import LABEL_HEAD_INPUT, label_head_feed
    from ccnet.label_resize import resize_argmax

    with_head = ort.InferenceSession(head.SerializeToString(),
                                     providers=["CPUExecutionProvider"])
    results = []
    for x, plain in zip(inputs, logits):
        size = head_check_size(*x.shape[2:])
        labels = with_head.run(None, {"input": x, LABEL_HEAD_INPUT: label_head_feed(size)})[0]
        expected = np.stack([resize_argmax(item, size, meta.align_corners) for item in plain])
        if labels.shape != expected.shape:
            raise CCNetError(f"verification failed: label head output {labels.shape} != "
                             f"{expected.shape} of the resize + argmax of the logits at input "
                             f"{tuple(x.shape)}")
        agreement = float((labels == expected).mean())
        log(f"verify label head {tuple(x.shape)} -> {size[0]}x{size[1]}: {labels.dtype} labels, "
            f"agreement with the host resize + argmax {agreement * 100:.4f}%")
        if agreement < MIN_AGREEMENT:
            raise CCNetError(f"verification failed: label head output {labels.shape} agrees on "
                             f"{agreement * 100:.3f}% of pixels (< {MIN_AGREEMENT * 100:.2f}%)"
                             f" with the resize + argmax of the logits at input {tuple(x.shape)}")
        results.append({"shape": list(x.shape), "output_size": list(size),
                        "agreement": agreement})
    return results

"""``--quantizer modelopt``: NVIDIA ModelOpt's ONNX PTQ places the Q/DQ nodes instead of ours.

ModelOpt (``modelopt.onnx.quantization.quantize``; optional, installed as ``INSTALL_HINT`` says)
chooses which tensors get Q/DQ with its TensorRT-oriented rules (it also quantizes Add,
MaxPool, Resize and Mul inputs).  What it is given, so that only the
placement differs from ours:

- the same calibration inputs (the photos chosen for ``--images``/``--list``, the inference
  pre-processing), read by its ONNX Runtime CPU calibrator (``calibration_eps=["cpu"]``) with
  its max method, which accepts inputs of different sizes;
- our ranges for every tensor we calibrated (the ``--method`` result, merged over shapes),
  handed over as a TensorRT calibration cache, which ModelOpt applies over its own scales;
- the criss-cross node excluded (``op_types_to_exclude``) and its inputs read in float.

ModelOpt needs opset >= 19 and drops model-local functions when it converts the opset, so it
gets an opset-19 copy with the criss-cross function rebuilt for that opset.

ModelOpt runs ONNX Runtime's symbolic shape inference, which cannot infer the custom node's
output and then saves the model as ``sym_shape_infer_temp.onnx`` (+ ``<uuid>.data``) in the
current directory; files of those names that appear during the call are removed
(``_without_shape_inference_leftovers``).
"""
from __future__ import annotations

import contextlib
import os
import re
import struct
from typing import Iterator, Sequence, Tuple

import numpy as np
import onnx

from ccnet.errors import CCNetError, first_line

from .calibrate import Ranges, data_reader, ort_prints_as_debug_log
from .qdq_graph import float_cca_inputs_from_qdq

MODELOPT_OPSET = 19
_SHAPE_INFERENCE_LEFTOVER = re.compile(
    r"sym_shape_infer_temp\.onnx|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.data")
INSTALL_HINT = ("pip install nvidia-modelopt onnx-graphsurgeon cppimport lief ml_dtypes (not the "
                "[onnx] extra: it pins onnx 1.21 and adds onnxruntime-gpu beside onnxruntime)")


def require_modelopt():
    """The ``modelopt.onnx.quantization`` module, or a one-line error saying how to get it."""
    try:
        import modelopt.onnx.quantization as moq
    except Exception as e:  # ImportError, or a broken install failing at import time
        raise CCNetError(f"--quantizer modelopt needs NVIDIA ModelOpt, which cannot be imported "
                         f"here ({type(e).__name__}: {first_line(e, 120)}): {INSTALL_HINT}") from None
    return moq


def write_trt_cache(path: str, ranges: Ranges) -> None:
    """Our ranges as a TensorRT calibration cache (tensor: big-endian float32 scale, hex), the
    symmetric int8 scale ONNX Runtime computes for the same range."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    qmin, qmax = get_qmin_qmax_for_qType(onnx.TensorProto.INT8, symmetric=True)
    lines = ["TRT-8501-EntropyCalibration2"]
    for name, (low, high) in sorted(ranges.items()):
        _, scale = compute_scale_zp(np.float32(low), np.float32(high), qmin, qmax, symmetric=True)
        lines.append(f"{name}: {struct.pack('!f', float(scale)).hex()}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def quantize_modelopt(prepared_path: str, input_name: str,
                      items: Sequence[Tuple[str, np.ndarray]], ranges: Ranges,
                      workdir: str) -> onnx.ModelProto:
    """ModelOpt INT8 of the opset-19 ``prepared_path``; returns the quantized model."""
    from export.graph import contract

    moq = require_modelopt()
    cache = os.path.join(workdir, "ranges.trtcache")
    write_trt_cache(cache, ranges)
    out = os.path.join(workdir, "modelopt_int8.onnx")
    try:
        with ort_prints_as_debug_log(), _without_shape_inference_leftovers(os.getcwd()):
            moq.quantize(prepared_path, quantize_mode="int8", calibration_method="max",
                         calibration_data_reader=data_reader(input_name, list(items)),
                         calibration_cache_path=cache, calibration_eps=["cpu"],
                         op_types_to_exclude=[contract()["op_type"]],
                         high_precision_dtype="fp32", output_path=out, log_level="WARNING")
    except Exception as e:
        raise CCNetError(f"ModelOpt could not quantize the model ({type(e).__name__}: "
                         f"{first_line(e)}): use --quantizer ort") from e
    model = onnx.load(out)
    float_cca_inputs_from_qdq(model)
    return model


@contextlib.contextmanager
def _without_shape_inference_leftovers(directory: str) -> Iterator[None]:
    """Remove the files ONNX Runtime's symbolic shape inference leaves in ``directory`` (only
    names it writes, only files that were not there before)."""
    before = set(os.listdir(directory))
    try:
        yield
    finally:
        for name in set(os.listdir(directory)) - before:
            if _SHAPE_INFERENCE_LEFTOVER.fullmatch(name):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(directory, name))

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

ModelOpt runs in a **child process** working in the temporary folder: it patches ONNX
Runtime's calibrator and quantizer classes for the whole process and never restores them (our
own calibration in the same process would then measure the wrong tensors), and ONNX Runtime's
symbolic shape inference, which it runs, saves ``sym_shape_infer_temp.onnx`` + ``<uuid>.data``
in the current folder when it cannot infer the custom node.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from typing import Sequence, Tuple

import numpy as np
import onnx

from ccnet.errors import CCNetError, first_line

from .calibrate import LOG, Ranges, data_reader
from .qdq_graph import float_cca_inputs_from_qdq, symmetric_int8_scale

MODELOPT_OPSET = 19
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
    lines = ["TRT-8501-EntropyCalibration2"]
    for name, (low, high) in sorted(ranges.items()):
        scale = symmetric_int8_scale(low, high)
        lines.append(f"{name}: {struct.pack('!f', float(scale)).hex()}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def quantize_modelopt(prepared_path: str, input_name: str,
                      items: Sequence[Tuple[str, np.ndarray]], ranges: Ranges,
                      workdir: str) -> onnx.ModelProto:
    """ModelOpt INT8 of the opset-19 ``prepared_path`` (in a child process, see the module
    docstring); returns the quantized model."""
    require_modelopt()
    job = {"model": prepared_path, "input_name": input_name,
           "inputs": os.path.join(workdir, "calibration_inputs.npz"),
           "cache": os.path.join(workdir, "ranges.trtcache"),
           "out": os.path.join(workdir, "modelopt_int8.onnx")}
    write_trt_cache(job["cache"], ranges)
    np.savez(job["inputs"], *[batch for _, batch in items])
    with open(os.path.join(workdir, "modelopt_job.json"), "w") as f:
        json.dump(job, f)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run(
        [sys.executable, "-c", "from calib.modelopt_quantizer import run_job; "
                               "run_job('modelopt_job.json')"],
        cwd=workdir, env=env, capture_output=True, text=True)
    if done.stdout.strip():
        LOG.debug(done.stdout.strip())
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise CCNetError(f"ModelOpt could not quantize the model ({reason}): use --quantizer ort")
    model = onnx.load(job["out"])
    float_cca_inputs_from_qdq(model)
    return model


def run_job(job_path: str) -> None:
    """The child process: ModelOpt's ``quantize`` on the job's files; an error is one line on
    stderr and exit status 1."""
    from export.graph import contract, register_schema

    register_schema()  # ONNX shape inference (run by ModelOpt) types the criss-cross output

    with open(job_path) as f:
        job = json.load(f)
    try:
        moq = require_modelopt()
        with np.load(job["inputs"]) as data:
            batches = [data[f"arr_{i}"] for i in range(len(data.files))]
        moq.quantize(job["model"], quantize_mode="int8", calibration_method="max",
                     calibration_data_reader=data_reader(job["input_name"],
                                                         [(None, b) for b in batches]),
                     calibration_cache_path=job["cache"], calibration_eps=["cpu"],
                     op_types_to_exclude=[contract()["op_type"]], high_precision_dtype="fp32",
                     output_path=job["out"], log_level="WARNING")
    except Exception as e:
        print(f"{type(e).__name__}: {first_line(e)}", file=sys.stderr)
        sys.exit(1)

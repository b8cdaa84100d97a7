"""The criss-cross attention kernels executed on the CPU, from the very source the GPU runs.

plugins/cca_kernels.cu is compiled by the host C++ compiler into libccnet_cca_cpu.so and run by
the CUDA CPU mode (plugins/cuda_cpu): every CUDA thread of a block is a fiber, __syncthreads()
and warp shuffles are real rendezvous points, launch grids are the GPU's. The shape sweep checks
the kernels' indexing, tiling, masking, softmax and FP16 rounding against
torch.ops.ccnet.criss_cross_attention and an independent float64 reference; the plugin's
enqueue runs through the C++ host driver on host memory. What only a GPU run shows (speed, real
warp scheduling) is in tests/gpu.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from plugin_helpers import (SWEEP_SHAPES, TOLERANCE, build_targets, enqueue_through_driver, make_inputs,
                            plugins, record_correctness, reference_float64, reference_torch_op,
                            relative_error, shape_id)


@pytest.fixture(scope="module")
def cpu_lib():
    folder = build_targets("ccnet_cca_cpu")
    return plugins.load_library(os.path.join(folder, plugins.CPU_LIBRARY_NAME))


def _workspace(nbytes: int) -> np.ndarray:
    # float64 storage: 8-byte aligned, as the kernels' float2 statistics need.
    return np.full(max(nbytes, 8) // 8 + 1, np.nan)


def _forward(lib, q, k, v, dtype, workspace_bytes=None, workspace=None):
    n, cq, h, w = q.shape
    c = v.shape[1]
    out = np.full(v.shape, np.nan, dtype=v.dtype)
    needed = lib.ccnet_cca_workspace_size(n, h, w)
    provided = needed if workspace_bytes is None else workspace_bytes
    ws = _workspace(provided) if workspace is None else workspace
    status = lib.ccnet_cca_forward(q.ctypes.data, k.ctypes.data, v.ctypes.data, out.ctypes.data, n, cq, c, h, w,
                                   plugins.DTYPE_CODES[dtype], ws.ctypes.data, provided, None)
    return plugins.STATUS_NAMES.get(status, status), out


@pytest.mark.parametrize("spread", ["flat", "peaked"])
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("shape", SWEEP_SHAPES, ids=shape_id)
def test_kernels_match_torch_op_and_float64_reference(cpu_lib, shape, dtype, spread):
    q, k, v = make_inputs(shape, dtype, spread, seed=sum(shape) + len(dtype) + len(spread))
    status, out = _forward(cpu_lib, q, k, v, dtype)
    assert status == "ok"
    for name, reference in (("torch op", reference_torch_op(q, k, v)), ("float64", reference_float64(q, k, v))):
        error = relative_error(out, reference)
        record_correctness("cpu", shape, dtype, spread, name, error)
        assert error <= TOLERANCE[dtype], f"{shape_id(shape)} {dtype} {spread} vs {name}: relative error {error:.3e}"


def test_the_two_references_agree():
    q, k, v = make_inputs((2, 5, 7, 6, 9), "fp32", "peaked", seed=3)
    np.testing.assert_allclose(reference_torch_op(q, k, v), reference_float64(q, k, v), rtol=1e-12, atol=1e-12)


def test_repeated_runs_are_identical(cpu_lib):
    q, k, v = make_inputs((1, 20, 70, 29, 33), "fp16", "peaked", seed=5)
    first = _forward(cpu_lib, q, k, v, "fp16")[1]
    second = _forward(cpu_lib, q, k, v, "fp16")[1]
    assert first.tobytes() == second.tobytes()


def test_bad_arguments_get_a_status_and_leave_the_output_alone(cpu_lib):
    shape = (1, 8, 16, 5, 6)
    q, k, v = make_inputs(shape, "fp32", "flat", seed=1)
    needed = cpu_lib.ccnet_cca_workspace_size(1, 5, 6)
    assert needed == 5 * 6 * (16 + 4 * (5 + 6))

    status, out = _forward(cpu_lib, q, k, v, "fp32", workspace_bytes=needed - 1)
    assert status == "workspace too small" and np.isnan(out).all()

    misaligned = _workspace(needed + 8)
    shifted = misaligned.ctypes.data + 4
    out = np.full(v.shape, np.nan, np.float32)
    status = cpu_lib.ccnet_cca_forward(q.ctypes.data, k.ctypes.data, v.ctypes.data, out.ctypes.data, 1, 8, 16, 5, 6,
                                       plugins.DTYPE_FP32, shifted, needed, None)
    assert plugins.STATUS_NAMES[status] == "bad argument" and np.isnan(out).all()

    args = [q.ctypes.data, k.ctypes.data, v.ctypes.data, out.ctypes.data, 1, 8, 16, 5, 6, plugins.DTYPE_FP32,
            _workspace(needed).ctypes.data, needed, None]
    for index, value in ((0, None), (3, None), (10, None), (4, 0), (5, -1), (6, 0), (8, 0), (9, 7), (9, -1)):
        bad = list(args)
        bad[index] = value
        assert plugins.STATUS_NAMES[cpu_lib.ccnet_cca_forward(*bad)] == "bad argument", f"argument {index} = {value}"
    assert np.isnan(out).all()

    too_large = list(args)
    too_large[7] = 65536  # h beyond the launch grid
    assert plugins.STATUS_NAMES[cpu_lib.ccnet_cca_forward(*too_large)] == "problem too large"


def test_sizes_and_workspace_report_what_cannot_run(cpu_lib):
    assert plugins.STATUS_NAMES[cpu_lib.ccnet_cca_check_sizes(2, 64, 512, 97, 97)] == "ok"
    assert plugins.STATUS_NAMES[cpu_lib.ccnet_cca_check_sizes(0, 64, 512, 97, 97)] == "bad argument"
    assert plugins.STATUS_NAMES[cpu_lib.ccnet_cca_check_sizes(1, 8, 8, 70000, 4)] == "problem too large"
    biggest = 2**31 - 1
    assert plugins.STATUS_NAMES[cpu_lib.ccnet_cca_check_sizes(65535, 8, biggest, 65535, 65535)] == "problem too large"
    # The workspace size never wraps around: 0 means "cannot run".
    assert cpu_lib.ccnet_cca_workspace_size(biggest, biggest, biggest) == 0
    assert cpu_lib.ccnet_cca_workspace_size(2, 97, 97) == 2 * 97 * 97 * (16 + 4 * (97 + 97))


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("shape", [SWEEP_SHAPES[0], SWEEP_SHAPES[2], SWEEP_SHAPES[5]], ids=shape_id)
def test_plugin_enqueue_on_cpu(tmp_path, shape, dtype):
    """The plugin's enqueue, as TensorRT drives it (configure, getWorkspaceSize, onShapeChange),
    then again after a serialization round trip (the driver requires identical bytes)."""
    folder = build_targets("ccnet_cca_cpu", "ccnet_plugin_host_driver_cpu")
    q, k, v = make_inputs(shape, dtype, "peaked", seed=11)
    out = enqueue_through_driver(os.path.join(folder, "ccnet_plugin_host_driver_cpu"),
                                 os.path.join(folder, plugins.CPU_LIBRARY_NAME), str(tmp_path), shape, dtype, q, k, v)
    error = relative_error(out, reference_torch_op(q, k, v))
    assert error <= TOLERANCE[dtype], f"{shape_id(shape)} {dtype}: relative error {error:.3e}"


def test_cpu_library_needs_neither_cuda_nor_tensorrt(cpu_lib):
    import shutil
    import subprocess

    if shutil.which("ldd") is None:
        pytest.skip("ldd not available")
    out = subprocess.run(["ldd", cpu_lib._name], capture_output=True, text=True).stdout
    assert "libnvinfer" not in out and "libcudart" not in out and "libcuda" not in out

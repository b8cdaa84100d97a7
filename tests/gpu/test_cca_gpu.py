"""GPU checks of the criss-cross attention kernels against torch.ops.ccnet.criss_cross_attention.

Run on a machine with a CUDA GPU through tests/gpu/run_on_device.sh (marker `gpu`; the default
suite deselects these, and without a GPU they skip). The same shape sweep as the CPU build
(tests/test_cca_cpu_kernels.py, shapes in tests/plugin_helpers.py) plus the CCNet sizes, through
  * the extern "C" launcher ccnet_cca_forward (ctypes + torch device pointers),
  * the plugin's IPluginV3OneRuntime::enqueue, called on the plugin object by the C++ host
    driver (no TensorRT runtime involved), with its serialization round trip.
Outputs are NaN-poisoned before every run; error = max|out - ref| / max|ref| with the reference
computed in float64 from the same (already rounded) inputs. With $CCNET_CORRECTNESS_JSON set,
every measured error is recorded there.
"""
from __future__ import annotations


import numpy as np
import pytest

from plugin_helpers import (SWEEP_SHAPES, TOLERANCE, enqueue_through_driver, make_inputs, plugin_build,
                            plugins, record_correctness, reference_torch_op, relative_error, shape_id)

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU available (run tests/gpu/run_on_device.sh on a GPU machine)",
                allow_module_level=True)

import ccnet.ops  # noqa: E402,F401  registers torch.ops.ccnet.criss_cross_attention

# The CCNet sizes on top of the sweep: 97x97 and 128x256 feature maps with C=512, batch 2.
CCNET_SHAPES = [(2, 64, 512, 97, 97), (1, 64, 512, 128, 256), (1, 64, 512, 64, 128)]


def _launch(lib, q, k, v, out):
    n, cq, h, w = q.shape
    c = v.shape[1]
    ws_bytes = lib.ccnet_cca_workspace_size(n, h, w)
    workspace = torch.full((ws_bytes // 4,), float("nan"), device="cuda", dtype=torch.float32)
    dtype = "fp16" if q.dtype == torch.float16 else "fp32"
    status = lib.ccnet_cca_forward(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), n, cq, c, h, w,
                                   plugins.DTYPE_CODES[dtype], workspace.data_ptr(), ws_bytes,
                                   torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert status == 0, f"ccnet_cca_forward: {plugins.STATUS_NAMES.get(status, status)}"


@pytest.fixture(scope="module")
def lib():
    return plugins.load_library()


@pytest.mark.parametrize("spread", ["flat", "peaked"])
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("shape", SWEEP_SHAPES + CCNET_SHAPES, ids=shape_id)
def test_launcher_matches_reference(lib, shape, dtype, spread):
    q, k, v = make_inputs(shape, dtype, spread, seed=sum(shape) + len(dtype) + len(spread))
    tq, tk, tv = (torch.from_numpy(t).cuda() for t in (q, k, v))
    # The float64 op on the GPU: the same reference as reference_torch_op, faster for 128x256.
    reference = torch.ops.ccnet.criss_cross_attention(tq.double(), tk.double(), tv.double()).cpu().numpy()
    for attempt in range(2):  # a second run into a re-poisoned output
        out = torch.full_like(tv, float("nan"))
        _launch(lib, tq, tk, tv, out)
        error = relative_error(out.cpu().numpy(), reference)
        if attempt == 0:
            record_correctness("cuda", shape, dtype, spread, "torch op", error)
        assert error <= TOLERANCE[dtype], f"{shape_id(shape)} {dtype} {spread}: relative error {error:.3e}"


def test_launcher_rejects_small_workspace(lib):
    q, k, v = (torch.from_numpy(t).cuda() for t in make_inputs((1, 8, 16, 4, 4), "fp32", "flat", seed=0))
    out = torch.full_like(v, float("nan"))
    ws = torch.empty(8, device="cuda", dtype=torch.float32)
    status = lib.ccnet_cca_forward(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), 1, 8, 16, 4, 4,
                                   plugins.DTYPE_FP32, ws.data_ptr(), 32, None)
    torch.cuda.synchronize()
    assert plugins.STATUS_NAMES[status] == "workspace too small"
    assert torch.isnan(out).all(), "a refused call wrote the output"


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("shape", [SWEEP_SHAPES[0], SWEEP_SHAPES[2], SWEEP_SHAPES[5], CCNET_SHAPES[0]],
                         ids=shape_id)
def test_plugin_enqueue_matches_reference(tmp_path, shape, dtype):
    library, driver = plugin_build("cuda")
    q, k, v = make_inputs(shape, dtype, "peaked", seed=3)
    out = enqueue_through_driver(driver, library, str(tmp_path), shape, dtype, q, k, v)
    error = relative_error(out, reference_torch_op(q, k, v))
    assert error <= TOLERANCE[dtype], f"{shape_id(shape)} {dtype}: relative error {error:.3e}"


def test_references_agree_on_the_gpu_inputs():
    """The float64 torch op the GPU results are held to equals the spec's direct per-pixel loop."""
    q, k, v = (t.astype(np.float64) for t in make_inputs((1, 3, 2, 4, 5), "fp32", "peaked", seed=0))
    n, cq, h, w = q.shape
    expected = np.zeros_like(v)
    for y in range(h):
        for x in range(w):
            col = [(q[0, :, y, x] * k[0, :, i, x]).sum() if i != y else -np.inf for i in range(h)]
            row = [(q[0, :, y, x] * k[0, :, y, j]).sum() for j in range(w)]
            logits = np.array(col + row)
            a = np.exp(logits - logits.max())
            a /= a.sum()
            expected[0, :, y, x] = (a[:h, None] * v[0, :, :, x].T).sum(0) + (a[h:, None] * v[0, :, y, :].T).sum(0)
    np.testing.assert_allclose(reference_torch_op(q, k, v), expected, rtol=1e-12, atol=1e-12)

"""GPU checks of the criss-cross attention kernels against torch.ops.ccnet.criss_cross_attention.

Run on a machine with a CUDA GPU through tests/gpu/run_on_device.sh (marker `gpu`; the default
suite deselects these, and without a GPU they skip). Two entry points are checked:
  * the extern "C" launcher ccnet_cca_forward (ctypes + torch device pointers),
  * the plugin's IPluginV3OneRuntime::enqueue, called on the plugin object by the C++ host
    driver (no TensorRT runtime involved).
Outputs are NaN-poisoned before every run; error = max|out - ref| / max|ref| with the reference
computed in float64 from the same (already rounded) inputs.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU available (run tests/gpu/run_on_device.sh on a GPU machine)",
                allow_module_level=True)

import ccnet.ops  # noqa: E402,F401  registers torch.ops.ccnet.criss_cross_attention
import plugins  # noqa: E402

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3}
DTYPE_CODE = {torch.float32: plugins.DTYPE_FP32, torch.float16: plugins.DTYPE_FP16}

# (N, Cq, C, H, W): degenerate lines, odd sizes (partial tiles, Cq not a multiple of 16),
# the CCNet sizes 97x97 / 128x256 with C=512, and batch 2.
SHAPES = [
    (1, 8, 16, 1, 1),
    (1, 8, 16, 1, 37),
    (1, 8, 16, 29, 1),
    (1, 3, 5, 31, 33),
    (2, 16, 40, 33, 65),
    (2, 64, 512, 97, 97),
    (1, 64, 512, 128, 256),
    (1, 64, 512, 64, 128),
]


def _shape_id(shape):
    return "x".join(map(str, shape))


def _inputs(shape, dtype, seed):
    n, cq, c, h, w = shape
    gen = torch.Generator(device="cuda").manual_seed(seed)
    # q, k scaled so that the logits (sum over Cq) have std ~2: a peaked but not one-hot softmax.
    scale = (2.0 / cq ** 0.5) ** 0.5
    q = (torch.randn(n, cq, h, w, device="cuda", generator=gen) * scale).to(dtype)
    k = (torch.randn(n, cq, h, w, device="cuda", generator=gen) * scale).to(dtype)
    v = torch.randn(n, c, h, w, device="cuda", generator=gen).to(dtype)
    return q, k, v


def _reference(q, k, v):
    return torch.ops.ccnet.criss_cross_attention(q.double(), k.double(), v.double())


def _relative_error(out, ref):
    assert not torch.isnan(out).any(), "output has NaN: some elements were not written"
    return ((out.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def _launch(lib, q, k, v, out):
    n, cq, h, w = q.shape
    c = v.shape[1]
    ws_bytes = lib.ccnet_cca_workspace_size(n, h, w)
    workspace = torch.full((ws_bytes // 4,), float("nan"), device="cuda", dtype=torch.float32)
    status = lib.ccnet_cca_forward(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), n, cq, c, h, w,
                                   DTYPE_CODE[q.dtype], workspace.data_ptr(), ws_bytes,
                                   torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert status == 0, f"ccnet_cca_forward: {plugins.STATUS_NAMES.get(status, status)}"


@pytest.fixture(scope="module")
def lib():
    return plugins.load_library()


def test_reference_op_matches_formula():
    """Cross-check the reference op itself against a direct float64 loop of spec §2.4."""
    q, k, v = (t.double().cpu() for t in _inputs((1, 3, 2, 4, 5), torch.float32, 0))
    n, cq, h, w = q.shape
    expected = torch.zeros_like(v)
    for y in range(h):
        for x in range(w):
            col = [(q[0, :, y, x] * k[0, :, i, x]).sum() if i != y else torch.tensor(float("-inf"), dtype=torch.float64)
                   for i in range(h)]
            row = [(q[0, :, y, x] * k[0, :, y, j]).sum() for j in range(w)]
            a = torch.softmax(torch.stack(col + row), 0)
            expected[0, :, y, x] = (a[:h, None] * v[0, :, :, x].T).sum(0) + (a[h:, None] * v[0, :, y, :].T).sum(0)
    torch.testing.assert_close(torch.ops.ccnet.criss_cross_attention(q, k, v), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_launcher_matches_reference(lib, shape, dtype):
    for seed in (1, 2):  # fresh inputs, and a second run into a re-poisoned output
        q, k, v = _inputs(shape, dtype, seed)
        out = torch.full_like(v, float("nan"))
        _launch(lib, q, k, v, out)
        err = _relative_error(out, _reference(q, k, v))
        assert err <= TOLERANCE[dtype], f"{_shape_id(shape)} {dtype}: relative error {err:.3e}"


def test_launcher_rejects_small_workspace(lib):
    q, k, v = _inputs((1, 8, 16, 4, 4), torch.float32, 0)
    out = torch.empty_like(v)
    ws = torch.empty(8, device="cuda", dtype=torch.float32)
    status = lib.ccnet_cca_forward(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), 1, 8, 16, 4, 4,
                                   plugins.DTYPE_FP32, ws.data_ptr(), 32, None)
    assert plugins.STATUS_NAMES[status] == "workspace too small"


def _driver_path():
    path = os.environ.get("CCNET_PLUGIN_DRIVER") or os.path.join(
        os.path.dirname(plugins.library_path()), "ccnet_plugin_host_driver")
    if not os.path.isfile(path):
        pytest.fail(f"host driver {path} not built (cmake --build build --target ccnet_plugin_host_driver)")
    return path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("shape", [(1, 8, 16, 1, 1), (1, 8, 16, 29, 1), (1, 8, 16, 1, 37), (2, 64, 512, 97, 97)],
                         ids=_shape_id)
def test_plugin_enqueue_matches_reference(tmp_path, shape, dtype):
    q, k, v = _inputs(shape, dtype, 3)
    for name, t in (("query", q), ("key", k), ("value", v)):
        t.cpu().contiguous().numpy().tofile(tmp_path / f"{name}.bin")
    n, cq, c, h, w = shape
    proc = subprocess.run([_driver_path(), plugins.library_path(), "enqueue",
                           "fp16" if dtype == torch.float16 else "fp32", str(n), str(cq), str(c), str(h), str(w),
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"driver enqueue failed ({proc.returncode}): {proc.stderr}"
    import numpy as np

    np_dtype = np.float16 if dtype == torch.float16 else np.float32
    out = torch.from_numpy(np.fromfile(tmp_path / "output.bin", dtype=np_dtype).reshape(n, c, h, w)).cuda()
    err = _relative_error(out, _reference(q, k, v))
    assert err <= TOLERANCE[dtype], f"{_shape_id(shape)} {dtype}: relative error {err:.3e}"

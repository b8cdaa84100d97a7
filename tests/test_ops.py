"""ccnet::criss_cross_attention against the formula of docs/mmseg-inference.md, mmcv's einsum form, its fake
kernel and its gradient."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccnet.ops import criss_cross_reference  # noqa: F401  (also registers the op)

OP = torch.ops.ccnet.criss_cross_attention


def per_pixel_loop(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The formula, one pixel at a time in float64 (independent of the op's code)."""
    n, _, h, w = q.shape
    out = np.zeros(v.shape, dtype=np.float64)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                e_col = np.array([q[b, :, y, x] @ k[b, :, i, x] for i in range(h)])
                e_col[y] = -np.inf  # the pixel itself is excluded from its column
                e_row = np.array([q[b, :, y, x] @ k[b, :, y, j] for j in range(w)])
                e = np.concatenate([e_col, e_row])
                a = np.exp(e - e.max())
                a /= a.sum()
                out[b, :, y, x] = (v[b, :, :, x] @ a[:h]) + (v[b, :, y, :] @ a[h:])
    return out


def mmcv_cca_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """mmcv 2.x CrissCrossAttention.forward (what mmseg runs) without gamma and the residual."""
    _, _, h, _ = q.shape
    neg_inf_diag = torch.diag(torch.tensor(float("-inf"), dtype=q.dtype).repeat(h), 0)
    energy_h = torch.einsum("bchw,bciw->bwhi", q, k) + neg_inf_diag
    energy_h = energy_h.transpose(1, 2)
    energy_w = torch.einsum("bchw,bchj->bhwj", q, k)
    attn = F.softmax(torch.cat([energy_h, energy_w], dim=-1), dim=-1)
    out = torch.einsum("bciw,bhwi->bchw", v, attn[..., :h])
    out = out + torch.einsum("bchj,bhwj->bchw", v, attn[..., h:])
    return out


SHAPES = [(1, 4, 1, 1), (1, 3, 1, 7), (2, 5, 6, 1), (1, 4, 5, 7), (2, 3, 9, 4), (1, 8, 11, 13)]


def _inputs(shape, dtype, seed, cv=None):
    n, cq, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, cq, h, w, generator=gen, dtype=dtype)
    k = torch.randn(n, cq, h, w, generator=gen, dtype=dtype)
    v = torch.randn(n, cv or cq + 2, h, w, generator=gen, dtype=dtype)
    return q, k, v


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_op_matches_per_pixel_formula(shape):
    q, k, v = _inputs(shape, torch.float64, seed=sum(shape))
    expected = per_pixel_loop(q.numpy(), k.numpy(), v.numpy())
    got64 = OP(q, k, v)
    assert got64.dtype == torch.float64 and got64.shape == v.shape
    np.testing.assert_allclose(got64.numpy(), expected, rtol=1e-10, atol=1e-10)
    got32 = OP(q.float(), k.float(), v.float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 8, 13, 17), (2, 8, 9, 21), (1, 16, 1, 5), (1, 4, 7, 1)])
def test_op_matches_mmcv_einsum(shape):
    q, k, v = _inputs(shape, torch.float32, seed=7, cv=24)
    torch.testing.assert_close(OP(q, k, v), mmcv_cca_core(q, k, v), rtol=1e-5, atol=1e-5)
    q, k, v = (t.double() for t in (q, k, v))
    torch.testing.assert_close(OP(q, k, v), mmcv_cca_core(q, k, v), rtol=1e-12, atol=1e-12)


def test_op_rejects_mismatched_shapes():
    q, k, v = _inputs((1, 4, 5, 6), torch.float32, seed=0)
    with pytest.raises(RuntimeError):
        OP(q, k[:, :, :4], v)
    with pytest.raises(RuntimeError):
        OP(q, k, v[:, :, :, :5])


def test_fake_kernel_and_opcheck():
    q, k, v = _inputs((2, 4, 5, 7), torch.float32, seed=1)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fq, fk, fv = (mode.from_tensor(t) for t in (q, k, v))
        out = OP(fq, fk, fv)
        assert out.shape == v.shape and out.dtype == v.dtype
    q, k, v = (t.double().requires_grad_(True) for t in _inputs((1, 3, 4, 5), torch.float32, 2))
    torch.library.opcheck(OP, (q, k, v))


def test_gradcheck():
    q, k, v = (t.requires_grad_(True) for t in _inputs((1, 2, 3, 4), torch.float64, seed=3, cv=3))
    assert torch.autograd.gradcheck(OP, (q, k, v), eps=1e-6, atol=1e-6)

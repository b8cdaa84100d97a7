"""The criss-cross attention core as one custom op: ``torch.ops.ccnet.criss_cross_attention``.

(query, key, value) -> aggregated output, i.e. mmcv's CrissCrossAttention before
``gamma * out + x``.  The op is the unit that export maps to one ONNX node and TensorRT to one
plugin.  Its reference implementation uses only matmul, an ``arange`` mask and softmax (no
``torch.diag``, no einsum), so the same formulation exports to standard ONNX ops.
"""
from __future__ import annotations

import torch
from torch import Tensor

OP_NAME = "ccnet::criss_cross_attention"


def criss_cross_reference(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Reference criss-cross attention (docs/mmseg-inference.md), any float dtype, softmax in
    float32 or wider.

    query, key: N×Cq×H×W; value: N×C×H×W -> N×C×H×W.  Each pixel attends to its column
    (itself excluded: -inf) and its row (itself included) through ONE softmax over H+W logits.
    """
    n, _, h, w = query.shape
    out_dtype = value.dtype
    compute = torch.promote_types(query.dtype, torch.float32)
    q, k, v = (t.to(compute) for t in (query, key, value))

    # Column branch: for each column w, energies between rows h (query) and i (key).
    energy_col = torch.matmul(q.permute(0, 3, 2, 1), k.permute(0, 3, 1, 2))  # N,W,H,H(i)
    rows = torch.arange(h, device=q.device)
    self_mask = rows.unsqueeze(1) == rows.unsqueeze(0)  # H×H, True on the diagonal
    energy_col = energy_col.masked_fill(self_mask, float("-inf"))
    energy_col = energy_col.permute(0, 2, 1, 3)  # N,H,W,H(i)
    # Row branch: for each row h, energies between columns w (query) and j (key).
    energy_row = torch.matmul(q.permute(0, 2, 3, 1), k.permute(0, 2, 1, 3))  # N,H,W,W(j)

    attention = torch.softmax(torch.cat([energy_col, energy_row], dim=3), dim=3)
    attn_col = attention[..., :h].permute(0, 2, 1, 3)  # N,W,H,H(i)
    attn_row = attention[..., h:]  # N,H,W,W(j)
    out_col = torch.matmul(attn_col, v.permute(0, 3, 2, 1))  # N,W,H,C
    out_row = torch.matmul(attn_row, v.permute(0, 2, 3, 1))  # N,H,W,C
    out = out_col.permute(0, 3, 2, 1) + out_row.permute(0, 3, 1, 2)
    return out.to(out_dtype).contiguous()


@torch.library.custom_op(OP_NAME, mutates_args=())
def criss_cross_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Criss-cross attention core; see :func:`criss_cross_reference`."""
    _check_shapes(query, key, value)
    return criss_cross_reference(query, key, value)


@criss_cross_attention.register_fake
def _criss_cross_attention_fake(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    _check_shapes(query, key, value)
    return torch.empty_like(value, memory_format=torch.contiguous_format)


def _check_shapes(query: Tensor, key: Tensor, value: Tensor) -> None:
    torch._check(query.dim() == 4 and key.dim() == 4 and value.dim() == 4,
                 lambda: "criss_cross_attention expects 4-D N×C×H×W tensors")
    torch._check(query.shape == key.shape, lambda: "query and key must have the same shape")
    for d in (0, 2, 3):
        torch._check(query.shape[d] == value.shape[d],
                     lambda: "query/key and value must share N, H and W")


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    # Training is rare and small here: differentiate the reference instead of a hand-written VJP.
    query, key, value = ctx.saved_tensors
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in (query, key, value)]
        out = criss_cross_reference(*leaves)
        return torch.autograd.grad(out, leaves, grad_output)


criss_cross_attention.register_autograd(_backward, setup_context=_setup_context)

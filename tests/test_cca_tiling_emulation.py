"""CPU emulation of the tiling scheme of plugins/cca_kernels.cu, checked against spec §2.4.

No GPU here, so this checks the kernels' algorithm (not their CUDA code): two passes per
branch over 32-pixel query/key tiles, online softmax statistics with the all-masked-tile skip,
the joint (row + column) normalisation, and the row-writes / column-adds output order.
The GPU tests (tests/gpu) check the real kernels.
"""
from __future__ import annotations

import numpy as np
import pytest

QUERY_TILE = KEY_TILE = 32  # kQueryTile / kKeyTile in cca_kernels.cu


def _lines(x, branch):
    """C x H x W -> lines x C x length: rows (branch 'row') or columns (branch 'column')."""
    return x.transpose(1, 0, 2) if branch == "row" else x.transpose(2, 0, 1)


def _energy_tile(q_line, k_line, q0, k0, exclude_self):
    length = q_line.shape[1]
    qs = q_line[:, q0:q0 + QUERY_TILE]
    ks = k_line[:, k0:k0 + KEY_TILE]
    e = np.full((QUERY_TILE, KEY_TILE), -np.inf, dtype=np.float32)
    e[:qs.shape[1], :ks.shape[1]] = qs.T @ ks
    if exclude_self:
        for i in range(QUERY_TILE):
            if q0 <= q0 + i < length and k0 <= q0 + i < k0 + KEY_TILE:
                e[i, q0 + i - k0] = -np.inf
    return e


def _stats(q, k, branch):
    ql, kl = _lines(q, branch), _lines(k, branch)
    lines, _, length = ql.shape
    stats = np.zeros((lines, length, 2), dtype=np.float32)
    for line in range(lines):
        for q0 in range(0, length, QUERY_TILE):
            run_max = np.full(QUERY_TILE, -np.inf, np.float32)
            run_sum = np.zeros(QUERY_TILE, np.float32)
            for k0 in range(0, length, KEY_TILE):
                e = _energy_tile(ql[line], kl[line], q0, k0, branch == "column")
                for r in range(QUERY_TILE):
                    tile_max = e[r].max()
                    if tile_max == -np.inf:
                        continue
                    new_max = max(run_max[r], tile_max)
                    run_sum[r] = run_sum[r] * np.exp(run_max[r] - new_max) + np.exp(e[r] - new_max).sum()
                    run_max[r] = new_max
            n_valid = min(QUERY_TILE, length - q0)
            stats[line, q0:q0 + n_valid, 0] = run_max[:n_valid]
            stats[line, q0:q0 + n_valid, 1] = run_sum[:n_valid]
    # back to H x W x 2
    return stats if branch == "row" else stats.transpose(1, 0, 2)


def emulate(q, k, v):
    """One image: q, k: Cq x H x W, v: C x H x W -> C x H x W, the kernels' way."""
    with np.errstate(invalid="raise"):  # a NaN from -inf - -inf would be a scheme bug
        row_stats, col_stats = _stats(q, k, "row"), _stats(q, k, "column")
        m = np.maximum(row_stats[..., 0], col_stats[..., 0])
        total = row_stats[..., 1] * np.exp(row_stats[..., 0] - m) + col_stats[..., 1] * np.exp(col_stats[..., 0] - m)
        out = np.empty_like(v)
        for branch in ("row", "column"):
            ql, kl, vl = _lines(q, branch), _lines(k, branch), _lines(v, branch)
            ml = m if branch == "row" else m.T
            tl = total if branch == "row" else total.T
            acc_lines = np.zeros_like(vl)
            for line in range(ql.shape[0]):
                length = ql.shape[2]
                for q0 in range(0, length, QUERY_TILE):
                    n_valid = min(QUERY_TILE, length - q0)
                    acc = np.zeros((v.shape[0], QUERY_TILE), np.float32)
                    qm = np.zeros(QUERY_TILE, np.float32)
                    qinv = np.zeros(QUERY_TILE, np.float32)
                    qm[:n_valid] = ml[line, q0:q0 + n_valid]
                    qinv[:n_valid] = 1.0 / tl[line, q0:q0 + n_valid]
                    for k0 in range(0, length, KEY_TILE):
                        e = _energy_tile(ql[line], kl[line], q0, k0, branch == "column")
                        p = np.where(e == -np.inf, 0.0, np.exp(np.where(e == -np.inf, 0, e) - qm[:, None]) * qinv[:, None])
                        vs = np.zeros((v.shape[0], KEY_TILE), np.float32)
                        keys = vl[line][:, k0:k0 + KEY_TILE]
                        vs[:, :keys.shape[1]] = keys
                        acc += vs @ p.T
                    acc_lines[line][:, q0:q0 + n_valid] = acc[:, :n_valid]
            part = acc_lines.transpose(1, 0, 2) if branch == "row" else acc_lines.transpose(1, 2, 0)
            out = part if branch == "row" else out + part  # row branch writes, column branch adds
        return out


def formula(q, k, v):
    """Spec §2.4 directly, float64."""
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    _, h, w = q.shape
    e_col = np.einsum("chw,ciw->hwi", q, k)
    e_col[np.arange(h), :, np.arange(h)] = -np.inf
    e_row = np.einsum("chw,chj->hwj", q, k)
    logits = np.concatenate([e_col, e_row], axis=2)
    a = np.exp(logits - logits.max(axis=2, keepdims=True))
    a /= a.sum(axis=2, keepdims=True)
    return np.einsum("hwi,ciw->chw", a[..., :h], v) + np.einsum("hwj,chj->chw", a[..., h:], v)


@pytest.mark.parametrize("cq,c,h,w", [(3, 4, 1, 1), (3, 4, 1, 37), (3, 4, 29, 1), (5, 6, 33, 70), (4, 3, 64, 32)])
def test_tiling_scheme_matches_formula(cq, c, h, w):
    rng = np.random.default_rng(h * 1000 + w)
    q, k = (rng.standard_normal((cq, h, w)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((c, h, w)).astype(np.float32)
    ref = formula(q, k, v)
    err = np.abs(emulate(q, k, v) - ref).max() / np.abs(ref).max()
    assert err <= 1e-5, f"relative error {err:.2e}"

"""Label maps at the image size from network-resolution logits, without full-size logits.

mmseg's rule: resize the C×h×w logits to the image's H×W (bilinear, the config's
``align_corners``), then argmax over C.  Done literally that is C×H×W floats (7 GB for a
150-class model on a 12 MP photo) and seconds of interpolation.  Here the result is the same
with a fraction of the work:

- Bilinear interpolation is a convex combination of the four source pixels around an output
  pixel (its *cell*).  Where class k leads at all four, k leads everywhere in between, so those
  output pixels (most of them) take the low-resolution label directly.
- Where the four disagree but the same two classes lead at every corner with every other class
  strictly below both, only those two channels are interpolated and compared.
- The remaining pixels (cells where three or more classes compete) interpolate every channel.

Interpolated values use the same float32 source coordinates and operation order as the
reference ``ccnet.processing.resize_logits``, so labels equal the reference's argmax (first
maximum wins) except where classes tie to within float32 rounding.  Memory stays at a few
H×W label-sized arrays plus bounded chunks.  numpy only.
"""
from __future__ import annotations

import functools
from typing import Iterator, Tuple

import numpy as np

from .labels import label_dtype

# Pixel × candidate-class values interpolated per chunk on the boundary (bounds temporaries).
WORK_CHUNK = 1 << 21
# Floats gathered per chunk when ranking classes at the cell corners.
RANK_CHUNK_VALUES = 1 << 22


@functools.lru_cache(maxsize=64)
def axis_table(in_size: int, out_size: int, align_corners: bool):
    """Source indices ``i0``, ``i1`` and weight ``lam`` of torch's bilinear interpolation along
    one axis (read-only arrays, cached: a video reuses them every frame).

    Coordinates are computed in float32 as torch's CPU kernel does, so results match
    F.interpolate to float32 rounding rather than to the float64 ideal.
    """
    dst = np.arange(out_size, dtype=np.float32)
    if align_corners:
        scale = np.float32((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
        src = dst * scale
    else:
        scale = np.float32(in_size / out_size)
        src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0.astype(np.float32)
    for array in (i0, i1, lam):
        array.flags.writeable = False
    return i0, i1, lam


def first_argmax(logits: np.ndarray) -> np.ndarray:
    """argmax over the first axis (first maximum wins, as ``np.argmax``) by a running
    comparison, in the label dtype: no C×h×w temporary."""
    labels = np.zeros(logits.shape[1:], label_dtype(logits.shape[0]))
    best = logits[0].copy()
    better = np.empty(logits.shape[1:], dtype=bool)
    for c in range(1, logits.shape[0]):
        np.greater(logits[c], best, out=better)
        np.copyto(best, logits[c], where=better)
        labels[better] = c
    return labels


def _sentinel(dtype: np.dtype):
    # uint8 maps hold at most 255 classes (0..254), int32 maps are never negative.
    return np.iinfo(dtype).max if dtype == np.uint8 else -1


def _cell_codes(low: np.ndarray, sentinel) -> np.ndarray:
    """Per low-resolution pixel (i, j): its label when the cell (rows i, i+1 and columns j, j+1,
    clamped at the last row/column) agrees on it, else ``sentinel``."""
    agree = np.ones(low.shape, dtype=bool)
    right = low[:, 1:] == low[:, :-1]
    agree[:, :-1] &= right
    agree[:-1, :-1] &= right[1:]
    down = low[1:] == low[:-1]
    agree[:-1] &= down
    agree[:-1, :-1] &= down[:, 1:]
    return np.where(agree, low, low.dtype.type(sentinel))


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, max(1, size)):
        yield slice(start, min(start + size, n))


def _corners(cells: np.ndarray, h: int, w: int) -> Tuple[np.ndarray, ...]:
    """Flat indices of the four corners of each cell (given by its top-left flat index)."""
    ci, cj = np.divmod(cells, w)
    down = np.where(ci + 1 < h, w, 0)
    right = (cj + 1 < w).astype(cells.dtype)
    return cells, cells + right, cells + down, cells + down + right


def _leaders(values: np.ndarray):
    """For columns of ``values`` (C×n, modified): the two leading classes (lower index first)
    and whether every other class is strictly below both."""
    columns = np.arange(values.shape[1])
    first = values.argmax(0)
    values[first, columns] = -np.inf
    second = values.argmax(0)
    second_value = values[second, columns]
    values[second, columns] = -np.inf
    clear = values.max(0) < second_value if values.shape[0] > 2 else np.ones(columns.size, bool)
    return np.minimum(first, second), np.maximum(first, second), clear


def _candidates(flat_logits: np.ndarray, cells: np.ndarray, h: int, w: int) -> np.ndarray:
    """C×n mask of the classes that can win somewhere in each cell.

    Two tests on the four corners, both exact for a convex combination: when the same two
    classes lead at every corner with every other class strictly below both, only those two
    can win; otherwise a class whose highest corner value is below another class's lowest
    corner value cannot win.
    """
    num_classes = flat_logits.shape[0]
    corners = np.stack(_corners(cells, h, w))
    mask = np.empty((num_classes, cells.size), dtype=bool)
    for part in _chunks(cells.size, RANK_CHUNK_VALUES // (4 * num_classes)):
        values = flat_logits[:, corners[:, part]]
        n = values.shape[2]
        mask[:, part] = values.max(1) >= values.min(1).max(0)
        low, high, clear = (a.reshape(4, n) for a in _leaders(values.reshape(num_classes, -1)))
        two = np.flatnonzero((low == low[0]).all(0) & (high == high[0]).all(0) & clear.all(0))
        cols = part.start + two
        mask[:, cols] = False
        mask[low[0, two], cols] = True
        mask[high[0, two], cols] = True
    return mask


def _ranges(i0: np.ndarray, in_size: int):
    """For each source index: the first output index whose interpolation starts there, and
    how many do (``i0`` is non-decreasing)."""
    sources = np.arange(in_size)
    start = np.searchsorted(i0, sources, side="left")
    return start, np.searchsorted(i0, sources, side="right") - start


class _Grid:
    """The interpolation tables of both axes and, per source row/column, the block of output
    rows/columns whose cell starts there."""

    def __init__(self, h: int, w: int, out_h: int, out_w: int, align_corners: bool):
        self.h, self.w = h, w
        self.y = axis_table(h, out_h, align_corners)
        self.x = axis_table(w, out_w, align_corners)
        self.row_start, self.row_count = _ranges(self.y[0], h)
        self.col_start, self.col_count = _ranges(self.x[0], w)

    def pixels_per_cell(self, cells: np.ndarray) -> np.ndarray:
        ci, cj = np.divmod(cells, self.w)
        return self.row_count[ci] * self.col_count[cj]


class _Pixels:
    """The output pixels of some cells, grouped by cell, with their four source indices (flat,
    low resolution) and interpolation weights."""

    def __init__(self, cells: np.ndarray, grid: _Grid):
        (y0, y1, ly), (x0, x1, lx), w = grid.y, grid.x, grid.w
        ci, cj = np.divmod(cells, w)
        width = grid.col_count[cj]
        counts = grid.row_count[ci] * width
        self.owner = np.repeat(np.arange(cells.size), counts)
        k = np.arange(self.owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
        width = width[self.owner]
        self.rows = grid.row_start[ci][self.owner] + k // width
        self.cols = grid.col_start[cj][self.owner] + k % width
        top, bottom = y0[self.rows] * w, y1[self.rows] * w
        left, right = x0[self.cols], x1[self.cols]
        self.index = (top + left, top + right, bottom + left, bottom + right)
        self.lx, self.ly = lx[self.cols], ly[self.rows]
        self.mx, self.my = 1 - self.lx, 1 - self.ly

    def value(self, flat: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Interpolated values at these pixels of the channels beginning at ``start`` (one
        flat offset per pixel) of ``flat`` logits, in the reference's operation order."""
        v00, v01, v10, v11 = (np.take(flat, start + i) for i in self.index)
        top = v00 * self.mx + v01 * self.lx
        bottom = v10 * self.mx + v11 * self.lx
        return top * self.my + bottom * self.ly


def _cell_batches(cells: np.ndarray, counts: np.ndarray, grid: _Grid) -> Iterator[np.ndarray]:
    """Indices into ``cells`` in order of candidate count (slices stay homogeneous: per-pixel
    work is the slice's largest count), sliced at about WORK_CHUNK pixel × candidate values."""
    order = np.argsort(counts, kind="stable")
    work = np.cumsum(grid.pixels_per_cell(cells[order]) * counts[order])
    stops = np.searchsorted(work, np.arange(WORK_CHUNK, int(work[-1]), WORK_CHUNK), "right")
    bounds = np.unique(np.concatenate([[0], stops, [order.size]]))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        yield order[start:stop]


def _candidate_table(mask: np.ndarray) -> np.ndarray:
    """n×K class indices per cell from a C×n mask, ascending; short rows repeat their first
    class (recomputing it never beats the running maximum)."""
    cell, classes = np.nonzero(mask.T)
    counts = np.bincount(cell, minlength=mask.shape[1])
    starts = np.cumsum(counts) - counts
    table = np.repeat(classes[starts][:, None], int(counts.max()), axis=1)
    table[cell, np.arange(cell.size) - np.repeat(starts, counts)] = classes
    return table


def _candidate_labels(flat_logits: np.ndarray, pixels: _Pixels, table: np.ndarray,
                      dtype) -> np.ndarray:
    """Labels from the candidate classes interpolated in ascending order (running maximum:
    the first maximum wins, as np.argmax)."""
    plane = flat_logits.shape[1]
    flat = flat_logits.reshape(-1)
    classes = table[:, 0][pixels.owner]
    labels = classes.astype(dtype)
    best = pixels.value(flat, classes * plane)
    for k in range(1, table.shape[1]):
        classes = table[:, k][pixels.owner]
        value = pixels.value(flat, classes * plane)
        better = value > best
        np.copyto(best, value, where=better)
        np.copyto(labels, classes, where=better, casting="unsafe")
    return labels


def resize_argmax(logits: np.ndarray, size: Tuple[int, int], align_corners: bool) -> np.ndarray:
    """argmax over C of ``logits`` (C×h×w) bilinearly resized to ``size`` = (H, W) — mmseg's
    resize-back — as an H×W label map in ``label_dtype(C)``, never forming C×H×W floats."""
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    num_classes, h, w = logits.shape
    out_h, out_w = int(size[0]), int(size[1])
    low = first_argmax(logits)
    if (h, w) == (out_h, out_w):
        return low
    sentinel = _sentinel(low.dtype)
    codes = _cell_codes(low, sentinel)
    grid = _Grid(h, w, out_h, out_w, bool(align_corners))
    labels = np.take(np.take(codes, grid.y[0], axis=0), grid.x[0], axis=1)
    disagree = np.flatnonzero(codes.reshape(-1) == sentinel)
    if disagree.size == 0:
        return labels
    flat_logits = logits.reshape(num_classes, h * w)
    mask = _candidates(flat_logits, disagree, h, w)
    for batch in _cell_batches(disagree, mask.sum(0), grid):
        pixels = _Pixels(disagree[batch], grid)
        labels[pixels.rows, pixels.cols] = _candidate_labels(
            flat_logits, pixels, _candidate_table(mask[:, batch]), labels.dtype)
    return labels

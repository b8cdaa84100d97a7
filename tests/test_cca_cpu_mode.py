"""The CUDA CPU mode itself (plugins/cuda_cpu), through its self-test driver
(plugins/tests/cuda_cpu_selftest.cpp): real barriers and warp exchanges, the GPU's launch
limits, per-block shared memory, traps on out-of-range shared indices and divergent shuffles,
and __float2half_rn rounding exactly like the GPU (checked against numpy's IEEE conversion).
"""
from __future__ import annotations

import os
import signal
import subprocess

import numpy as np
import pytest

from plugin_helpers import CPU_MODE_SELFTESTS, build_targets


@pytest.fixture(scope="module")
def selftest():
    return os.path.join(build_targets("ccnet_cuda_cpu_selftest"), "ccnet_cuda_cpu_selftest")


def _run(selftest, *args):
    return subprocess.run([selftest, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("check", CPU_MODE_SELFTESTS)
def test_selftest(selftest, check):
    proc = _run(selftest, check)
    assert proc.returncode == 0, proc.stderr
    assert f"{check}: ok" in proc.stderr


@pytest.mark.parametrize("check, message", [
    ("shared-out-of-bounds", r"__shared__ array index 32 outside [0, 32) (block 0,0,0, thread 32,0,0)"),
    ("divergent-shuffle", "reached by 16 of 32 lanes"),
])
def test_kernel_bugs_stop_the_program_with_the_culprit(selftest, check, message):
    proc = _run(selftest, check)
    assert proc.returncode == -signal.SIGABRT, proc.stderr
    assert message in proc.stderr


def _half_probe_values() -> np.ndarray:
    """Every float32 that decides a rounding: each half value, its float32 neighbours, the exact
    midpoints between neighbouring halves and their neighbours, overflow and underflow edges,
    signed zeros, infinities, NaN; plus random bit patterns."""
    halves = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)  # +0 .. largest finite
    with np.errstate(over="ignore"):  # the largest finite half's successor is infinity
        nxt = np.nextafter(halves.astype(np.float16), np.float16(np.inf)).astype(np.float32)
    midpoints = ((halves.astype(np.float64) + nxt.astype(np.float64)) / 2).astype(np.float32)
    values = [halves, midpoints, np.nextafter(midpoints, np.float32(np.inf)),
              np.nextafter(midpoints, np.float32(-np.inf)), np.nextafter(halves, np.float32(np.inf)),
              np.nextafter(halves, np.float32(-np.inf)),
              np.array([65504, 65519.996, 65520, 65536, 1e30, 2.0**-25, 2.0**-26, 1.5 * 2.0**-25, 2.0**-149,
                        np.inf, np.nan, 0.0], dtype=np.float32),
              np.random.default_rng(0).integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)]
    positive = np.concatenate(values).astype(np.float32)
    return np.concatenate([positive, -positive])


def test_float_to_half_rounds_like_the_gpu(selftest, tmp_path):
    values = _half_probe_values()
    values.tofile(tmp_path / "in.f32")
    proc = _run(selftest, "half-convert", str(tmp_path / "in.f32"), str(tmp_path / "out.u16"))
    assert proc.returncode == 0, proc.stderr
    got = np.fromfile(tmp_path / "out.u16", dtype=np.uint16)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).view(np.uint16)  # IEEE round to nearest, ties to even
    nan = np.isnan(values)
    # CUDA turns every NaN into its canonical NaN 0x7FFF.
    assert (got[nan] == 0x7FFF).all()
    mismatch = np.flatnonzero(got[~nan] != expected[~nan])
    assert mismatch.size == 0, (
        f"{mismatch.size} conversions differ, first: {values[~nan][mismatch[0]]!r} -> "
        f"0x{got[~nan][mismatch[0]]:04x}, expected 0x{expected[~nan][mismatch[0]]:04x}")

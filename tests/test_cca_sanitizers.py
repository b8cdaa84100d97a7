"""Memory safety of the CPU build: libccnet_cca_cpu.so and the test drivers built with
AddressSanitizer + UndefinedBehaviorSanitizer (<build>/sanitize), running the shape sweep
through the plugin's enqueue, the host checks and the fuzzers. Global buffers are exact heap
blocks (any access past them is reported); __shared__ arrays are bounds-checked by the CUDA CPU
mode itself; any report aborts the process and fails the test.
"""
from __future__ import annotations

import os

import pytest

from plugin_helpers import (CPU_MODE_SELFTESTS, SWEEP_SHAPES, TOLERANCE, build_sanitized, enqueue_through_driver,
                            make_inputs, plugins, reference_float64, relative_error, run_driver, sanitizer_env,
                            shape_id)

HOST_CHECKS = ["create", "formats", "shapes", "workspace", "workspace-guard", "serialize-roundtrip", "clone",
               "invalid-fields"]


@pytest.fixture(scope="module")
def sanitized():
    folder = build_sanitized("ccnet_cca_cpu", "ccnet_plugin_host_driver_cpu", "ccnet_plugin_fuzz_cpu",
                             "ccnet_cuda_cpu_selftest")
    return {"library": os.path.join(folder, plugins.CPU_LIBRARY_NAME),
            "driver": os.path.join(folder, "ccnet_plugin_host_driver_cpu"),
            "fuzz": os.path.join(folder, "ccnet_plugin_fuzz_cpu"),
            "selftest": os.path.join(folder, "ccnet_cuda_cpu_selftest")}


def _assert_clean(proc):
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr[-6000:]
    assert proc.returncode == 0, proc.stderr[-6000:]


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("shape", SWEEP_SHAPES, ids=shape_id)
def test_sweep_is_memory_safe(sanitized, tmp_path, shape, dtype):
    q, k, v = make_inputs(shape, dtype, "peaked", seed=sum(shape))
    out = enqueue_through_driver(sanitized["driver"], sanitized["library"], str(tmp_path), shape, dtype, q, k, v,
                                 env=sanitizer_env())
    error = relative_error(out, reference_float64(q, k, v))
    assert error <= TOLERANCE[dtype], f"{shape_id(shape)} {dtype}: relative error {error:.3e}"


@pytest.mark.parametrize("check", HOST_CHECKS)
def test_host_checks_are_memory_safe(sanitized, check):
    _assert_clean(run_driver(sanitized["driver"], sanitized["library"], check, env=sanitizer_env()))


@pytest.mark.parametrize("fuzzer", ["fields", "forward"])
def test_fuzzers_are_memory_safe(sanitized, fuzzer):
    _assert_clean(run_driver(sanitized["fuzz"], sanitized["library"], fuzzer, 4, 150, env=sanitizer_env()))


@pytest.mark.parametrize("check", CPU_MODE_SELFTESTS)
def test_cpu_mode_is_memory_safe(sanitized, check):
    import subprocess

    proc = subprocess.run([sanitized["selftest"], check], capture_output=True, text=True, timeout=120,
                          env=sanitizer_env())
    _assert_clean(proc)

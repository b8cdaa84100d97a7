"""Seeded, bounded fuzzing of the plugin libraries' inputs (plugins/tests/fuzz_driver.cpp):
createPlugin with random PluginFieldCollections (wrong types, lengths, missing and extra fields,
lengths far beyond their buffers, null data) and ccnet_cca_forward with random arguments. Each
case must give the right result, or an error status / logged reason, and never crash. A fast
slice runs by default; a larger one under -m slow. The AddressSanitizer run is in
test_cca_sanitizers.py.
"""
from __future__ import annotations

import os

import pytest

from plugin_helpers import build_targets, plugins, run_driver

FAST_CASES = 300
SLOW_CASES = 5000


def _fuzz(fuzzer: str, seed: int, cases: int, cuda: bool = False):
    if cuda:
        folder = build_targets("ccnet_plugins", "ccnet_plugin_fuzz", cuda=True)
        driver, library = os.path.join(folder, "ccnet_plugin_fuzz"), os.path.join(folder, plugins.LIBRARY_NAME)
    else:
        folder = build_targets("ccnet_cca_cpu", "ccnet_plugin_fuzz_cpu")
        driver, library = os.path.join(folder, "ccnet_plugin_fuzz_cpu"), os.path.join(folder, plugins.CPU_LIBRARY_NAME)
    proc = run_driver(driver, library, fuzzer, seed, cases, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert f"{fuzzer}: {cases} cases" in proc.stderr and " 0 failed" in proc.stderr
    return proc.stderr


@pytest.mark.parametrize("fuzzer", ["fields", "forward"])
def test_fuzz_cpu_library(fuzzer):
    _fuzz(fuzzer, seed=2, cases=FAST_CASES)


def test_fuzz_fields_of_cuda_library():
    _fuzz("fields", seed=3, cases=FAST_CASES, cuda=True)


@pytest.mark.slow
@pytest.mark.parametrize("fuzzer", ["fields", "forward"])
def test_fuzz_cpu_library_large(fuzzer):
    for seed in (101, 102):
        _fuzz(fuzzer, seed=seed, cases=SLOW_CASES // 2)

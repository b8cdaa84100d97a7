"""Host-side tests of the plugin libraries (no GPU, no TensorRT runtime needed).

Both builds of the same sources are checked the same way: libccnet_plugins.so (CUDA; needs
nvcc to build, skips without it) and libccnet_cca_cpu.so (the CUDA CPU mode; needs only a C++
compiler). The C++ host driver (plugins/tests/host_driver.cpp) is built from one source for each.
Nothing here exports ONNX, so the device script can run this file on a machine whose exporter is
broken (tests/test_cca_contract_export.py holds the export-side contract check).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys

import pytest

from plugin_helpers import FLAVOURS, REPO, build_targets, plugins, plugin_build, run_driver

TRT_FIELD_TYPE_KCHAR = 6  # nvinfer1::PluginFieldType::kCHAR
CONTRACT_TYPES = {"string": TRT_FIELD_TYPE_KCHAR}
ENTRY_POINTS = {"getCreators", "setLoggerFinder", "ccnet_cca_forward", "ccnet_cca_workspace_size",
                "ccnet_cca_check_sizes"}
@pytest.fixture(scope="module", params=sorted(FLAVOURS))
def library(request):
    return plugin_build(request.param)


def _driver(build, check, *args):
    lib, driver = build
    return run_driver(driver, lib, check, *args, timeout=120)


@pytest.mark.parametrize("check", [
    "create", "output-types", "formats", "shapes", "workspace", "workspace-guard", "serialize-roundtrip", "clone",
])
def test_driver_check(library, check):
    proc = _driver(library, check)
    assert proc.returncode == 0, f"driver check '{check}' failed:\n{proc.stderr}"
    assert f"{check}: ok" in proc.stderr


def test_invalid_fields_fail_with_logged_reason(library):
    proc = _driver(library, "invalid-fields")
    assert proc.returncode == 0, proc.stderr
    # Reasons went through the ILogger handed over with setLoggerFinder.
    assert "[logged] [ccnet_plugins] cannot create ccnet::CrissCrossAttention" in proc.stderr
    assert "field 'plugin_version' is missing" in proc.stderr
    assert "has type kINT32, expected kCHAR" in proc.stderr
    assert "field 'plugin_version' is given twice" in proc.stderr


def test_invalid_fields_without_logger_go_to_stderr(library):
    proc = _driver(library, "invalid-fields-stderr")
    assert proc.returncode == 0, proc.stderr
    assert "ERROR: [ccnet_plugins] cannot create ccnet::CrissCrossAttention" in proc.stderr
    assert "[logged]" not in proc.stderr


def test_workspace_guard_names_the_kernel_status(library):
    """enqueue reports the kernels' status by its name from cca_op.json."""
    proc = _driver(library, "workspace-guard")
    assert proc.returncode == 0, proc.stderr
    assert "CrissCrossAttention enqueue: ccnet_cca_forward failed: workspace too small" in proc.stderr


def test_creator_matches_contract_json(library):
    """Name, version, namespace, field names and types all come from plugins/cca_op.json."""
    proc = _driver(library, "describe")
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout)
    spec = plugins.contract()
    assert described["nb_creators"] == 1
    assert described["interface_kind"] == "PLUGIN CREATOR_V3ONE"
    assert described["name"] == spec["plugin_name"] == spec["op_type"]
    assert described["version"] == spec["plugin_version"]
    assert described["namespace"] == spec["plugin_namespace"] == spec["domain"]
    expected = [{"name": f["name"], "type": CONTRACT_TYPES[f["type"]]} for f in spec["fields"]]
    assert described["fields"] == expected


def test_contract_values_match_plugin_identity():
    """The fixed-value fields the export writes must be the plugin's own version/namespace."""
    spec = plugins.contract()
    values = {f["name"]: f["value"] for f in spec["fields"]}
    assert values["plugin_version"] == spec["plugin_version"]
    assert values["plugin_namespace"] == spec["plugin_namespace"]


def test_kernel_codes_come_from_the_contract():
    """Python and the generated C header read the same codes (cca_kernel_codes.h)."""
    spec = plugins.contract()
    assert plugins.STATUS_NAMES == {s["code"]: s["name"] for s in spec["kernel_statuses"]}
    assert (plugins.DTYPE_FP32, plugins.DTYPE_FP16) == tuple(
        next(d["code"] for d in spec["kernel_dtypes"] if d["name"] == name) for name in ("fp32", "fp16"))
    folder = build_targets("ccnet_cca_cpu")
    with open(os.path.join(folder, "generated", "cca_kernel_codes.h"), encoding="utf-8") as f:
        header = f.read()
    for code, name in plugins.STATUS_NAMES.items():
        assert f"CCNET_CCA_{name.upper().replace(' ', '_')} = {code}," in header
        assert f'case {code}: return "{name}";' in header


def test_ctypes_load_and_argument_checks(library):
    lib = plugins.load_library(library[0])
    for symbol in ENTRY_POINTS:
        assert hasattr(lib, symbol), f"{symbol} not exported"
    # Per pixel 2 float2 statistics and a float per key of its row and column, independent of
    # channels; 0 for sizes that cannot run.
    assert lib.ccnet_cca_workspace_size(2, 97, 97) == 2 * 97 * 97 * (16 + 4 * (97 + 97))
    assert lib.ccnet_cca_workspace_size(0, 4, 4) == 0
    # Argument checks run before any launch, so they work without a GPU.
    status = lib.ccnet_cca_forward(None, None, None, None, 1, 8, 8, 4, 4, plugins.DTYPE_FP32, None, 0, None)
    assert plugins.STATUS_NAMES[status] == "bad argument"
    fake = ctypes.c_void_p(256)
    status = lib.ccnet_cca_forward(fake, fake, fake, fake, 1, 8, 8, 4, 4, plugins.DTYPE_FP32, fake, 16, None)
    assert plugins.STATUS_NAMES[status] == "workspace too small"
    status = lib.ccnet_cca_forward(fake, fake, fake, fake, 1, 8, 8, 4, 4, 7, fake, 4096, None)
    assert plugins.STATUS_NAMES[status] == "bad argument"


def test_libraries_link_no_tensorrt():
    if shutil.which("ldd") is None:
        pytest.skip("ldd not available")
    cuda_lib = plugin_build("cuda")[0]
    out = subprocess.run(["ldd", cuda_lib], capture_output=True, text=True).stdout
    assert "libnvinfer" not in out
    assert "libcudart" in out


def _exported(path):
    """Every symbol the library defines for the dynamic linker (functions, data, weak)."""
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if len(line.split()) == 3}


def test_exported_symbols_are_only_the_api(library):
    if shutil.which("nm") is None:
        pytest.skip("nm not available")
    exported = _exported(library[0])
    assert ENTRY_POINTS == exported
    assert not any(name.startswith("_ZN5ccnet") for name in exported), "C++ internals leak from the .so"
    assert not any(name.startswith("cuda") for name in exported), "the CPU mode's runtime leaks from the .so"


def test_both_builds_export_the_same_entry_points():
    if shutil.which("nm") is None:
        pytest.skip("nm not available")
    assert _exported(plugin_build("cuda")[0]) == _exported(plugin_build("cpu")[0])


def test_loader_missing_library_message(monkeypatch, tmp_path):
    monkeypatch.setenv(plugins.ENV_VAR, str(tmp_path / "nope.so"))
    with pytest.raises(plugins.PluginLibraryError) as err:
        plugins.library_path()
    message = str(err.value)
    assert "\n" not in message and "nope.so" in message and "cmake -S . -B build" in message


def test_loader_reports_build_command_when_nothing_built(monkeypatch):
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    monkeypatch.setattr(plugins, "_candidates", lambda name=plugins.LIBRARY_NAME: [f"/nonexistent/{name}"])
    with pytest.raises(plugins.PluginLibraryError, match=r"cmake -S \. -B build && cmake --build build -j2"):
        plugins.library_path()
    with pytest.raises(plugins.PluginLibraryError, match=plugins.CPU_LIBRARY_NAME):
        plugins.library_path(plugins.CPU_LIBRARY_NAME)


def test_loader_rejects_non_library(tmp_path):
    bogus = tmp_path / "libccnet_plugins.so"
    bogus.write_text("not an ELF file")
    with pytest.raises(plugins.PluginLibraryError, match="cannot load"):
        plugins.load_library(str(bogus))


def test_loader_names_the_missing_dependency(tmp_path):
    """When a dependency is missing, the message names the one the loader could not find and the
    CUDA version the library was built with, not a guessed library name."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler to build the probe library")
    compiler = shutil.which("cc") or shutil.which("gcc")
    (tmp_path / "missing.c").write_text("int ccnet_missing_dependency(void) { return 1; }\n")
    (tmp_path / "probe.c").write_text("int ccnet_missing_dependency(void);\n"
                                      "int ccnet_probe(void) { return ccnet_missing_dependency(); }\n")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(tmp_path / "libcudart.so.77"), str(tmp_path / "missing.c")],
                   check=True)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(tmp_path / "libccnet_plugins.so"), str(tmp_path / "probe.c"),
                    str(tmp_path / "libcudart.so.77")], check=True)
    (tmp_path / "libcudart.so.77").unlink()
    (tmp_path / "ccnet_build_info.json").write_text(json.dumps({"cuda_toolkit_version": "77.1.0"}))
    with pytest.raises(plugins.PluginLibraryError) as err:
        plugins.load_library(str(tmp_path / "libccnet_plugins.so"))
    message = str(err.value)
    assert "\n" not in message
    assert "needs libcudart.so.77 (built with CUDA 77.1.0)" in message and "LD_LIBRARY_PATH" in message


def test_plugins_package_imports_without_torch_or_tensorrt():
    code = ("import sys, plugins; plugins.contract(); "
            "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr

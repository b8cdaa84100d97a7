"""Host-side tests of libccnet_plugins.so (no GPU, no TensorRT runtime needed).

The library and the C++ driver (plugins/tests/host_driver.cpp) are built with CMake into
build/ when missing or stale. A fresh configure here uses one CUDA architecture
(CCNET_TEST_CUDA_ARCH, default 75) to keep CI fast; an existing build/ keeps its settings.
Skips when nvcc is not installed. Assumes nobody builds into build/ concurrently.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "build")
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import plugins  # noqa: E402  (after the sys.path fix above)

LIB = os.path.join(BUILD, plugins.LIBRARY_NAME)
DRIVER = os.path.join(BUILD, "ccnet_plugin_host_driver")
TRT_FIELD_TYPE_KCHAR = 6  # nvinfer1::PluginFieldType::kCHAR
CONTRACT_TYPES = {"string": TRT_FIELD_TYPE_KCHAR}


def _find_nvcc() -> str | None:
    return shutil.which("nvcc") or next(
        (p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)


@pytest.fixture(scope="session")
def built():
    """Configure (if needed) and build the library + driver; returns (library, driver).

    With CCNET_PLUGIN_LIB and CCNET_PLUGIN_DRIVER both set (tests/gpu/run_on_device.sh),
    those prebuilt files are tested instead.
    """
    prebuilt = os.environ.get(plugins.ENV_VAR), os.environ.get("CCNET_PLUGIN_DRIVER")
    if all(prebuilt):
        return prebuilt
    nvcc = _find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA toolkit is needed to build libccnet_plugins.so")
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found: needed to build libccnet_plugins.so")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(nvcc) + os.pathsep + env.get("PATH", "")
    if not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")):
        arch = os.environ.get("CCNET_TEST_CUDA_ARCH", "75")
        _run(["cmake", "-S", REPO, "-B", BUILD, f"-DCMAKE_CUDA_ARCHITECTURES={arch}",
              f"-DCMAKE_CUDA_COMPILER={nvcc}"], env)
    _run(["cmake", "--build", BUILD, "-j2", "--target", "ccnet_plugins", "ccnet_plugin_host_driver"], env)
    return LIB, DRIVER


def _run(cmd, env):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def _driver(built, check, *args):
    lib, driver = built
    return subprocess.run([driver, lib, check, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("check", [
    "create", "output-types", "formats", "shapes", "workspace", "serialize-roundtrip", "clone",
])
def test_driver_check(built, check):
    proc = _driver(built, check)
    assert proc.returncode == 0, f"driver check '{check}' failed:\n{proc.stderr}"
    assert f"{check}: ok" in proc.stderr


def test_invalid_fields_fail_with_logged_reason(built):
    proc = _driver(built, "invalid-fields")
    assert proc.returncode == 0, proc.stderr
    # Reasons went through the ILogger handed over with setLoggerFinder.
    assert "[logged] [ccnet_plugins] cannot create ccnet::CrissCrossAttention" in proc.stderr
    assert "field 'plugin_version' is missing" in proc.stderr
    assert "has type kINT32, expected kCHAR" in proc.stderr


def test_invalid_fields_without_logger_go_to_stderr(built):
    proc = _driver(built, "invalid-fields-stderr")
    assert proc.returncode == 0, proc.stderr
    assert "ERROR: [ccnet_plugins] cannot create ccnet::CrissCrossAttention" in proc.stderr
    assert "[logged]" not in proc.stderr


def test_creator_matches_contract_json(built):
    """Name, version, namespace, field names and types all come from plugins/cca_op.json."""
    proc = _driver(built, "describe")
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


def test_ctypes_load_and_symbols(built):
    lib = plugins.load_library(built[0])
    for symbol in ("getCreators", "setLoggerFinder", "ccnet_cca_forward", "ccnet_cca_workspace_size"):
        assert hasattr(lib, symbol), f"{symbol} not exported"
    # 2 float2 statistics per pixel, independent of channels; 0 for invalid sizes.
    assert lib.ccnet_cca_workspace_size(2, 97, 97) == 2 * 97 * 97 * 16
    assert lib.ccnet_cca_workspace_size(0, 4, 4) == 0
    # Argument checks run before any CUDA call, so they work without a GPU.
    status = lib.ccnet_cca_forward(None, None, None, None, 1, 8, 8, 4, 4, plugins.DTYPE_FP32, None, 0, None)
    assert plugins.STATUS_NAMES[status] == "bad argument"
    fake = ctypes.c_void_p(256)
    status = lib.ccnet_cca_forward(fake, fake, fake, fake, 1, 8, 8, 4, 4, plugins.DTYPE_FP32, fake, 16, None)
    assert plugins.STATUS_NAMES[status] == "workspace too small"
    status = lib.ccnet_cca_forward(fake, fake, fake, fake, 1, 8, 8, 4, 4, 7, fake, 4096, None)
    assert plugins.STATUS_NAMES[status] == "bad argument"


def test_library_links_no_tensorrt(built):
    if shutil.which("ldd") is None:
        pytest.skip("ldd not available")
    out = subprocess.run(["ldd", built[0]], capture_output=True, text=True).stdout
    assert "libnvinfer" not in out
    assert "libcudart" in out


def test_exported_symbols_are_only_the_api(built):
    if shutil.which("nm") is None:
        pytest.skip("nm not available")
    out = subprocess.run(["nm", "-D", "--defined-only", built[0]], capture_output=True, text=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.split()[1:2] == ["T"]}
    assert {"getCreators", "setLoggerFinder", "ccnet_cca_forward", "ccnet_cca_workspace_size"} <= exported
    assert not any(name.startswith("_ZN5ccnet") for name in exported), "C++ internals leak from the .so"


def test_loader_missing_library_message(monkeypatch, tmp_path):
    monkeypatch.setenv(plugins.ENV_VAR, str(tmp_path / "nope.so"))
    with pytest.raises(plugins.PluginLibraryError) as err:
        plugins.library_path()
    message = str(err.value)
    assert "\n" not in message and "nope.so" in message and "cmake -S . -B build" in message


def test_loader_reports_build_command_when_nothing_built(monkeypatch):
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    monkeypatch.setattr(plugins, "_candidates", lambda: ["/nonexistent/libccnet_plugins.so"])
    with pytest.raises(plugins.PluginLibraryError, match=r"cmake -S \. -B build && cmake --build build -j2"):
        plugins.library_path()


def test_loader_rejects_non_library(monkeypatch, tmp_path):
    bogus = tmp_path / "libccnet_plugins.so"
    bogus.write_text("not an ELF file")
    with pytest.raises(plugins.PluginLibraryError, match="cannot load"):
        plugins.load_library(str(bogus))


def test_plugins_package_imports_without_torch_or_tensorrt():
    code = ("import sys; sys.path.insert(0, %r); import plugins; plugins.contract(); "
            "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules" % REPO)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_exported_node_attributes_are_the_creator_fields(built, tiny_onnx):
    """Both sides of the op contract agree for real: every CrissCrossAttention node that
    ccnet-export wrote carries exactly the creator's fields (names, string type, values), and
    its domain is the plugin namespace the ONNX parser looks up."""
    import onnx

    from export import cca_nodes

    described = json.loads(_driver(built, "describe").stdout)
    creator_fields = {f["name"] for f in described["fields"]}
    nodes = cca_nodes(onnx.load(tiny_onnx))
    assert nodes
    for node in nodes:
        assert node.op_type == described["name"] and node.domain == described["namespace"]
        assert {a.name for a in node.attribute} == creator_fields
        for attr in node.attribute:
            assert attr.type == onnx.AttributeProto.STRING
        values = {a.name: a.s.decode() for a in node.attribute}
        assert values == {"plugin_version": described["version"],
                          "plugin_namespace": described["namespace"]}

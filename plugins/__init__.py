"""Locate and load the criss-cross attention plugin libraries.

* ``libccnet_plugins.so``: the TensorRT plugin with its CUDA kernels (links the CUDA runtime).
* ``libccnet_cca_cpu.so``: the same plugin and kernels built for the CUDA CPU mode (host
  memory, no GPU); same C entry points.

Imports neither torch nor tensorrt: usable on a device that has only Python and the library.
Search order: $CCNET_PLUGIN_LIB (for libccnet_plugins.so), <repo>/build/, next to this package.
Dtype and status codes of the kernels' C interface come from cca_op.json, as in the C++ build.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import re

LIBRARY_NAME = "libccnet_plugins.so"
CPU_LIBRARY_NAME = "libccnet_cca_cpu.so"
BUILD_HINT = "cmake -S . -B build && cmake --build build -j2"
ENV_VAR = "CCNET_PLUGIN_LIB"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(_PACKAGE_DIR)
_CONTRACT_PATH = os.path.join(_PACKAGE_DIR, "cca_op.json")
_loaded: dict[str, ctypes.CDLL] = {}


class PluginLibraryError(RuntimeError):
    """The plugin library is missing or unusable; the message says what to do."""


@functools.lru_cache(maxsize=None)
def contract() -> dict:
    """The parsed op contract plugins/cca_op.json (plugin name, version, namespace, fields, codes)."""
    with open(_CONTRACT_PATH, encoding="utf-8") as f:
        return json.load(f)


DTYPE_CODES = {d["name"]: d["code"] for d in contract()["kernel_dtypes"]}
DTYPE_FP32 = DTYPE_CODES["fp32"]
DTYPE_FP16 = DTYPE_CODES["fp16"]
STATUS_NAMES = {s["code"]: s["name"] for s in contract()["kernel_statuses"]}


def _candidates(name: str) -> list[str]:
    return [os.path.join(_REPO_DIR, "build", name), os.path.join(_PACKAGE_DIR, name)]


def library_path(name: str = LIBRARY_NAME) -> str:
    """Path of a plugin library (default: the CUDA one); raises PluginLibraryError (one line,
    with the fix) if absent. $CCNET_PLUGIN_LIB overrides the CUDA library's location."""
    override = os.environ.get(ENV_VAR) if name == LIBRARY_NAME else None
    if override:
        if not os.path.isfile(override):
            raise PluginLibraryError(
                f"{ENV_VAR}={override} is not a file; point it at {LIBRARY_NAME} or unset it "
                f"to use the build folder ({BUILD_HINT})")
        return os.path.abspath(override)
    for path in _candidates(name):
        if os.path.isfile(path):
            return path
    raise PluginLibraryError(
        f"{name} not found (looked in {', '.join(_candidates(name))}); build it in {_REPO_DIR} "
        f"with `{BUILD_HINT}`" + (f" or set {ENV_VAR}=/path/to/{name}" if name == LIBRARY_NAME else ""))


def _build_info(library: str) -> dict:
    """What CMake recorded next to the library it built (ccnet_build_info.json), or {}."""
    try:
        with open(os.path.join(os.path.dirname(library), "ccnet_build_info.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _load_error_hint(path: str, error: OSError) -> str:
    """One line saying why the dynamic loader refused `path` and what to do about it."""
    text = str(error)
    missing = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", text)
    if missing and os.path.basename(path) != missing.group(1):
        needed = missing.group(1)
        info = _build_info(path)
        built = (f" (built with CUDA {info['cuda_toolkit_version']})"
                 if needed.startswith("libcudart") and info.get("cuda_toolkit_version") else "")
        return (f"cannot load {path}: it needs {needed}{built}, which the dynamic loader did not find; "
                f"install it or add its folder to LD_LIBRARY_PATH, or rebuild with `{BUILD_HINT}` "
                f"against the CUDA toolkit of this machine")
    return f"cannot load {path}: {text}; rebuild it with `{BUILD_HINT}`"


def load_library(path: str | None = None) -> ctypes.CDLL:
    """Load a plugin library with ctypes (once per path) and declare its C entry points.

    Loading it with RTLD_GLOBAL before building a TensorRT engine also works in place of
    IPluginRegistry.load_library, but the latter is the supported way (see plugins/README.md).
    """
    path = os.path.abspath(path) if path else library_path()
    if path in _loaded:
        return _loaded[path]
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise PluginLibraryError(_load_error_hint(path, e)) from None
    lib.ccnet_cca_check_sizes.argtypes = [ctypes.c_int] * 5
    lib.ccnet_cca_check_sizes.restype = ctypes.c_int
    lib.ccnet_cca_workspace_size.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.ccnet_cca_workspace_size.restype = ctypes.c_size_t
    lib.ccnet_cca_forward.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,  # query key value out
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,  # n cq c h w
        ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]  # dtype ws ws_bytes stream
    lib.ccnet_cca_forward.restype = ctypes.c_int
    _loaded[path] = lib
    return lib

"""Locate and load libccnet_plugins.so (the CrissCrossAttention TensorRT plugin + its kernels).

Imports neither torch nor tensorrt: usable on a device that has only Python and the library.
Search order: $CCNET_PLUGIN_LIB, <repo>/build/libccnet_plugins.so, next to this package.
"""
from __future__ import annotations

import ctypes
import json
import os

LIBRARY_NAME = "libccnet_plugins.so"
BUILD_HINT = "cmake -S . -B build && cmake --build build -j2"
ENV_VAR = "CCNET_PLUGIN_LIB"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(_PACKAGE_DIR)
_CONTRACT_PATH = os.path.join(_PACKAGE_DIR, "cca_op.json")
_loaded: dict[str, ctypes.CDLL] = {}


class PluginLibraryError(RuntimeError):
    """The plugin library is missing or unusable; the message says what to do."""


def contract() -> dict:
    """The parsed op contract plugins/cca_op.json (plugin name, version, namespace, fields)."""
    with open(_CONTRACT_PATH, encoding="utf-8") as f:
        return json.load(f)


def _candidates() -> list[str]:
    return [os.path.join(_REPO_DIR, "build", LIBRARY_NAME), os.path.join(_PACKAGE_DIR, LIBRARY_NAME)]


def library_path() -> str:
    """Path of the plugin library; raises PluginLibraryError (one line, with the fix) if absent."""
    override = os.environ.get(ENV_VAR)
    if override:
        if not os.path.isfile(override):
            raise PluginLibraryError(
                f"{ENV_VAR}={override} is not a file; point it at {LIBRARY_NAME} or unset it "
                f"to use the build folder ({BUILD_HINT})")
        return os.path.abspath(override)
    for path in _candidates():
        if os.path.isfile(path):
            return path
    raise PluginLibraryError(
        f"{LIBRARY_NAME} not found (looked in {', '.join(_candidates())}); build it in {_REPO_DIR} "
        f"with `{BUILD_HINT}` or set {ENV_VAR}=/path/to/{LIBRARY_NAME}")


def load_library(path: str | None = None) -> ctypes.CDLL:
    """Load the library with ctypes (once per path) and declare its C entry points.

    Loading it with RTLD_GLOBAL before building a TensorRT engine also works in place of
    IPluginRegistry.load_library, but the latter is the supported way (see plugins/README.md).
    """
    path = os.path.abspath(path) if path else library_path()
    if path in _loaded:
        return _loaded[path]
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise PluginLibraryError(
            f"cannot load {path}: {e}; it needs the CUDA runtime (libcudart.so.13) on the "
            f"library path, or rebuild it with `{BUILD_HINT}`") from None
    lib.ccnet_cca_workspace_size.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.ccnet_cca_workspace_size.restype = ctypes.c_size_t
    lib.ccnet_cca_forward.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,  # query key value out
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,  # n cq c h w
        ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]  # dtype ws ws_bytes stream
    lib.ccnet_cca_forward.restype = ctypes.c_int
    _loaded[path] = lib
    return lib


# Codes shared with plugins/cca_kernels.h.
DTYPE_FP32 = 0
DTYPE_FP16 = 1
STATUS_NAMES = {0: "ok", 1: "bad argument", 2: "workspace too small", 3: "kernel launch failed"}

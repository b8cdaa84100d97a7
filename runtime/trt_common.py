"""TensorRT plumbing shared by build, run and inspect: lazy import, logger, plugin library.

tensorrt is imported only when one of these functions is called; without it the error is one
line saying how to install it.
"""
from __future__ import annotations

import os
from typing import Optional

from ccnet.errors import CCNetError

INSTALL_HINT = ("TensorRT is not installed: pip install tensorrt (NVIDIA's index; 10.x on JetPack 6,"
                " 10.x/11.x on desktop GPUs); see the README, section 'Workflow'")
PLUGIN_FLAG_HINT = "pass --plugins /path/to/libccnet_plugins.so or set CCNET_PLUGIN_LIB"


def import_tensorrt():
    """``import tensorrt`` or a one-line CCNetError."""
    try:
        import tensorrt as trt
    except ImportError:
        raise CCNetError(INSTALL_HINT) from None
    return trt


def tensorrt_version(trt) -> str:
    return str(trt.__version__)


def make_logger(trt, verbose: bool = False):
    return trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)


def resolve_plugin_library(path: Optional[str], required: bool = True) -> Optional[str]:
    """The plugin library to use: ``path`` if given (must exist), else plugins.library_path()
    ($CCNET_PLUGIN_LIB, then build/).  ``required=False`` returns None when none is found."""
    if path:
        if not os.path.isfile(path):
            raise CCNetError(f"plugin library {path} not found: {PLUGIN_FLAG_HINT} (build it with "
                             "`cmake -S . -B build && cmake --build build -j2`)")
        return os.path.abspath(path)
    try:
        import plugins
    except ImportError:
        plugins = None
    if plugins is None or not hasattr(plugins, "library_path"):
        env = os.environ.get("CCNET_PLUGIN_LIB")
        if env and os.path.isfile(env):
            return os.path.abspath(env)
        if required:
            raise CCNetError(f"no plugin library found: {PLUGIN_FLAG_HINT}")
        return None
    try:
        return plugins.library_path()
    except Exception as e:  # plugins.PluginLibraryError: one line with the fix
        if required:
            raise CCNetError(f"{e} ({PLUGIN_FLAG_HINT})") from None
        return None


def load_plugin_library(trt, path: str):
    """Load and register the plugin library with TensorRT (before parsing or deserializing).

    TensorRT >= 10 has IPluginRegistry.load_library (the library exports getCreators()); older
    versions only see creators registered by the library's static initialisers, so it is loaded
    with ctypes (RTLD_GLOBAL) and the built-in plugins initialised.
    """
    registry = trt.get_plugin_registry()
    if hasattr(registry, "load_library"):
        handle = registry.load_library(path)
        if handle is None:
            raise CCNetError(f"TensorRT could not load plugin library {path} (see the log above; "
                             f"it must be built against this TensorRT and CUDA): "
                             f"{PLUGIN_FLAG_HINT}")
        return handle
    import ctypes

    try:
        handle = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise CCNetError(f"cannot load plugin library {path} ({e}): {PLUGIN_FLAG_HINT}") from None
    trt.init_libnvinfer_plugins(None, "")
    return handle


def contract() -> dict:
    """The custom-op contract (plugins/cca_op.json)."""
    import plugins

    return plugins.contract()


def plugin_description(library: Optional[str]) -> Optional[dict]:
    if not library:
        return None
    c = contract()
    return {"library": library, "name": c["plugin_name"], "version": c["plugin_version"],
            "namespace": c["plugin_namespace"]}


def is_plugin_layer_type(trt, layer_type) -> bool:
    names = ("PLUGIN", "PLUGIN_V2", "PLUGIN_V3")
    return any(getattr(trt.LayerType, n, None) == layer_type for n in names)

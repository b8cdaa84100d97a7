"""Load an engine built by ``ccnet build``: the side file, TensorRT's compatibility rules, the
plugin library, then polygraphy's ``EngineFromBytes``.  Shared by the runner, ``ccnet
inspect`` and the tensor comparison, each a one-line error when it fails."""
from __future__ import annotations

from typing import Optional, Tuple

from ccnet.errors import CCNetError
from ccnet.files import require_file

from .engine_info import EngineInfo, check_tensorrt_version, read_engine_info
from .trt_common import (PLUGIN_FLAG_HINT, import_tensorrt, load_plugin_library,
                         polygraphy_errors, polygraphy_logging, resolve_plugin_library)


def engine_runtime(engine_path: str, plugins: Optional[str] = None) -> Tuple[object, EngineInfo]:
    """(``trt.Runtime`` ready to deserialize ``engine_path``, its side file).

    Checks, in order: the side file, ``import tensorrt``, TensorRT's compatibility rules, the
    plugin library registered in the runtime's plugin registry (``IRuntime::getPluginRegistry``,
    where trtexec loads ``--dynamicPlugins`` before deserializing)."""
    require_file(engine_path, "engine")
    info = read_engine_info(engine_path)
    trt = import_tensorrt()
    check_tensorrt_version(info, str(trt.__version__), engine_path)
    from polygraphy.backend.trt.util import get_trt_logger

    runtime = trt.Runtime(get_trt_logger())
    if info.plugin or plugins:
        load_plugin_library(runtime.get_plugin_registry(),
                            resolve_plugin_library(plugins, required=True))
    return runtime, info


def deserialize_engine(runtime, engine_path: str, verbose: bool = False):
    """polygraphy's ``EngineFromBytes`` (which allows the host code a version-compatible engine
    embeds) with a one-line error."""
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes

    what = f"TensorRT cannot deserialize {engine_path}"
    hint = (f": the file is corrupt, was built for another GPU, or needs a plugin that is not "
            f"loaded ({PLUGIN_FLAG_HINT}); rebuild it with ccnet build")
    with polygraphy_logging(verbose, quiet=True), polygraphy_errors(what, hint):
        engine = EngineFromBytes(BytesFromPath(engine_path), runtime=runtime)()
    if not engine:
        raise CCNetError(what + hint)
    return engine


def load_engine(engine_path: str, plugins: Optional[str] = None,
                verbose: bool = False) -> Tuple[object, EngineInfo]:
    """(``trt.ICudaEngine``, its EngineInfo) for an engine built by ``ccnet build``."""
    runtime, info = engine_runtime(engine_path, plugins)
    return deserialize_engine(runtime, engine_path, verbose), info

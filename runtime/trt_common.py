"""TensorRT plumbing shared by build, run, inspect and compare: the lazy import, the plugin
library, and polygraphy's logging and failures turned into our one-line errors.

Engines are built and loaded through polygraphy's TensorRT loaders.  The plugin library is the
one thing those loaders cannot do for us: polygraphy's ``LoadPlugins`` (and ``polygraphy run
--plugins``) opens a library with a plain ``dlopen``, which registers only plugins whose library
registers itself when loaded (trtexec ``--staticPlugins``).  libccnet_plugins.so hands its
creator to TensorRT through ``getCreators()``, which TensorRT calls from
``IPluginRegistry.load_library`` (trtexec ``--dynamicPlugins``), so that is what
:func:`load_plugin_library` uses.  tensorrt is imported only inside these functions; without it
the error is one line saying how to install it.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import plugins
from ccnet.errors import CCNetError, first_line

from .engine_info import version_tuple

INSTALL_HINT = ("TensorRT is not installed: pip install tensorrt (NVIDIA's index; 10.x on "
                "JetPack 6, 10.x/11.x on desktop GPUs); see the README, section 'Workflow'")
PLUGIN_FLAG_HINT = "pass --plugins /path/to/libccnet_plugins.so or set CCNET_PLUGIN_LIB"
MIN_TENSORRT = (10, 0)  # strongly typed networks and IPluginV3 plugins


def import_tensorrt():
    """``import tensorrt`` (10.x or later) or a one-line CCNetError."""
    try:
        import tensorrt as trt
    except ImportError:
        raise CCNetError(INSTALL_HINT) from None
    if version_tuple(trt.__version__)[:2] < MIN_TENSORRT:
        raise CCNetError(f"TensorRT {trt.__version__} is too old: CCNet engines need strongly "
                         "typed networks and IPluginV3 plugins (TensorRT 10.x or 11.x)")
    return trt


def resolve_plugin_library(path: Optional[str] = None, required: bool = True) -> Optional[str]:
    """The plugin library to use: ``path`` if given (must exist), else ``plugins.library_path()``
    ($CCNET_PLUGIN_LIB, then build/).  ``required=False`` returns None when none is found."""
    if path:
        if not os.path.isfile(path):
            raise CCNetError(f"plugin library {path} not found: {PLUGIN_FLAG_HINT} (build it with "
                             f"`{plugins.BUILD_HINT}`)")
        return os.path.abspath(path)
    try:
        return plugins.library_path()
    except plugins.PluginLibraryError as e:
        if required:
            raise CCNetError(f"{e} ({PLUGIN_FLAG_HINT})") from None
        return None


def creator_key() -> tuple:
    """(name, version, namespace) of our plugin creator, from plugins/cca_op.json."""
    c = plugins.contract()
    return c["plugin_name"], c["plugin_version"], c["plugin_namespace"]


def load_plugin_library(registry, path: str) -> None:
    """Register the CrissCrossAttention creator of ``path`` in ``registry`` (the builder's or
    the runtime's plugin registry), at most once per registry and process.

    ``IPluginRegistry.load_library`` returns None when the library cannot be loaded *and* when
    any of its plugins is already registered (pyPluginDoc.h, ``load_library``) -- the second
    engine in a process, or another copy of the library.  ``get_creator`` (None when absent)
    tells the two apart: once the creator is registered, the library counts as loaded.
    """
    key = creator_key()
    if registry.get_creator(*key) is not None:
        return
    loaded = registry.load_library(path) is not None
    if registry.get_creator(*key) is None:
        why = ("it registers no {0}/{1}/{2} creator".format(*key) if loaded
               else "see the log above; it must be built against this TensorRT and its CUDA "
                    "major version")
        raise CCNetError(f"TensorRT could not load plugin library {path} ({why}): "
                         f"{PLUGIN_FLAG_HINT}")


def plugin_description(library: Optional[str]) -> Optional[dict]:
    """What the engine's side file records about the plugin it needs."""
    if not library:
        return None
    name, version, namespace = creator_key()
    return {"library": library, "name": name, "version": version, "namespace": namespace}


@contextlib.contextmanager
def polygraphy_logging(verbose: bool = False, quiet: bool = False) -> Iterator[None]:
    """polygraphy's log level for one block (restored after it): its INFO lines (what is
    built, with which configuration) by default, only warnings with ``quiet``, TensorRT's
    own INFO and VERBOSE lines (routed through polygraphy's logger) with ``verbose``."""
    from polygraphy.logger import G_LOGGER

    level = G_LOGGER.EXTRA_VERBOSE if verbose else G_LOGGER.WARNING if quiet else G_LOGGER.INFO
    with G_LOGGER.verbosity(level):
        yield


@contextlib.contextmanager
def polygraphy_errors(what: str, hint: str = "") -> Iterator[None]:
    """Turn polygraphy's failure (logged above it, then raised as PolygraphyException) into a
    one-line CCNetError: ``<what> (<polygraphy's message>)<hint>``."""
    from polygraphy.exception import PolygraphyException

    try:
        yield
    except PolygraphyException as e:
        raise CCNetError(f"{what} ({first_line(e)}){hint}") from None

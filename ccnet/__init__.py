"""ccnet: CCNet in plain PyTorch, compatible with mmsegmentation's zoo checkpoints.

Torch-free submodules (``meta``, ``zoo``, ``images``, ``processing``, ``metrics``, ``datasets``,
``evaluation``, ``runner``) are used by the runtime on devices without PyTorch; the torch-based
API below is imported lazily.
"""
from .errors import CCNetError
from .lazy import lazy_getattr
from .meta import ModelMeta
from .zoo import ModelConfig, custom_config, get_config, zoo_names
from . import demo  # noqa: F401,E402  (defines and registers the built-in "ccnet-demo")

__version__ = "0.1.0"

_LAZY = {
    "load_model": "checkpoint", "save_checkpoint": "checkpoint", "build_model": "checkpoint",
    "predict": "inference", "TorchRunner": "inference", "Prediction": "processing",
    "CCNet": "model",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["CCNetError", "ModelMeta", "ModelConfig", "custom_config", "get_config", "zoo_names",
           "__version__", *_LAZY]

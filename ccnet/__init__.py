"""ccnet: CCNet in plain PyTorch, compatible with mmsegmentation's zoo checkpoints.

Torch-free submodules (``meta``, ``zoo``, ``processing``, ``metrics``, ``datasets``) are used by
the runtime on devices without PyTorch; the torch-based API below is imported lazily.
"""
from .errors import CCNetError
from .lazy import lazy_getattr
from .meta import ModelMeta
from .zoo import ModelConfig, custom_config, get_config, zoo_names

__version__ = "0.1.0"

_LAZY = {
    "load_model": "checkpoint", "save_checkpoint": "checkpoint", "build_model": "checkpoint",
    "predict": "inference", "Prediction": "inference",
    "CCNet": "model",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["CCNetError", "ModelMeta", "ModelConfig", "custom_config", "get_config", "zoo_names",
           "__version__", *_LAZY]

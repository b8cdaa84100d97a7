"""ccnet: CCNet in plain PyTorch, compatible with mmsegmentation's zoo checkpoints.

Torch-free submodules (``meta``, ``zoo``, ``processing``, ``metrics``, ``datasets``) are used by
the runtime on devices without PyTorch; the torch-based API below is imported lazily.
"""
from .errors import CCNetError
from .meta import ModelMeta
from .zoo import ModelConfig, custom_config, get_config, zoo_names

__version__ = "0.1.0"

_LAZY = {
    "load_model": "checkpoint", "save_checkpoint": "checkpoint", "build_model": "checkpoint",
    "predict": "inference", "Prediction": "inference",
    "CCNet": "model",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'ccnet' has no attribute {name!r}")


__all__ = ["CCNetError", "ModelMeta", "ModelConfig", "custom_config", "get_config", "zoo_names",
           "__version__", *_LAZY]

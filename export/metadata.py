"""ModelMeta in an ONNX file's ``metadata_props`` (one JSON document under METADATA_KEY)."""
from __future__ import annotations

import os
from typing import Union

import onnx

from ccnet.errors import CCNetError
from ccnet.meta import METADATA_KEY, ModelMeta

from .onnx_file import load_onnx


def set_metadata(model: onnx.ModelProto, meta: ModelMeta) -> None:
    """Write (or replace) our metadata prop; a plain string so onnxruntime can read it too."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    prop = model.metadata_props.add()
    prop.key, prop.value = METADATA_KEY, meta.to_json()


def read_metadata(path_or_model: Union[str, os.PathLike, onnx.ModelProto]) -> ModelMeta:
    """The ModelMeta stored by ccnet-export in an ONNX file (path) or ModelProto."""
    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
    else:
        model = load_onnx(os.fspath(path_or_model), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelMeta.from_json(prop.value)
    raise CCNetError("no ccnet metadata: export it with ccnet-export")

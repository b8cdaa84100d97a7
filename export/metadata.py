"""ModelMeta in an ONNX file's ``metadata_props`` (one JSON document under METADATA_KEY), with a
checksum so a corrupted file is refused before it runs.

The checksum (``extra["sha256"]``) is a SHA-256 over everything in the file but the metadata
props: graph (nodes, initializers = the weights by value, inputs/outputs), model-local
functions, opset imports, IR version — plus our metadata JSON itself without the checksum.  A flipped byte in
the weights, in an attribute or in the preprocessing values is therefore noticed, not only a
damaged download of the weights.  ``set_metadata`` computes it as the last step before a file
is written (export, FP16, INT8), so tools that change a model and rewrite its metadata keep it
valid; editing the metadata by other means makes the file fail the check.  Checking costs one
parse of the file with ``onnx`` plus one serialization and hash of its content: 2.0 s for a
188 MB file (R50-D8 FP32 size) on our shared 2-core machine, 1.4 s of it the parse; runners
can skip it (``OrtRunner(check_checksum=False)``).  Files without a checksum (older exports, other
tools) are not checked.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional, Union

import onnx

from ccnet.errors import CCNetError
from ccnet.meta import METADATA_KEY, ModelMeta

from .onnx_file import load_onnx

CHECKSUM_KEY = "sha256"


def content_digest(model: onnx.ModelProto, meta_dict: dict) -> str:
    """SHA-256 hex digest of every ModelProto field but ``metadata_props``, and of the
    metadata dict (canonical JSON) without its checksum.  Weights are hashed by value, so a
    file saved with its weights in an external data file has the same digest."""
    digest = hashlib.sha256()
    _hash_fields(digest, model, skip=("metadata_props",))
    extra = meta_dict.get("extra")
    if isinstance(extra, dict) and CHECKSUM_KEY in extra:
        meta_dict = {**meta_dict, "extra": {k: v for k, v in extra.items() if k != CHECKSUM_KEY}}
    digest.update(json.dumps(meta_dict, sort_keys=True).encode())
    return digest.hexdigest()


def _hash_fields(digest, message, skip=()) -> None:
    for descriptor, value in message.ListFields():
        if descriptor.name in skip:
            continue
        digest.update(descriptor.name.encode())
        items = value if _is_repeated(descriptor) else [value]
        for item in items:
            if descriptor.name == "graph":
                _hash_fields(digest, item)
            elif descriptor.name == "initializer":
                digest.update(_canonical_tensor(item))
            elif hasattr(item, "SerializeToString"):
                digest.update(item.SerializeToString())
            else:
                digest.update(repr(item).encode())


def _canonical_tensor(tensor: onnx.TensorProto) -> bytes:
    """A tensor's bytes without where its data was stored (embedded or external)."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raise CCNetError(f"weights of {tensor.name!r} are not loaded: load the model with its "
                         "external data to check it")
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.ClearField("data_location")
    del copy.external_data[:]
    return copy.SerializeToString()


def _is_repeated(descriptor) -> bool:
    repeated = getattr(descriptor, "is_repeated", None)  # protobuf >= 6; older ones: label
    return repeated if repeated is not None else descriptor.label == descriptor.LABEL_REPEATED


def set_metadata(model: onnx.ModelProto, meta: ModelMeta) -> None:
    """Write (or replace) our metadata prop with the checksum of the model as it is now; a
    plain string so onnxruntime can read it too."""
    d = meta.to_dict()
    d["extra"] = {k: v for k, v in d["extra"].items() if k != CHECKSUM_KEY}
    d["extra"][CHECKSUM_KEY] = content_digest(model, d)
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    prop = model.metadata_props.add()
    prop.key, prop.value = METADATA_KEY, json.dumps(d, sort_keys=True)


def _metadata_text(model: onnx.ModelProto) -> Optional[str]:
    return next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)


def read_metadata(path_or_model: Union[str, os.PathLike, onnx.ModelProto]) -> ModelMeta:
    """The ModelMeta stored by ccnet-export in an ONNX file (path) or ModelProto."""
    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
    else:
        model = load_onnx(os.fspath(path_or_model), load_external_data=False)
    text = _metadata_text(model)
    if text is None:
        raise CCNetError("no ccnet metadata: export it with ccnet-export")
    return ModelMeta.from_json(text)


def check_checksum(model: onnx.ModelProto, path: str = "model") -> None:
    """Refuse a model whose content no longer matches the checksum recorded when it was
    written (a damaged download or copy, or an edit by another tool); models without our
    metadata or without a checksum pass (the metadata checks report those)."""
    text = _metadata_text(model)
    try:
        d = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        d = None  # unreadable metadata: ModelMeta.from_json reports it
    extra = d.get("extra") if isinstance(d, dict) else None
    expected = extra.get(CHECKSUM_KEY) if isinstance(extra, dict) else None
    if expected is not None and content_digest(model, d) != expected:
        raise CCNetError(f"{path} is corrupt: its content does not match the checksum recorded "
                         "when it was written; export, convert or copy it again")


def verify_file(path: str) -> ModelMeta:
    """Load ``path`` (with its weights), check it against its recorded checksum and return its
    metadata: what a runtime calls before trusting a file."""
    model = load_onnx(path)
    check_checksum(model, path)
    return read_metadata(model)

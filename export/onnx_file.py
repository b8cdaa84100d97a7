"""Reading ONNX files with one-line errors (the one place every tool loads an ONNX from)."""
from __future__ import annotations

import onnx

from ccnet.errors import CCNetError, first_line
from ccnet.files import require_file


def load_onnx(path: str, load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX file; a missing file or one that is not ONNX is a one-line CCNetError."""
    require_file(path, "ONNX file")
    try:
        return onnx.load(path, load_external_data=load_external_data)
    except Exception as e:  # protobuf DecodeError, OSError for external data, ...
        raise CCNetError(f"{path} is not a readable ONNX file ({type(e).__name__}: "
                         f"{first_line(e, 120)}): pass a model written by ccnet-export") from e


def image_input(model: onnx.ModelProto, path: str = "model"):
    """(name, dims) of the model's one image input — dims are ints for fixed sizes and None for
    dynamic ones — after checking the graph has that input and an output (one-line errors)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or not model.graph.output:
        raise CCNetError(f"{path} has {len(inputs)} input(s) and {len(model.graph.output)} "
                         "output(s), not one image input and an output: pass a model written "
                         "by ccnet-export")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise CCNetError(f"{path}: input {inputs[0].name!r} has {len(dims)} dimensions, not "
                         "N×3×H×W: pass a model written by ccnet-export")
    return inputs[0].name, tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                                 else None for d in dims)

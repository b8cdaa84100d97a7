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

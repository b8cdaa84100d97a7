"""The runner interface every backend implements (PyTorch, ONNX Runtime, TensorRT).

A runner owns one loaded network and runs its forward pass on preprocessed batches; the
pre/post-processing around it is shared (``ccnet.processing``).  Modelled on Polygraphy's
``BaseRunner``: ``infer`` plus deterministic resource release through ``close`` or a ``with``
block, never through ``__del__``.  Torch-free.
"""
from __future__ import annotations

import abc
from typing import Optional, Tuple

import numpy as np

from .errors import CCNetError
from .meta import ModelMeta

# "label_map": a label-head file (ccnet.labels): labels resized to a size given per call.
OUTPUT_KINDS = ("logits", "labels", "label_map")


class Runner(abc.ABC):
    """One network behind ``infer(batch)``.

    ``infer``: float32 N×3×h×w normalized RGB batch (numpy) → numpy N×C×h×w float32 logits, or
    an N×h×w label map for files exported with labels as their output (``output_kind`` says
    which); label-head files (``output_kind == "label_map"``) run through ``infer_labels``.
    ``meta``: the model's :class:`ModelMeta` (None when the file carries none).
    """

    #: backend name shown in reports ("pytorch", "onnxruntime", "tensorrt")
    name: str = "runner"

    def __init__(self, meta: Optional[ModelMeta], output_kind: str = "logits"):
        if output_kind not in OUTPUT_KINDS:
            raise ValueError(f"output_kind must be one of {OUTPUT_KINDS}, got {output_kind!r}")
        self.meta = meta
        self.output_kind = output_kind
        self.closed = False

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The network pass on one preprocessed batch."""

    def infer_labels(self, batch: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
        """Label-head files: network, resize to ``size`` = (H, W) and argmax in the graph →
        N×H×W label map in ``ccnet.labels.label_dtype(num_classes)``."""
        raise CCNetError(f"the {self.name} runner does not run label-head models: export the "
                         "model without --label-head")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.infer(batch)

    def release(self) -> None:
        """Free what the backend holds (sessions, device memory); called once by ``close``."""

    def close(self) -> None:
        """Release the backend's resources; calling it again does nothing."""
        if not self.closed:
            self.closed = True
            self.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

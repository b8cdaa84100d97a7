"""The Triton Python-backend model of an exported repository (``ccnet triton-repo``).

Each checked request (``runtime.triton_checked_model``) goes image by image through
``ccnet.processing.segment_labels`` — the pre/post-processing ``Segmenter`` uses — with the
network pass sent to the repository's network model through Triton's BLS API (one call per
whole image or slide window).
"""
from __future__ import annotations

import numpy as np

from ccnet.meta import ModelMeta
from ccnet.processing import Preprocessor, segment_labels

from .serving_contract import LABELS, stack_outputs
from .triton_checked_model import CheckedRequestsModel

NUMPY_TYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}


class TritonPythonModel(CheckedRequestsModel):
    """Pre/post-processing around the ``network_model`` of the repository."""

    def setup(self) -> None:
        params = self.params
        self.meta = ModelMeta.from_json(params["ccnet_meta"])
        # One per model instance: Triton runs an instance's execute() calls one at a time.
        self.preprocessor = Preprocessor(self.meta)
        self.network = params["network_model"]
        self.network_input = params["network_input"]
        self.network_output = params["network_output"]
        self.input_type = NUMPY_TYPES[params.get("network_input_type", "TYPE_FP32")]

    def network_pass(self, batch: np.ndarray) -> np.ndarray:
        """N×3×h×w normalized batch → N×C×h×w logits from the network model (BLS)."""
        pb = self.pb
        tensor = pb.Tensor(self.network_input, np.ascontiguousarray(batch, self.input_type))
        response = self.call(self.network, [tensor], [self.network_output], "network model")
        logits = pb.get_output_tensor_by_name(response, self.network_output)
        return logits.as_numpy().astype(np.float32, copy=False)

    def answer(self, request, images):
        # segment_labels returns ccnet.labels.label_dtype(num_classes), the served dtype.
        labels = [segment_labels(image, self.meta, self.network_pass, self.preprocessor)
                  for image in images]
        return [self.pb.Tensor(LABELS, stack_outputs(labels, self.batched))]

"""The Triton Python-backend model of an exported repository (``ccnet triton-repo``).

Per request: the inputs are checked and decoded as ``ccnet serve`` does
(``runtime.serving_contract``), each image goes through ``ccnet.processing.segment_labels`` — the
pre/post-processing ``Segmenter`` uses — with the network pass sent to the repository's
network model through Triton's BLS API (one call per whole image or slide window).  A bad
request gets its own one-line error response; the other requests of the batch are answered.

``triton_python_backend_utils`` exists only inside Triton's Python stub, so it is imported
when Triton initializes the model, never at module import.
"""
from __future__ import annotations

import json

import numpy as np

from ccnet.errors import CCNetError, first_line
from ccnet.meta import ModelMeta
from ccnet.processing import segment_labels

from .serving_contract import (ENCODED, IMAGE, LABELS, as_labels, request_images,
                               stack_outputs)

NUMPY_TYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}


class TritonPythonModel:
    """Triton's Python-backend interface: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.meta = ModelMeta.from_json(params["ccnet_meta"])
        self.network = params["network_model"]
        self.network_input = params["network_input"]
        self.network_output = params["network_output"]
        self.input_type = NUMPY_TYPES[params.get("network_input_type", "TYPE_FP32")]
        self.max_side = int(params["max_image_side"])
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def network_pass(self, batch: np.ndarray) -> np.ndarray:
        """N×3×h×w normalized batch → N×C×h×w logits from the network model (BLS)."""
        pb = self.pb
        tensor = pb.Tensor(self.network_input, np.ascontiguousarray(batch, self.input_type))
        response = pb.InferenceRequest(model_name=self.network, inputs=[tensor],
                                       requested_output_names=[self.network_output]).exec()
        if response.has_error():
            raise CCNetError(f"network model {self.network!r} failed: "
                             f"{first_line(Exception(response.error().message()))}")
        logits = pb.get_output_tensor_by_name(response, self.network_output)
        return logits.as_numpy().astype(np.float32, copy=False)

    def _input(self, request, name: str):
        tensor = self.pb.get_input_tensor_by_name(request, name)
        return None if tensor is None else tensor.as_numpy()

    def respond(self, request):
        """The response to one request: labels, or an error with a one-line reason."""
        pb = self.pb
        try:
            images = request_images(self._input(request, IMAGE), self._input(request, ENCODED),
                                    self.batched, self.max_side)
            labels = [as_labels(segment_labels(image, self.meta, self.network_pass),
                                self.meta.num_classes) for image in images]
            output = pb.Tensor(LABELS, stack_outputs(labels, self.batched))
            return pb.InferenceResponse(output_tensors=[output])
        except CCNetError as e:
            return pb.InferenceResponse(error=pb.TritonError(first_line(e)))

    def execute(self, requests):
        return [self.respond(request) for request in requests]

    def finalize(self) -> None:
        """Nothing to release: the network lives in its own Triton model."""

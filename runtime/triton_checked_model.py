"""Base of ccnet's Triton Python-backend models: every request checked on its own.

Each request's inputs are checked and decoded by ``runtime.serving_contract`` (the tensor
contract of ``ccnet serve`` and ``ccnet triton-repo``); a bad request gets its own error response
with the one-line reason, and the other requests of the batch are answered.  Subclasses say
what an answer is (:meth:`CheckedRequestsModel.answer`).

``triton_python_backend_utils`` exists only inside Triton's Python stub, so it is imported when
Triton initializes the model, never at module import.
"""
from __future__ import annotations

import json
from typing import Dict, List

import numpy as np

from ccnet.errors import CCNetError, first_line

from .serving_contract import ENCODED, IMAGE, request_images


class CheckedRequestsModel:
    """Triton's Python-backend interface (``initialize``, ``execute``, ``finalize``) around
    :meth:`answer`.  The model config's ``parameters`` must hold ``max_image_side``."""

    def initialize(self, args) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.params: Dict[str, str] = {k: v["string_value"]
                                       for k, v in config.get("parameters", {}).items()}
        self.max_side = int(self.params["max_image_side"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.setup()

    def setup(self) -> None:
        """Read the subclass's parameters from ``self.params``."""

    def answer(self, request, images: List[np.ndarray]):
        """The output tensors for one checked request whose ``images`` (decoded BGR, one size)
        are valid; raise CCNetError with a one-line reason to refuse it."""
        raise NotImplementedError

    def call(self, model: str, inputs, outputs: List[str], what: str = "model"):
        """The response of Triton model ``model`` to ``inputs`` (BLS); its error as a one-line
        CCNetError naming the model (``what``: how to call it there)."""
        response = self.pb.InferenceRequest(model_name=model, inputs=inputs,
                                            requested_output_names=outputs).exec()
        if response.has_error():
            raise CCNetError(f"{what} {model!r} failed: "
                             f"{first_line(Exception(response.error().message()))}")
        return response

    def _input(self, request, name: str):
        tensor = self.pb.get_input_tensor_by_name(request, name)
        return None if tensor is None else tensor.as_numpy()

    def respond(self, request):
        """The response to one request: its outputs, or an error with a one-line reason."""
        pb = self.pb
        try:
            images = request_images(self._input(request, IMAGE), self._input(request, ENCODED),
                                    self.batched, self.max_side)
            return pb.InferenceResponse(output_tensors=self.answer(request, images))
        except CCNetError as e:
            return pb.InferenceResponse(error=pb.TritonError(first_line(e)))

    def execute(self, requests):
        return [self.respond(request) for request in requests]

    def finalize(self) -> None:
        """Nothing to release: the network or segmenter lives in its own Triton model."""

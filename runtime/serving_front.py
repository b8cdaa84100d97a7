"""The model clients call in ``ccnet serve``: a Triton Python-backend model that checks every
request on its own and forwards the valid ones to the segmenter model PyTriton binds.

Why it exists: when a PyTriton callable raises, PyTriton answers every request of the batch
with one error whose text wraps its own traceback.  Triton's Python backend instead gives each
request its own response, so a bad request gets the one-line reason and the requests batched
with it are answered.
"""
from __future__ import annotations

from .serving_contract import IMAGE, LABELS, stack_outputs
from .triton_checked_model import CheckedRequestsModel


class TritonPythonModel(CheckedRequestsModel):
    """Forwards each checked request's pixels to ``segmenter_model`` (BLS)."""

    def setup(self) -> None:
        self.segmenter = self.params["segmenter_model"]

    def answer(self, request, images):
        # A checked `image` tensor goes on as it came (stacking its frames again would copy
        # it); only decoded `encoded` files need a tensor made.
        pixels = self.pb.get_input_tensor_by_name(request, IMAGE)
        if pixels is None:
            pixels = self.pb.Tensor(IMAGE, stack_outputs(images, self.batched))
        wanted = list(request.requested_output_names()) or [LABELS]
        return self.call(self.segmenter, [pixels], wanted).output_tensors()

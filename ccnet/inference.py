"""mmseg-identical inference with a PyTorch CCNet: the PyTorch runner (network pass only) and
``predict`` (the shared pre/post-processing around it)."""
from __future__ import annotations

import numpy as np
import torch

from .model import CCNet
from .processing import Prediction, segment
from .runner import Runner


class TorchRunner(Runner):
    """A PyTorch CCNet behind the runner interface: float32 numpy batch in, numpy logits out."""

    name = "pytorch"

    def __init__(self, model: CCNet):
        super().__init__(model.meta, "logits")
        self.model = model.eval()
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        return self.model(x).float().cpu().numpy()

    def release(self) -> None:
        self.model = None


def predict(model: CCNet, image_bgr: np.ndarray, tta: bool = False) -> Prediction:
    """Segment one BGR uint8 image as mmseg does; ``tta`` = ms+flip by the mmseg 0.x rule.

    Returns ``.labels`` (H×W) and ``.logits`` (C×H×W float32 at the original size).
    """
    return segment(image_bgr, model.meta, TorchRunner(model).infer, tta=tta)


__all__ = ["predict", "Prediction", "TorchRunner"]

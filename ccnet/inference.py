"""mmseg-identical inference with a PyTorch CCNet (the network pass only; processing is shared)."""
from __future__ import annotations

import numpy as np
import torch

from .model import CCNet
from .processing import Prediction, segment


class TorchInfer:
    """``infer(batch) -> logits`` for a PyTorch CCNet: float32 numpy in, numpy out."""

    def __init__(self, model: CCNet):
        self.model = model.eval()
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        return self.model(x).float().cpu().numpy()


def predict(model: CCNet, image_bgr: np.ndarray, tta: bool = False) -> Prediction:
    """Segment one BGR uint8 image as mmseg does; ``tta`` = ms+flip by the mmseg 0.x rule.

    Returns ``.labels`` (H×W) and ``.logits`` (C×H×W float32 at the original size).
    """
    return segment(image_bgr, model.meta, TorchInfer(model), tta=tta)


__all__ = ["predict", "Prediction", "TorchInfer"]

"""A minimal CCNet training loop (mmseg's recipe, small scale) on a ``folder`` dataset.

Recipe as mmseg's CCNet configs: SGD (momentum 0.9, weight decay 5e-4), poly LR (power 0.9,
min_lr 1e-4), cross-entropy ignoring 255 on the decode logits upsampled to the label size plus
0.4 × the auxiliary head's loss; BN in train mode.  Light augmentation: keep-ratio resize to the
model's test scale × a random ratio, random crop (padding with ignore), horizontal flip.  The
result is an mmseg-layout checkpoint written by ``ccnet.checkpoint.save_checkpoint``.

    ccnet-train --config ccnet-demo --data train_dir --out model.pth --iters 1000
    ccnet-train --model model.pth --data my_folder --out finetuned.pth --iters 200 --lr 0.001
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import build_model, load_model, save_checkpoint
from .datasets import open_dataset
from .errors import CCNetError
from .files import check_output_file
from .meta import IGNORE_INDEX
from .model import CCNet
from .images import load_image
from .processing import normalize, rescale_size
from .progress import progress_bar
from .zoo import ModelConfig, get_config

AUX_WEIGHT = 0.4
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
POLY_POWER = 0.9
MIN_LR = 1e-4


def poly_lr(base_lr: float, it: int, iters: int, power: float = POLY_POWER,
            min_lr: float = MIN_LR) -> float:
    """mmengine PolyLR with eta_min: (base - min)·(1 - it/iters)^power + min."""
    return (base_lr - min_lr) * (1 - min(it, iters) / iters) ** power + min_lr


def seg_loss(model: CCNet, images: torch.Tensor, labels: torch.Tensor,
             aux_weight: float = AUX_WEIGHT) -> Tuple[torch.Tensor, Dict[str, float]]:
    """mmseg's decode + aux cross-entropy (ignore 255) on logits upsampled to the label size."""
    decode, aux = model.forward_train(images)
    size = labels.shape[-2:]

    def ce(logits):
        logits = F.interpolate(logits, size=size, mode="bilinear",
                               align_corners=model.align_corners)
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)

    loss_decode = ce(decode)
    parts = {"decode": float(loss_decode.detach())}
    loss = loss_decode
    if aux is not None and aux_weight:
        loss_aux = ce(aux)
        parts["aux"] = float(loss_aux.detach())
        loss = loss + aux_weight * loss_aux
    return loss, parts


# ----------------------------------------------------------------------------- data
class FolderSampler:
    """Random augmented crops from a ``folder`` dataset (images/ + labels/, matching stems)."""

    def __init__(self, data_dir: str, model: CCNet, crop: Tuple[int, int],
                 scale_range: Tuple[float, float], seed: int, cache: bool = True):
        self.dataset = open_dataset(data_dir, "folder")
        self.meta = model.meta
        self.crop = tuple(int(c) for c in crop)
        self.scale_range = scale_range
        self.rng = np.random.default_rng(seed)
        self._cache: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        self.use_cache = cache

    def _sample(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        if index in self._cache:
            return self._cache[index]
        image_path, label_path = self.dataset.pairs[index]
        image, label = load_image(image_path), self.dataset.load_label(label_path)
        if image.shape[:2] != label.shape[:2]:
            raise CCNetError(f"{image_path} is {image.shape[1]}×{image.shape[0]} but its label "
                             f"is {label.shape[1]}×{label.shape[0]}: labels must match images")
        bad = (label != IGNORE_INDEX) & (label >= self.meta.num_classes)
        if bad.any():
            raise CCNetError(f"{label_path} has class {int(label[bad].max())} but the model has "
                             f"{self.meta.num_classes} classes: pass --num-classes")
        if self.use_cache:
            self._cache[index] = (image, label)
        return image, label

    def augment(self, image: np.ndarray, label: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Resize (test scale × random ratio) → random crop (pad with ignore) → random flip."""
        h, w = image.shape[:2]
        ratio = self.rng.uniform(*self.scale_range)
        new_w, new_h = rescale_size(w, h, [s * ratio for s in self.meta.test_scale])
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        ch, cw = self.crop
        pad_h, pad_w = max(ch - new_h, 0), max(cw - new_w, 0)
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
            label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                       value=IGNORE_INDEX)
        y = int(self.rng.integers(0, image.shape[0] - ch + 1))
        x = int(self.rng.integers(0, image.shape[1] - cw + 1))
        image, label = image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]
        if self.rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return image, label

    def batch(self, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for index in self.rng.integers(0, len(self.dataset), batch_size):
            image, label = self.augment(*self._sample(int(index)))
            images.append(normalize(image, self.meta))
            labels.append(np.ascontiguousarray(label, dtype=np.int64))
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


# ----------------------------------------------------------------------------- model setup
def prepare_model(config_or_ckpt: Union[str, ModelConfig], fresh: bool = False,
                  num_classes: Optional[int] = None) -> CCNet:
    """A model to train: fresh weights for a ModelConfig (or, with ``fresh``, a config name),
    else the weights of a checkpoint/zoo/built-in name.  ``num_classes`` replaces the
    classifier layers (decode and auxiliary ``conv_seg``) for a new label set."""
    if isinstance(config_or_ckpt, ModelConfig):
        model = build_model(config_or_ckpt)
    elif fresh:
        model = build_model(get_config(config_or_ckpt))
    else:
        model = load_model(config_or_ckpt)
    if num_classes is not None and num_classes != model.config.num_classes:
        config = dataclasses.replace(model.config, num_classes=num_classes, classes=None,
                                     palette=None, dataset="custom")
        new = CCNet(config)
        state = {k: v for k, v in model.state_dict().items() if ".conv_seg." not in k}
        new.load_state_dict(state, strict=False)  # the new conv_seg layers keep fresh weights
        model = new
    return model


def _param_groups(model: nn.Module, weight_decay: float):
    # mmseg applies weight decay to every parameter (no paramwise_cfg in the CCNet configs).
    return [{"params": [p for p in model.parameters() if p.requires_grad],
             "weight_decay": weight_decay}]


# ----------------------------------------------------------------------------- training
def train(config_or_ckpt: Union[str, ModelConfig], data_dir: str, out: str, iters: int = 1000,
          batch_size: int = 4, lr: float = 0.01, crop: Sequence[int] = (256, 256),
          seed: int = 0, scale_range: Tuple[float, float] = (0.5, 1.5),
          weight_decay: float = WEIGHT_DECAY, aux_weight: float = AUX_WEIGHT,
          fresh: bool = False, num_classes: Optional[int] = None, num_threads: int = 2,
          log_every: int = 20, val_dir: Optional[str] = None, progress: bool = True) -> dict:
    """Train/fine-tune a CCNet on ``data_dir`` (folder layout) and save it to ``out``.

    ``config_or_ckpt``: a ModelConfig (fresh weights), or a checkpoint file / zoo / built-in
    name (its weights; with ``fresh=True`` a config name is built with fresh weights).
    ``crop`` is (h, w).  Returns ``{"history": [{"iter", "lr", "loss", "decode", "aux"}...],
    "wall_time_s", "iters", "out", "val": metrics or None}``; ``history`` has one entry per
    iteration.
    """
    if iters < 1 or batch_size < 1:
        raise CCNetError("iters and batch_size must be >= 1")
    if len(crop) != 2 or min(crop) < 16:
        raise CCNetError(f"crop must be (h, w) with both >= 16, got {tuple(crop)}")
    check_output_file(out, what="checkpoint")
    torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    model = prepare_model(config_or_ckpt, fresh, num_classes)
    sampler = FolderSampler(data_dir, model, tuple(crop), scale_range, seed)
    optimizer = torch.optim.SGD(_param_groups(model, weight_decay), lr=lr, momentum=MOMENTUM)
    model.train()
    history: List[dict] = []
    bar = progress_bar(total=iters, desc="train", unit="it", enabled=progress)
    start = time.perf_counter()
    for it in range(iters):
        step_lr = poly_lr(lr, it, iters)
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        images, labels = sampler.batch(batch_size)
        loss, parts = seg_loss(model, images, labels, aux_weight)
        if not math.isfinite(float(loss.detach())):
            raise CCNetError(f"loss became {float(loss.detach())} at iteration {it}: lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append({"iter": it, "lr": step_lr, "loss": float(loss.detach()), **parts})
        if bar is not None:
            bar.update(1)
            if it % log_every == 0 or it == iters - 1:
                bar.set_postfix(loss=f"{np.mean([h['loss'] for h in history[-log_every:]]):.3f}")
    wall = time.perf_counter() - start
    if bar is not None:
        bar.close()
    model.eval()
    val = evaluate_folder(model, val_dir) if val_dir else None
    training = {"iters": iters, "batch_size": batch_size, "lr": lr, "crop": list(crop),
                "seed": seed, "scale_range": list(scale_range), "wall_time_s": round(wall, 1),
                "final_loss": float(np.mean([h["loss"] for h in history[-log_every:]]))}
    if val is not None:
        training["val_miou"] = float(val["miou"])
    save_checkpoint(model, out, extra_meta={"training": training})
    return {"history": history, "wall_time_s": wall, "iters": iters, "out": out, "val": val,
            "model": model}


def evaluate_folder(model: CCNet, data_dir: str, max_images: Optional[int] = None) -> dict:
    """mIoU of ``model`` on a folder dataset with the shared inference path (ccnet.predict)."""
    from .evaluation import evaluate_one
    from .inference import predict

    dataset = open_dataset(data_dir, "folder").head(max_images)
    return evaluate_one(lambda image: predict(model, image), dataset, model.meta.num_classes,
                        model.meta.ignore_index, progress=False)

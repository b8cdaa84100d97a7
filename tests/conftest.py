"""Shared fixtures: real photos from ../shared/data and small checkpoints written by our code."""
from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("CCNET_SHARED_DATA",
                             os.path.join(os.path.dirname(REPO), "shared", "data"))
VOC_DIR = os.path.join(SHARED_DATA, "voc_samples", "deeplabv3plus_pytorch")
ADE_DIR = os.path.join(SHARED_DATA, "ade20k_samples")


def real_photos():
    """Paths of the real photos in ../shared/data (VOC + ADE20K)."""
    from ccnet.processing import iter_images

    photos = list(iter_images(os.path.join(VOC_DIR, "images")))
    photos += list(iter_images(os.path.join(ADE_DIR, "images")))
    return photos


@pytest.fixture(scope="session")
def shared_data():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"shared data folder {SHARED_DATA} not found (set CCNET_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def photos(shared_data):
    found = real_photos()
    assert found, f"no photos under {shared_data}"
    return found


def randomize_model(model, seed: int = 0):
    """Give a fresh CCNet non-trivial weights: random BN statistics and a non-zero CCA gamma
    (a fresh CCA has gamma=0 and would be the identity, hiding the attention from tests)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                module.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
        model.decode_head.cca.gamma.scale.fill_(0.7)
    return model.eval()


def make_checkpoint(path, config, seed: int = 0):
    """Write a randomly initialised CCNet for ``config`` in mmseg's layout; returns the model."""
    import torch

    from ccnet.checkpoint import build_model, save_checkpoint

    torch.manual_seed(seed)
    model = randomize_model(build_model(config), seed)
    save_checkpoint(model, str(path))
    return model


@pytest.fixture(scope="session")
def tiny_config():
    """Depth-18 D8 CCNet with a narrow head, VOC classes, small test scale (fast on CPU)."""
    from ccnet.zoo import custom_config

    return custom_config("tiny-r18-voc", depth=18, num_classes=21, channels=64, aux_channels=32,
                         dataset="voc", test_scale=(512, 256))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_config):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_r18.pth"
    make_checkpoint(path, tiny_config, seed=1)
    return str(path)


@pytest.fixture(scope="session")
def r50_ckpt(tmp_path_factory):
    """R50-D8 Cityscapes-512x1024 architecture with random weights, mmseg layout (~190 MB)."""
    from ccnet.zoo import get_config

    path = tmp_path_factory.mktemp("ckpt") / "r50_cityscapes.pth"
    make_checkpoint(path, get_config("ccnet_r50-d8_4xb2-80k_cityscapes-512x1024"), seed=2)
    return str(path)


def export_tiny_onnx(tmp_path_factory, ckpt: str, name: str = "tiny.onnx", **kwargs) -> str:
    """Export the tiny checkpoint once per session (cached by path under pytest's base temp)."""
    from export.to_onnx import export_onnx

    folder = tmp_path_factory.getbasetemp() / "runtime_onnx"
    folder.mkdir(exist_ok=True)
    path = folder / name
    if not path.exists():
        export_onnx(ckpt, str(path), verify=False, log=lambda *a: None, **kwargs)
    return str(path)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_ckpt):
    """The tiny checkpoint exported to ONNX (function form), once per session."""
    return export_tiny_onnx(tmp_path_factory, tiny_ckpt)

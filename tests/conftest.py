"""Shared fixtures: real photos from the shared data folder and small checkpoints written by our
own code (helpers live in tests/helpers.py)."""
from __future__ import annotations

import os

import pytest

from helpers import SHARED_DATA, export_tiny_onnx, make_checkpoint, real_photos, with_label_head


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


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_ckpt):
    """The tiny checkpoint exported to ONNX (function form), once per session."""
    return export_tiny_onnx(tmp_path_factory, tiny_ckpt)


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory):
    """The trained built-in ccnet-demo model exported to ONNX (function form), once per session."""
    from ccnet.demo import DEMO_CHECKPOINT

    if not os.path.exists(DEMO_CHECKPOINT):
        pytest.skip("ccnet-demo checkpoint missing (ccnet/weights)")
    return export_tiny_onnx(tmp_path_factory, "ccnet-demo", name="ccnet-demo.onnx")


@pytest.fixture(scope="session")
def demo_head_onnx(demo_onnx, tmp_path_factory):
    """ccnet-demo with the label head appended to its ONNX export, once per session."""
    return with_label_head(demo_onnx, str(tmp_path_factory.mktemp("head") / "ccnet-demo-head.onnx"))

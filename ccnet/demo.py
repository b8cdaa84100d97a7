"""The built-in ``ccnet-demo`` model: a small CCNet trained on our synthetic street scenes.

Torch-free: only the config (classes, palette, head widths, test scale) and the path of the
committed checkpoint, registered as a built-in so that ``load_model("ccnet-demo")`` and
``--model ccnet-demo`` work everywhere.  How the checkpoint was made: weights/TRAINING.md.
"""
from __future__ import annotations

import os

from .zoo import ModelConfig, custom_config, register_builtin

DEMO_NAME = "ccnet-demo"
DEMO_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                               "ccnet_demo_r18.pth")
# Label ids of ccnet.synthetic scenes (the generator imports them from here).
DEMO_CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")
# Cityscapes colours (RGB, as mmseg palettes).
DEMO_PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180),
                (0, 0, 142), (220, 20, 60), (153, 153, 153))


def demo_config() -> ModelConfig:
    """Depth-18 D8 CCNet at half width (mmseg base/stem_channels 32; keeps the checkpoint
    ≤ 15 MB), head channels 96 / aux 48, 8 synthetic classes, whole mode at 256×512."""
    return custom_config(DEMO_NAME, depth=18, num_classes=len(DEMO_CLASSES), channels=96,
                         aux_channels=48, base_channels=32, stem_channels=32,
                         dataset="synthetic", test_scale=(512, 256),
                         classes=DEMO_CLASSES, palette=DEMO_PALETTE)


register_builtin(demo_config(), DEMO_CHECKPOINT)

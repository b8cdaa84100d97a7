"""The model's state dict equals mmseg's (keys, order, shapes, dtypes) for every reference file,
and its forward pass has mmseg's structure (dilations, strides, output sizes)."""
from __future__ import annotations

import glob
import json
import math
import os

import pytest
import torch

from ccnet.checkpoint import build_model
from ccnet.zoo import ZOO, custom_config

KEYS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "reference", "mmseg_keys")
KEY_FILES = sorted(glob.glob(os.path.join(KEYS_DIR, "*.json")))


def test_reference_files_present():
    assert len(KEY_FILES) >= 5, f"mmseg_keys/*.json not found under {KEYS_DIR}"


@pytest.mark.parametrize("path", KEY_FILES, ids=[os.path.basename(p) for p in KEY_FILES])
def test_state_dict_matches_mmseg(path):
    with open(path) as f:
        ref = json.load(f)
    name = os.path.splitext(ref["config"])[0]
    assert name in ZOO
    model = build_model(name)
    ours = [(k, list(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in model.state_dict().items()]
    theirs = [(e["key"], list(e["shape"]), e["dtype"]) for e in ref["state_dict"]]
    assert len(ours) == ref["num_state_dict_entries"] == len(theirs)
    assert [k for k, _, _ in ours] == [k for k, _, _ in theirs]  # same order too
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == ref["num_parameters"]


def test_dilations_and_strides_r50():
    backbone = build_model("ccnet_r50-d8_4xb2-40k_cityscapes-512x1024").backbone
    # contract_dilation: block 0 of a dilated stage uses half the dilation (docs/mmseg-inference.md).
    for block, dilation in [(backbone.layer3[0], 1), (backbone.layer3[1], 2),
                            (backbone.layer4[0], 2), (backbone.layer4[1], 4)]:
        assert block.conv2.dilation == block.conv2.padding == (dilation, dilation)
    assert backbone.layer4[2].conv2.dilation == (4, 4)
    assert backbone.layer2[0].conv2.stride == (2, 2) and backbone.layer2[0].conv1.stride == (1, 1)
    assert backbone.layer2[0].downsample[0].stride == (2, 2)
    assert backbone.layer1[0].downsample is not None and backbone.layer3[0].downsample is not None
    for m in backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.eps == 1e-5 and m.momentum == 0.1


@pytest.mark.parametrize("h,w", [(64, 96), (97, 131), (33, 17)])
def test_forward_shapes(tiny_config, h, w):
    torch.manual_seed(0)
    model = build_model(tiny_config)
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        feats = model.backbone(x)
        logits = model(x)
        decode, aux = model.forward_train(x)
    h4, w4 = math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2)  # stem conv, maxpool
    hs, ws = math.ceil(h4 / 2), math.ceil(w4 / 2)  # layer2's stride
    assert [f.shape[2:] for f in feats] == [(h4, w4)] + [(hs, ws)] * 3
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]  # BasicBlock widths
    assert logits.shape == (2, tiny_config.num_classes, h, w)
    assert decode.shape == (2, tiny_config.num_classes, hs, ws)
    assert aux.shape == (2, tiny_config.num_classes, hs, ws)


def test_forward_equals_manual_encode_decode(tiny_config):
    """forward = decode head on layer4 (CCA applied `recurrence` times) → bilinear resize."""
    from helpers import randomize_model

    from ccnet.ops import criss_cross_reference

    cfg = custom_config("r18-rec3", depth=18, num_classes=5, channels=32, aux_channels=None,
                        recurrence=3, align_corners=True)
    model = randomize_model(build_model(cfg), seed=3)
    assert model.auxiliary_head is None
    x = torch.randn(1, 3, 45, 61)
    head = model.decode_head
    with torch.no_grad():
        feat = model.backbone(x)[3]
        out = head.convs[0](feat)
        for _ in range(3):
            cca = head.cca
            q, k, v = cca.query_conv(out), cca.key_conv(out), cca.value_conv(out)
            out = cca.gamma.scale * criss_cross_reference(q, k, v) + out
        out = head.convs[1](out)
        out = head.conv_seg(head.conv_cat(torch.cat([feat, out], 1)))
        expected = torch.nn.functional.interpolate(out, size=(45, 61), mode="bilinear",
                                                   align_corners=True)
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert head.cca.gamma.scale.dim() == 0

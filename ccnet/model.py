"""CCNet (mmseg EncoderDecoder) in plain PyTorch, state-dict compatible with mmseg's zoo.

Module names mirror mmseg/mmcv exactly (``backbone.stem.0``, ``decode_head.convs.0.conv``,
``decode_head.cca.gamma.scale`` ...) so checkpoints load with ``strict=True``; see
docs/mmseg-inference.md, "Model".
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops  # noqa: F401  (registers torch.ops.ccnet.criss_cross_attention)
from .meta import ModelMeta
from .zoo import RESNET_DEPTHS, ModelConfig

BN_EPS = 1e-5


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.1)


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """ResNet-18/34 block (mmseg: only conv1 is dilated, conv2 keeps padding 1)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = _bn(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet-50/101 block, style='pytorch': the stride sits on the 3×3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = _bn(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS = {block.expansion: block for block in (BasicBlock, Bottleneck)}


class ResNetV1c(nn.Module):
    """Deep-stem ResNet dilated to output stride 8 (strides 1,2,1,1; dilations 1,1,2,4)."""

    strides = (1, 2, 1, 1)
    dilations = (1, 1, 2, 4)

    def __init__(self, depth: int = 50, stem_channels: int = 64, base_channels: int = 64):
        super().__init__()
        expansion, num_blocks = RESNET_DEPTHS[depth]
        block = BLOCKS[expansion]
        half = stem_channels // 2
        self.stem = nn.Sequential(
            nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False), _bn(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, padding=1, bias=False), _bn(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, stem_channels, 3, padding=1, bias=False), _bn(stem_channels),
            nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem_channels
        for i, (n, stride, dilation) in enumerate(zip(num_blocks, self.strides, self.dilations)):
            planes = base_channels * 2 ** i
            self.add_module(f"layer{i + 1}",
                            self._make_layer(block, inplanes, planes, n, stride, dilation))
            inplanes = planes * block.expansion

    @staticmethod
    def _make_layer(block, inplanes, planes, num_blocks, stride, dilation) -> nn.Sequential:
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                _bn(planes * block.expansion))
        # contract_dilation: the first block of a dilated stage uses half the dilation.
        first_dilation = dilation // 2 if dilation > 1 else dilation
        layers = [block(inplanes, planes, stride, first_dilation, downsample)]
        layers += [block(planes * block.expansion, planes, 1, dilation)
                   for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.maxpool(self.stem(x))
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return outs


class ConvModule(nn.Sequential):
    """mmcv ConvModule (conv without bias → BN → ReLU) with keys ``conv.*``/``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = _bn(cout)
        self.activate = nn.ReLU(inplace=True)


class Scale(nn.Module):
    """mmcv Scale: a learnable 0-dim multiplier (``gamma.scale``)."""

    def __init__(self, scale: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class CrissCrossAttention(nn.Module):
    """mmcv CrissCrossAttention; its core runs as the custom op ``ccnet::criss_cross_attention``."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.query_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.key_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = Scale(0.0)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.ops.ccnet.criss_cross_attention(
            self.query_conv(x), self.key_conv(x), self.value_conv(x))
        return self.gamma(out) + x


class CCHead(nn.Module):
    """mmseg CCHead (FCNHead with num_convs=2 and a recurrent CCA between the convs)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, recurrence: int = 2,
                 dropout_ratio: float = 0.1):
        super().__init__()
        self.recurrence = recurrence
        # Registration order matches mmseg's state_dict order: conv_seg first.
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.convs = nn.Sequential(ConvModule(in_channels, channels),
                                   ConvModule(channels, channels))
        self.conv_cat = ConvModule(in_channels + channels, channels)
        self.cca = CrissCrossAttention(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.convs[0](x)
        for _ in range(self.recurrence):  # the same module (shared weights) each time
            out = self.cca(out)
        out = self.convs[1](out)
        out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.conv_seg(self.dropout(out))


class FCNHead(nn.Module):
    """mmseg FCNHead as used for the auxiliary head (num_convs=1, no concat); training only."""

    def __init__(self, in_channels: int, channels: int, num_classes: int,
                 dropout_ratio: float = 0.1):
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.convs = nn.Sequential(ConvModule(in_channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))


class CCNet(nn.Module):
    """mmseg EncoderDecoder: ResNetV1c → CCHead (+ auxiliary FCNHead, never run at inference).

    ``forward(x)`` is mmseg's ``encode_decode``: normalized N×3×H×W → N×C×H×W logits at the
    input resolution.  ``self.meta`` carries the inference metadata.
    """

    def __init__(self, config: ModelConfig, meta: Optional[ModelMeta] = None):
        super().__init__()
        self.config = config
        self.meta = meta if meta is not None else config.meta()
        self.backbone = ResNetV1c(config.depth, config.stem_channels, config.base_channels)
        self.decode_head = CCHead(config.in_channels, config.channels, config.num_classes,
                                  config.recurrence)
        if config.aux_channels:
            self.auxiliary_head = FCNHead(config.aux_in_channels, config.aux_channels,
                                          config.num_classes)
        else:
            self.auxiliary_head = None

    @property
    def align_corners(self) -> bool:
        return self.meta.align_corners

    def forward(self, x: Tensor) -> Tensor:
        logits = self.decode_head(self.backbone(x)[3])
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear",
                             align_corners=self.align_corners)

    def forward_train(self, x: Tensor):
        """(decode logits, auxiliary logits or None), both at 1/8 resolution."""
        feats = self.backbone(x)
        aux = self.auxiliary_head(feats[2]) if self.auxiliary_head is not None else None
        return self.decode_head(feats[3]), aux

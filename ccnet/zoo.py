"""The mmseg CCNet model zoo (16 configs) and custom configs.  Torch-free.

Every row carries what inference needs (docs/mmseg-inference.md, "Model zoo"): dataset,
classes/palette, align_corners, test scale, whole/slide window, published mIoU.  Built-in models
(weights shipped with the package) register themselves with :func:`register_builtin`.
"""
from __future__ import annotations

import difflib
import functools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .errors import CCNetError
from .meta import LIMITS, ModelMeta, check_int, check_str

ZOO_URL_ROOT = "https://download.openmmlab.com/mmsegmentation/v0.5/ccnet"

# ResNetV1c depths: (block expansion, blocks per stage).  Expansion 1 is the basic block of
# ResNet-18/34, 4 the bottleneck of ResNet-50/101.
RESNET_DEPTHS: Dict[int, Tuple[int, Tuple[int, int, int, int]]] = {
    18: (1, (2, 2, 2, 2)), 34: (1, (3, 4, 6, 3)), 50: (4, (3, 4, 6, 3)), 101: (4, (3, 4, 23, 3))}


@functools.lru_cache(maxsize=None)
def dataset_info() -> Dict[str, dict]:
    """Class names, palette and reduce_zero_label per dataset (mmseg METAINFO)."""
    with open(os.path.join(os.path.dirname(__file__), "data", "datasets.json")) as f:
        return json.load(f)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture + inference settings of one CCNet.

    ``channels``/``aux_channels`` are the decode/auxiliary head widths; ``aux_channels=None``
    means the checkpoint has no auxiliary head.
    """

    name: str
    depth: int = 50
    num_classes: int = 19
    channels: int = 512
    aux_channels: Optional[int] = 256
    recurrence: int = 2
    base_channels: int = 64  # mmseg ResNet base_channels / stem_channels (zoo: 64)
    stem_channels: int = 64
    dataset: str = "cityscapes"
    align_corners: bool = False
    test_scale: Tuple[int, int] = (2048, 1024)
    mode: str = "whole"
    crop_size: Optional[Tuple[int, int]] = None
    stride: Optional[Tuple[int, int]] = None
    classes: Optional[Tuple[str, ...]] = None  # None: the dataset's classes
    palette: Optional[Tuple[Tuple[int, int, int], ...]] = None
    url: Optional[str] = None
    alias: Optional[str] = None  # the other (0.x / 1.x) zoo name
    miou: Optional[float] = None
    miou_ms_flip: Optional[float] = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def expansion(self) -> int:
        return RESNET_DEPTHS[self.depth][0]

    @property
    def in_channels(self) -> int:
        """Channels of the last backbone stage (decode head input)."""
        return self.base_channels * 8 * self.expansion

    @property
    def aux_in_channels(self) -> int:
        """Channels of the third backbone stage (auxiliary head input)."""
        return self.base_channels * 4 * self.expansion

    def meta(self) -> ModelMeta:
        info = dataset_info().get(self.dataset)
        classes = self.classes
        palette = self.palette
        if classes is None:
            if info is None or len(info["classes"]) != self.num_classes:
                classes = tuple(f"class{i}" for i in range(self.num_classes))
            else:
                classes = tuple(info["classes"])
        if palette is None:
            if info is not None and len(info["palette"]) == len(classes):
                palette = info["palette"]
            else:
                palette = default_palette(len(classes))
        return ModelMeta(
            name=self.name, dataset=self.dataset, classes=classes, palette=palette,
            test_scale=self.test_scale, mode=self.mode, crop_size=self.crop_size,
            stride=self.stride, align_corners=self.align_corners,
            reduce_zero_label=bool(info and info["reduce_zero_label"]))


def default_palette(n: int):
    """A deterministic palette for custom class counts (golden-ratio hue walk)."""
    import colorsys

    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


# (family, depth, schedule) -> (checkpoint suffix, mIoU, ms+flip mIoU), from mmseg's model zoo.
_ZOO_ROWS = [
    ("cityscapes-512x1024", 50, "40k", "20200616_142517-4123f401", 77.76, 78.87),
    ("cityscapes-512x1024", 101, "40k", "20200616_142540-a3b84ba6", 76.35, 78.19),
    ("cityscapes-769x769", 50, "40k", "20200616_145125-76d11884", 78.46, 79.93),
    ("cityscapes-769x769", 101, "40k", "20200617_101428-4f57c8d0", 76.94, 78.62),
    ("cityscapes-512x1024", 50, "80k", "20200617_010421-869a3423", 79.03, 80.16),
    ("cityscapes-512x1024", 101, "80k", "20200617_203935-ffae8917", 78.87, 79.90),
    ("cityscapes-769x769", 50, "80k", "20200617_010421-73eed8ca", 79.29, 81.08),
    ("cityscapes-769x769", 101, "80k", "20200618_011502-ad3cd481", 79.45, 80.66),
    ("ade20k-512x512", 50, "80k", "20200615_014848-aa37f61e", 41.78, 42.98),
    ("ade20k-512x512", 101, "80k", "20200615_014848-1f4929a3", 43.97, 45.13),
    ("ade20k-512x512", 50, "160k", "20200616_084435-7c97193b", 42.08, 43.13),
    ("ade20k-512x512", 101, "160k", "20200616_000644-e849e007", 43.71, 45.04),
    ("voc12aug-512x512", 50, "20k", "20200617_193212-fad81784", 76.17, 77.51),
    ("voc12aug-512x512", 101, "20k", "20200617_193212-0007b61d", 77.27, 79.02),
    ("voc12aug-512x512", 50, "40k", "20200613_232127-c2a15f02", 75.96, 77.04),
    ("voc12aug-512x512", 101, "40k", "20200613_232127-c30da577", 77.87, 78.90),
]

# family -> dataset, num_classes, align_corners, test scale, mode, crop, stride, 0.x crop tag
_FAMILIES = {
    "cityscapes-512x1024": ("cityscapes", 19, False, (2048, 1024), "whole", None, None, "512x1024"),
    "cityscapes-769x769": ("cityscapes", 19, True, (2049, 1025), "slide", (769, 769), (513, 513),
                           "769x769"),
    "ade20k-512x512": ("ade20k", 150, False, (2048, 512), "whole", None, None, "512x512"),
    "voc12aug-512x512": ("voc", 21, False, (2048, 512), "whole", None, None, "512x512"),
}


def _build_zoo() -> Dict[str, ModelConfig]:
    zoo = {}
    for family, depth, sched, suffix, miou, miou_ms in _ZOO_ROWS:
        dataset, ncls, ac, scale, mode, crop, stride, crop_tag = _FAMILIES[family]
        ds_tag, _ = family.split("-")
        gpus = "4xb2" if dataset == "cityscapes" else "4xb4"
        name_1x = f"ccnet_r{depth}-d8_{gpus}-{sched}_{ds_tag}-{crop_tag}"
        name_0x = f"ccnet_r{depth}-d8_{crop_tag}_{sched}_{ds_tag}"
        url = f"{ZOO_URL_ROOT}/{name_0x}/{name_0x}_{suffix}.pth"
        common = dict(depth=depth, num_classes=ncls, dataset=dataset, align_corners=ac,
                      test_scale=scale, mode=mode, crop_size=crop, stride=stride, url=url,
                      miou=miou, miou_ms_flip=miou_ms)
        zoo[name_1x] = ModelConfig(name=name_1x, alias=name_0x, **common)
        zoo[name_0x] = ModelConfig(name=name_0x, alias=name_1x, **common)
    return zoo


ZOO: Dict[str, ModelConfig] = _build_zoo()


def zoo_rows() -> List[dict]:
    """One dict per zoo config (16, by 1.x name, in mmseg's table order): name, alias (0.x
    name), dataset, crop, schedule, depth, miou, miou_ms_flip (published, percent), test_scale,
    mode, url, file (the download's file name)."""
    rows = []
    for name, config in ZOO.items():
        if "4xb" not in name:
            continue
        crop, schedule = re.search(r"_(\d+x\d+)_(\d+k)_", config.alias).groups()
        rows.append({
            "name": name, "alias": config.alias, "dataset": config.dataset, "crop": crop,
            "schedule": schedule, "depth": config.depth, "miou": config.miou,
            "miou_ms_flip": config.miou_ms_flip, "test_scale": list(config.test_scale),
            "mode": config.mode, "url": config.url,
            "file": config.url.rsplit("/", 1)[-1]})
    return rows


def checkpoint_dir() -> str:
    """Where downloaded zoo checkpoints live (and where a file downloaded by hand makes its name
    resolve offline): PyTorch's hub cache ``<hub dir>/checkpoints``.  Without PyTorch imported,
    the folder PyTorch would use: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else
    ~/.cache/torch/hub."""
    import sys

    if "torch" in sys.modules:  # respects torch.hub.set_dir()
        return os.path.join(sys.modules["torch"].hub.get_dir(), "checkpoints")
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    torch_home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))
    return os.path.join(torch_home, "hub", "checkpoints")
# Built-in models shipped with this package: name -> (config, checkpoint path).
BUILTIN: Dict[str, Tuple[ModelConfig, str]] = {}


def register_builtin(config: ModelConfig, checkpoint: str) -> None:
    """Make ``config.name`` resolve everywhere a model name is accepted (``load_model``,
    ``--model``), with the weights at ``checkpoint``.  Called where the model is defined."""
    BUILTIN[config.name] = (config, checkpoint)


def zoo_names(include_0x: bool = True):
    """The 16 zoo rows by their 1.x name (plus the 0.x aliases if ``include_0x``)."""
    return sorted(n for n, c in ZOO.items() if include_0x or "4xb" in n)


def get_config(name: str) -> ModelConfig:
    """Look up a zoo or built-in name; unknown names raise with the closest suggestion."""
    if name in ZOO:
        return ZOO[name]
    if name in BUILTIN:
        return BUILTIN[name][0]
    candidates = list(ZOO) + list(BUILTIN)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise CCNetError(f"unknown model name {name!r}{hint} (ccnet.zoo.zoo_names() lists all)")


def custom_config(name: str = "custom", *, depth: int = 50, num_classes: int = 19,
                  channels: int = 512, aux_channels: Optional[int] = 256, recurrence: int = 2,
                  dataset: str = "custom", **kwargs) -> ModelConfig:
    """A config for a user-trained CCNet (other depth, class count, head width, recurrence)."""
    return validate_config(ModelConfig(
        name=name, depth=depth, num_classes=num_classes, channels=channels,
        aux_channels=aux_channels, recurrence=recurrence, dataset=dataset, **kwargs))


def validate_config(config: ModelConfig) -> ModelConfig:
    """Check a config's architecture against sane values and :data:`ccnet.meta.LIMITS` (and
    its inference settings through :class:`ModelMeta`) before anything is built from it.

    Configs come from checkpoint metadata and tensor shapes, i.e. from downloaded files, so a
    class count or width that would allocate gigabytes, or a recurrence that would run for
    hours, is refused here with a one-line error."""
    check_str("config name", config.name)
    check_str("dataset", config.dataset)
    if not (type(config.depth) is int and config.depth in RESNET_DEPTHS):
        raise CCNetError(f"unsupported ResNet depth {config.depth!r}: use one of "
                         f"{', '.join(map(str, RESNET_DEPTHS))}")
    check_int("num_classes", config.num_classes, 1, LIMITS.max_classes,
              LIMITS.hint("max_classes"))
    # The attention's query/key convs have channels // 8 outputs.
    check_int("channels", config.channels, 8, LIMITS.max_channels, LIMITS.hint("max_channels"))
    if config.aux_channels is not None:
        check_int("aux_channels", config.aux_channels, 1, LIMITS.max_channels,
                  LIMITS.hint("max_channels"))
    check_int("recurrence", config.recurrence, 1, LIMITS.max_recurrence,
              "0 would be a CCNet without attention; " + LIMITS.hint("max_recurrence"))
    check_int("stem_channels", config.stem_channels, 2, LIMITS.max_channels,
              LIMITS.hint("max_channels"))
    check_int("base_channels", config.base_channels, 1, LIMITS.max_channels,
              LIMITS.hint("max_channels"))
    if config.in_channels > LIMITS.max_channels:
        raise CCNetError(f"base_channels {config.base_channels} gives {config.in_channels} "
                         f"channels in the last stage ({LIMITS.hint('max_channels')})")
    if config.classes is not None and (not isinstance(config.classes, (list, tuple)) or len(
            config.classes) != config.num_classes):
        raise CCNetError(f"config {config.name!r}: classes must be a list of "
                         f"num_classes={config.num_classes} names")
    config.meta()  # classes, palette, scale, mode, window: the one ModelMeta validation
    return config

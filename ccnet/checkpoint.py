"""Load and write CCNet checkpoints in mmseg's layout, without mmseg or mmcv.

Accepted: a zoo name (1.x or 0.x), a built-in name (``ccnet-demo``), a URL, or a local file
holding ``{'meta': ..., 'state_dict': ...}`` (mmseg 0.x/1.x), a bare state_dict, with or
without ``module.`` prefixes.  Loading is strict; every mismatch is a one-line CCNetError.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple, Union
from urllib.parse import urlparse

import torch

from .errors import CCNetError, first_line
from .files import atomic_output
from .meta import ModelMeta
from .model import CCNet
from .zoo import (BUILTIN, RESNET_DEPTHS, ZOO, ModelConfig, checkpoint_dir, custom_config,
                  get_config)

ConfigLike = Union[None, str, ModelConfig]


def build_model(config: ConfigLike, meta: Optional[ModelMeta] = None) -> CCNet:
    """A CCNet with fresh weights for a config (name or ModelConfig), in eval mode."""
    if isinstance(config, str):
        config = get_config(config)
    return CCNet(config, meta).eval()


# ----------------------------------------------------------------------------- reading files
def _download(url: str) -> str:
    """Download into the torch hub cache with the file name's hash-prefix check."""
    filename = os.path.basename(urlparse(url).path)
    cache_dir = checkpoint_dir()
    path = os.path.join(cache_dir, filename)
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    match = re.search(r"-([a-f0-9]+)\.", filename)
    try:
        torch.hub.download_url_to_file(url, path, hash_prefix=match.group(1) if match else None,
                                       progress=True)
    except RuntimeError as e:  # hash mismatch
        raise CCNetError(f"download of {url} failed its hash check ({e}); delete {path} "
                         "and retry") from e
    except Exception as e:  # network errors of any kind
        raise CCNetError(f"cannot download {url} ({type(e).__name__}: {e}); download it by "
                         "hand and pass the local file with --ckpt") from e
    return path


def read_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """(state_dict without ``module.`` prefixes, meta dict) of a checkpoint file."""
    if not os.path.exists(path):
        raise CCNetError(f"checkpoint not found: {path} (give a file, URL or zoo name)")
    if os.path.isdir(path):
        raise CCNetError(f"{path} is a folder; give the checkpoint (.pth) file")
    with open(path, "rb") as f:
        head = f.read(2)
    # torch.save writes a zip archive ("PK") or, in the legacy format, a pickle (0x80 protocol).
    if not (head == b"PK" or head[:1] == b"\x80"):
        raise CCNetError(f"{path} is not a PyTorch checkpoint (expected a .pth file written by "
                         "torch.save, e.g. an mmseg checkpoint)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises a variety of types for damaged files
        text = first_line(e, limit=1000)
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # torch's message has terminal bold codes
        glob_name = re.search(r"Unsupported global: (GLOBAL )?(\S+)", str(e))
        # torch's own rebuild functions are allowed: refusing one means the pickle is cut short.
        if glob_name and not glob_name.group(2).startswith("torch."):
            what = glob_name.group(2)
            raise CCNetError(f"{path} contains objects a safe load refuses ({what}); re-save it "
                             "as {'state_dict': ..., 'meta': ...} of plain types") from e
        # The header is a torch file's, so a failing load means a damaged/incomplete file.
        raise CCNetError(f"{path} is truncated or corrupt ({text[:100]}): download or save it "
                         "again") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        state, meta = obj["state_dict"], obj.get("meta") or {}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = obj, {}
    else:
        raise CCNetError(f"{path} holds no state_dict: expected an mmseg checkpoint "
                         "({'meta', 'state_dict'}) or a bare state_dict")
    state = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v)
                        for k, v in state.items())
    return state, meta if isinstance(meta, dict) else {}


# ----------------------------------------------------------------------------- inferring configs
def _count_blocks(state: Dict[str, torch.Tensor], layer: int) -> int:
    ids = {int(m.group(1)) for k in state
           for m in [re.match(rf"backbone\.layer{layer}\.(\d+)\.", k)] if m}
    return max(ids) + 1 if ids else 0


def infer_config(state: Dict[str, torch.Tensor], meta: dict, name: str) -> ModelConfig:
    """Depth, classes, head widths and recurrence from the tensors (and mmseg meta if any)."""
    try:
        num_classes = state["decode_head.conv_seg.weight"].shape[0]
        channels = state["decode_head.convs.0.conv.weight"].shape[0]
    except KeyError as e:
        raise CCNetError(f"checkpoint has no {e.args[0]!r}: not a CCNet (mmseg CCHead) "
                         "checkpoint") from e
    bottleneck = any(".conv3.weight" in k for k in state if k.startswith("backbone.layer1."))
    blocks = tuple(_count_blocks(state, i) for i in range(1, 5))
    depth = next((d for d, (expansion, nb) in RESNET_DEPTHS.items()
                  if nb == blocks and (expansion == 4) == bottleneck), None)
    if depth is None:
        raise CCNetError(f"backbone with blocks {blocks} ({'bottleneck' if bottleneck else 'basic'}"
                         ") is not a ResNet-18/34/50/101: pass --config")
    aux = state.get("auxiliary_head.convs.0.conv.weight")
    widths = {}
    if "backbone.stem.6.weight" in state and "backbone.layer1.0.conv1.weight" in state:
        widths = dict(stem_channels=state["backbone.stem.6.weight"].shape[0],
                      base_channels=state["backbone.layer1.0.conv1.weight"].shape[0])
    cfg_text = str(meta.get("config", ""))
    rec = re.search(r"recurrence\s*=\s*(\d+)", cfg_text)
    ac = re.search(r"align_corners\s*=\s*(True|False)", cfg_text)
    classes, palette = _meta_classes(meta, num_classes)
    return custom_config(
        name, depth=depth, num_classes=num_classes, channels=channels,
        aux_channels=aux.shape[0] if aux is not None else None,
        recurrence=int(rec.group(1)) if rec else 2,
        align_corners=ac is not None and ac.group(1) == "True",
        classes=classes, palette=palette, **widths)


def _meta_classes(meta: dict, num_classes: int):
    """Class names/palette from mmseg meta (1.x ``dataset_meta`` or 0.x ``CLASSES``)."""
    ds = meta.get("dataset_meta") or {}
    classes = ds.get("classes") or meta.get("CLASSES")
    palette = ds.get("palette") or meta.get("PALETTE")
    if classes is None or len(classes) != num_classes:
        return None, None
    if palette is None or len(palette) != num_classes:
        palette = None
    return tuple(classes), (tuple(tuple(p) for p in palette) if palette else None)


# ----------------------------------------------------------------------------- strict loading
def load_state_strict(model: CCNet, state: Dict[str, torch.Tensor], config_name: str) -> None:
    """``load_state_dict(strict=True)`` with one-line reports of key and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        raise CCNetError(f"checkpoint keys do not match config {config_name!r}: "
                         f"{'; '.join(parts)}; pass the right --config or omit it to infer one")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CCNetError(f"shape mismatch for {k!r} under config {config_name!r}: expected "
                             f"{tuple(v.shape)}, found {tuple(state[k].shape)}; pass the right "
                             "--config or omit it to infer one")
    model.load_state_dict(state, strict=True)


def resolve_checkpoint(ckpt: str) -> Tuple[str, Optional[ModelConfig]]:
    """(local path, zoo/built-in config or None) for a name, URL or path."""
    if ckpt in BUILTIN:
        config, path = BUILTIN[ckpt]
        return path, config
    if ckpt in ZOO:
        return _download(ZOO[ckpt].url), ZOO[ckpt]
    if re.match(r"^(https?|ftp)://", ckpt):
        zoo_hit = next((c for c in ZOO.values() if c.url == ckpt), None)
        return _download(ckpt), zoo_hit
    if os.path.exists(ckpt):
        return ckpt, None
    if not any(sep in ckpt for sep in ("/", os.sep)) and not ckpt.endswith((".pth", ".pt")):
        get_config(ckpt)  # raises "unknown model name ... did you mean"
    raise CCNetError(f"checkpoint not found: {ckpt} (give a file, URL or zoo name)")


def load_model(ckpt: str, config: ConfigLike = None, device: str = "cpu") -> CCNet:
    """Load a CCNet from a zoo name, built-in name, URL or checkpoint file (strict).

    ``config`` (a zoo name or ModelConfig) overrides the architecture; without it a zoo name
    uses its row and a plain file is inferred from its tensors and mmseg meta.  Returns the
    model in eval mode with ``model.meta`` (classes, palette, mean/std, scale, mode, window).
    """
    path, known = resolve_checkpoint(ckpt)
    state, meta = read_checkpoint(path)
    if isinstance(config, str):
        config = get_config(config)
    if config is None:
        config = known or config_from_meta(meta) or infer_config(state, meta,
                                                                 _name_from_path(path))
    model = CCNet(config)
    load_state_strict(model, state, config.name)
    return model.to(device).eval()


def _name_from_path(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


# ----------------------------------------------------------------------------- writing files
def save_checkpoint(model: CCNet, path: str, extra_meta: Optional[dict] = None) -> None:
    """Write ``{'meta', 'state_dict'}`` as mmseg does (atomically: no partial file)."""
    meta = {
        "mmseg_version": "1.2.2",
        "CLASSES": tuple(model.meta.classes),
        "PALETTE": [list(p) for p in model.meta.palette],
        "dataset_meta": {"classes": tuple(model.meta.classes),
                         "palette": [list(p) for p in model.meta.palette]},
        "config": _config_text(model.config),
        # Our own exact config, so custom models round-trip with their scale/mode/classes.
        "ccnet_config": config_to_dict(model.config),
        **(extra_meta or {}),
    }
    state = OrderedDict((k, v.detach().cpu()) for k, v in model.state_dict().items())
    with atomic_output(path) as tmp:
        torch.save({"meta": meta, "state_dict": state}, tmp)


def config_to_dict(cfg: ModelConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d.pop("extra", None)
    return d


def config_from_meta(meta: dict) -> Optional[ModelConfig]:
    """The ModelConfig our own save_checkpoint stored, if any."""
    d = meta.get("ccnet_config")
    if not isinstance(d, dict):
        return None
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    d = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list)
             else v) for k, v in d.items() if k in names}
    return ModelConfig(**d)


def _config_text(cfg: ModelConfig) -> str:
    """A minimal mmseg-style config text, enough for ``infer_config`` to read back."""
    return (f"model = dict(type='EncoderDecoder', backbone=dict(type='ResNetV1c', "
            f"depth={cfg.depth}, stem_channels={cfg.stem_channels}, "
            f"base_channels={cfg.base_channels}), decode_head=dict(type='CCHead', channels={cfg.channels}, "
            f"recurrence={cfg.recurrence}, num_classes={cfg.num_classes}, "
            f"align_corners={cfg.align_corners}))")

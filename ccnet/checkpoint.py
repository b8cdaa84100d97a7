"""Load and write CCNet checkpoints in mmseg's layout, without mmseg or mmcv.

Accepted: a zoo name (1.x or 0.x), a built-in name (``ccnet-demo``), a URL, or a local file
holding ``{'meta': ..., 'state_dict': ...}`` (mmseg 0.x/1.x), a bare state_dict, with or
without ``module.`` prefixes.  Loading is strict; every mismatch is a one-line CCNetError.
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections import OrderedDict
from typing import Dict, Optional, Tuple, Union
from urllib.parse import urlparse

import torch

from .errors import CCNetError, first_line
from .files import atomic_output, require_file
from .meta import ModelMeta
from .model import CCNet
from .zoo import (BUILTIN, RESNET_DEPTHS, ZOO, ModelConfig, checkpoint_dir, custom_config,
                  get_config, validate_config)

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
    """(state_dict without ``module.`` prefixes, meta dict) of a checkpoint file.

    Loaded with ``weights_only=True`` (no pickled code runs); every tensor is checked to be a
    plain dense CPU-loadable tensor under a string key before anything uses it."""
    if not os.path.exists(path):
        raise CCNetError(f"checkpoint not found: {path} (give a file, URL or zoo name)")
    require_file(path, "checkpoint")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as e:
        raise CCNetError(f"cannot read checkpoint {path}: {e.strerror}") from None
    # torch.save writes a zip archive ("PK") or, in the legacy format, a pickle (0x80 protocol).
    if not (head == b"PK" or head[:1] == b"\x80"):
        raise CCNetError(f"{path} is not a PyTorch checkpoint (expected a .pth file written by "
                         "torch.save, e.g. an mmseg checkpoint)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises a variety of types for damaged files
        raise _load_error(path, e) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state, meta = obj["state_dict"], obj.get("meta") or {}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = obj, {}
    else:
        raise CCNetError(f"{path} holds no state_dict: expected an mmseg checkpoint "
                         "({'meta', 'state_dict'}) or a bare state_dict")
    return check_state_dict(state, path), meta if isinstance(meta, dict) else {}


def _load_error(path: str, error: Exception) -> CCNetError:
    """A one-line error for a failed ``torch.load``: refused as unsafe, or damaged."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch's message has terminal bold codes
    # torch puts its unpickler's reason after "WeightsUnpickler error:", on the same or a
    # later line.
    tail = text.partition("WeightsUnpickler error:")[2]
    detail = next((ln.strip() for ln in tail.splitlines() if ln.strip()), "") or \
        first_line(error, 1000)
    name = re.search(r"GLOBAL (\S+)", text)
    # The safe unpickler refuses: a global (a function or class to call), or an opcode or
    # object it does not allow.  A global cut short by truncation names no real torch object.
    refused = "Weights only load failed" in text or "WeightsUnpickler" in text
    if refused and not (name and _is_truncated_torch_name(name.group(1))):
        what = name.group(1) if name else detail
        return CCNetError(f"{path} was refused as unsafe: it holds objects a safe load does not "
                          f"run ({what[:100]}); load only checkpoints from sources you trust, "
                          "saved as {'state_dict': ..., 'meta': ...} of plain types")
    # The header is a torch file's, so any other failing load means a damaged/incomplete file.
    return CCNetError(f"{path} is truncated or corrupt ({first_line(error, 100)}): download or "
                      "save it again")


def _is_truncated_torch_name(name: str) -> bool:
    """True for a ``torch.*`` dotted name that is not a real object: the tail of a GLOBAL
    opcode lost to truncation.  Only already-imported modules are looked at (importing a
    module named by an untrusted file would run its code)."""
    if not name.startswith("torch."):
        return False
    module, _, attr = name.rpartition(".")
    loaded = sys.modules.get(module)
    return loaded is None or not hasattr(loaded, attr)


def check_state_dict(state: dict, path: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """The state dict with ``module.`` prefixes removed, after checking every entry is a dense
    real-valued tensor with data under a string key (one-line errors otherwise)."""
    out: Dict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        if not isinstance(key, str):
            raise CCNetError(f"{path}: state_dict key {key!r} is a {type(key).__name__}, not a "
                             "parameter name; not a PyTorch model checkpoint")
        problem = _tensor_problem(value)
        if problem:
            raise CCNetError(f"{path}: state_dict entry {key!r} is {problem}; save the model's "
                             "plain state_dict() (dense float tensors)")
        name = key[len("module."):] if key.startswith("module.") else key
        if name in out:
            raise CCNetError(f"{path}: state_dict has {name!r} twice (with and without the "
                             "'module.' prefix)")
        out[name] = value
    return out


def _tensor_problem(value) -> Optional[str]:
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}, not a tensor"
    if value.layout != torch.strided:
        return f"a {value.layout} (sparse) tensor"
    if value.is_quantized:
        return f"a quantized tensor ({value.dtype})"
    if value.is_meta:
        return "a meta tensor without data"
    if value.is_complex() or value.dtype == torch.bool:
        return f"a {value.dtype} tensor"
    return None


# ----------------------------------------------------------------------------- inferring configs
def _count_blocks(state: Dict[str, torch.Tensor], layer: int) -> int:
    ids = {int(m.group(1)) for k in state
           for m in [re.match(rf"backbone\.layer{layer}\.(\d+)\.", k)] if m}
    return max(ids) + 1 if ids else 0


def infer_config(state: Dict[str, torch.Tensor], meta: dict, name: str) -> ModelConfig:
    """Depth, classes, head widths and recurrence from the tensors (and mmseg meta if any)."""
    num_classes = _out_channels(state, "decode_head.conv_seg.weight", required=True)
    channels = _out_channels(state, "decode_head.convs.0.conv.weight", required=True)
    bottleneck = any(".conv3.weight" in k for k in state if k.startswith("backbone.layer1."))
    blocks = tuple(_count_blocks(state, i) for i in range(1, 5))
    depth = next((d for d, (expansion, nb) in RESNET_DEPTHS.items()
                  if nb == blocks and (expansion == 4) == bottleneck), None)
    if depth is None:
        raise CCNetError(f"backbone with blocks {blocks} ({'bottleneck' if bottleneck else 'basic'}"
                         ") is not a ResNet-18/34/50/101: pass --config")
    aux = _out_channels(state, "auxiliary_head.convs.0.conv.weight")
    widths = {}
    if "backbone.stem.6.weight" in state and "backbone.layer1.0.conv1.weight" in state:
        widths = dict(stem_channels=_out_channels(state, "backbone.stem.6.weight"),
                      base_channels=_out_channels(state, "backbone.layer1.0.conv1.weight"))
    cfg_text = meta.get("config", "")
    cfg_text = cfg_text if isinstance(cfg_text, str) else ""
    rec = re.search(r"recurrence\s*=\s*(\d+)", cfg_text)
    ac = re.search(r"align_corners\s*=\s*(True|False)", cfg_text)
    classes, palette = _meta_classes(meta, num_classes)
    return custom_config(
        name, depth=depth, num_classes=num_classes, channels=channels,
        aux_channels=aux,
        recurrence=int(rec.group(1)) if rec else 2,
        align_corners=ac is not None and ac.group(1) == "True",
        classes=classes, palette=palette, **widths)


def _out_channels(state: Dict[str, torch.Tensor], key: str, required: bool = False):
    """Output channels of a conv weight (N×C×kh×kw), or None when absent and not required."""
    if key not in state:
        if required:
            raise CCNetError(f"checkpoint has no {key!r}: not a CCNet (mmseg CCHead) checkpoint")
        return None
    shape = tuple(state[key].shape)
    if len(shape) != 4:
        raise CCNetError(f"checkpoint tensor {key!r} has shape {shape}, not that of a conv "
                         "weight (out, in, kh, kw): not a CCNet checkpoint")
    return shape[0]


def _meta_classes(meta: dict, num_classes: int):
    """Class names/palette from mmseg meta (1.x ``dataset_meta`` or 0.x ``CLASSES``)."""
    ds = meta.get("dataset_meta")
    ds = ds if isinstance(ds, dict) else {}
    classes = ds.get("classes") or meta.get("CLASSES")
    palette = ds.get("palette") or meta.get("PALETTE")
    if classes is not None and (not isinstance(classes, (list, tuple))
                                or not all(isinstance(c, str) for c in classes)):
        raise CCNetError(f"checkpoint meta's class names are not a list of strings "
                         f"({type(classes).__name__}): fix or drop meta['CLASSES'] / "
                         "meta['dataset_meta']['classes']")
    if classes is None or len(classes) != num_classes:
        return None, None
    if not isinstance(palette, (list, tuple)):
        palette = None
    if palette is None or len(palette) != num_classes:
        palette = None
    # Entries are checked by ModelMeta (RGB triples of 0..255).
    return tuple(classes), (tuple(tuple(p) if isinstance(p, (list, tuple)) else p
                                  for p in palette) if palette else None)


# ----------------------------------------------------------------------------- strict loading
def expected_shapes(config: ModelConfig) -> Dict[str, Tuple[int, ...]]:
    """name -> shape of every state_dict entry of a CCNet for ``config``, from a model on the
    meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in CCNet(config).state_dict().items()}


def check_state_shapes(state: Dict[str, torch.Tensor], config: ModelConfig) -> None:
    """One-line reports of key and shape mismatches, before any model is built (a tensor may
    claim any shape, e.g. a stride-0 expanded one; nothing is allocated from it here)."""
    expected = expected_shapes(config)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        raise CCNetError(f"checkpoint keys do not match config {config.name!r}: "
                         f"{'; '.join(parts)}; pass the right --config or omit it to infer one")
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise CCNetError(f"shape mismatch for {k!r} under config {config.name!r}: expected "
                             f"{shape}, found {tuple(state[k].shape)}; pass the right "
                             "--config or omit it to infer one")


def check_finite(model: CCNet, path: str = "checkpoint") -> None:
    """Refuse NaN/Inf weights and negative BatchNorm running variances: such a model returns
    NaN logits, whose argmax is silently class 0 everywhere."""
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise CCNetError(f"{path} has {bad} NaN/Inf value(s) in {name!r}: the weights are "
                             "broken (a diverged training run or a damaged file); pass "
                             "--allow-nonfinite to load it anyway")
        if name.endswith("running_var") and bool((tensor < 0).any()):
            raise CCNetError(f"{path} has negative BatchNorm variances in {name!r}: the weights "
                             "are broken; pass --allow-nonfinite to load it anyway")


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


def load_model(ckpt: str, config: ConfigLike = None, device: str = "cpu",
               allow_nonfinite: bool = False) -> CCNet:
    """Load a CCNet from a zoo name, built-in name, URL or checkpoint file (strict).

    ``config`` (a zoo name or ModelConfig) overrides the architecture; without it a zoo name
    uses its row and a plain file is inferred from its tensors and mmseg meta.  The config is
    validated (``validate_config``: resource limits) and every tensor shape compared before a
    model is built; NaN/Inf weights are refused unless ``allow_nonfinite``.  Returns the model
    in eval mode with ``model.meta`` (classes, palette, mean/std, scale, mode, window).
    """
    path, known = resolve_checkpoint(ckpt)
    state, meta = read_checkpoint(path)
    if isinstance(config, str):
        config = get_config(config)
    if config is None:
        config = known or config_from_meta(meta) or infer_config(state, meta,
                                                                 _name_from_path(path))
    validate_config(config)
    check_state_shapes(state, config)
    model = CCNet(config)
    model.load_state_dict(state, strict=True)
    if not allow_nonfinite:
        check_finite(model, path)
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
    if not isinstance(d.get("name"), str):
        raise CCNetError("checkpoint meta 'ccnet_config' has no name: drop meta['ccnet_config'] "
                         "to infer the architecture from the tensors")
    names = {f.name for f in dataclasses.fields(ModelConfig)} - {"extra"}
    d = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list)
             else v) for k, v in d.items() if k in names}
    return validate_config(ModelConfig(**d))


def _config_text(cfg: ModelConfig) -> str:
    """A minimal mmseg-style config text, enough for ``infer_config`` to read back."""
    return (f"model = dict(type='EncoderDecoder', backbone=dict(type='ResNetV1c', "
            f"depth={cfg.depth}, stem_channels={cfg.stem_channels}, "
            f"base_channels={cfg.base_channels}), decode_head=dict(type='CCHead', channels={cfg.channels}, "
            f"recurrence={cfg.recurrence}, num_classes={cfg.num_classes}, "
            f"align_corners={cfg.align_corners}))")

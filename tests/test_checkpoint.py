"""Checkpoint round trips in mmseg's layout, config inference, and every bad-checkpoint error."""
from __future__ import annotations

import os
from collections import OrderedDict

import pytest
import torch

from ccnet import CCNetError
from ccnet.checkpoint import build_model, load_model, read_checkpoint, save_checkpoint
from ccnet.zoo import ZOO, custom_config, get_config

from helpers import make_checkpoint, randomize_model


def assert_same_state(model, reference):
    ours, theirs = model.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


def test_round_trip_strict(tmp_path, tiny_config, tiny_ckpt):
    reference = make_checkpoint(tmp_path / "a.pth", tiny_config, seed=1)
    raw = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    assert set(raw) == {"meta", "state_dict"}  # mmseg layout
    assert list(raw["state_dict"]) == list(reference.state_dict())
    model = load_model(tiny_ckpt)
    assert not model.training
    assert_same_state(model, reference)
    assert model.meta == reference.meta  # scale, classes, palette ... survive
    assert model.config.recurrence == tiny_config.recurrence


def _variant(tmp_path, tiny_ckpt, name, transform):
    raw = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    path = tmp_path / f"{name}.pth"
    torch.save(transform(raw), path)
    return str(path)


@pytest.mark.parametrize("variant", ["module_prefix", "bare_state_dict", "state_dict_only",
                                     "module_prefix_bare"])
def test_layout_variants_load(tmp_path, tiny_config, tiny_ckpt, variant):
    def prefixed(state):
        return OrderedDict((f"module.{k}", v) for k, v in state.items())

    transform = {
        "module_prefix": lambda raw: {"meta": raw["meta"], "state_dict": prefixed(raw["state_dict"])},
        "bare_state_dict": lambda raw: raw["state_dict"],
        "state_dict_only": lambda raw: {"state_dict": raw["state_dict"]},
        "module_prefix_bare": lambda raw: prefixed(raw["state_dict"]),
    }[variant]
    path = _variant(tmp_path, tiny_ckpt, variant, transform)
    reference = load_model(tiny_ckpt)
    model = load_model(path)  # without meta: architecture inferred from the tensors
    assert_same_state(model, reference)
    cfg = model.config
    assert (cfg.depth, cfg.num_classes, cfg.channels, cfg.aux_channels) == (18, 21, 64, 32)
    # explicit config works for every layout as well
    assert_same_state(load_model(path, config=tiny_config), reference)


def test_mmseg_0x_meta(tmp_path, tiny_ckpt):
    """0.x files carry CLASSES / PALETTE and the full config text (recurrence, align_corners)."""
    classes = tuple(f"thing{i}" for i in range(21))
    palette = [[i, 2 * i, 3 * i] for i in range(21)]
    config_text = ("norm_cfg = dict(type='SyncBN', requires_grad=True)\nmodel = dict(\n"
                   "    decode_head=dict(type='CCHead', in_channels=512, channels=64,\n"
                   "        recurrence=1, num_classes=21, align_corners=True))\n")
    path = _variant(tmp_path, tiny_ckpt, "mmseg0x", lambda raw: {
        "meta": {"mmseg_version": "0.5.0+abc", "config": config_text, "CLASSES": classes,
                 "PALETTE": palette, "epoch": 1, "iter": 20000},
        "state_dict": raw["state_dict"]})
    model = load_model(path)
    assert model.config.recurrence == 1
    assert model.meta.align_corners is True
    assert model.meta.classes == classes
    assert model.meta.palette == tuple(tuple(p) for p in palette)


DEPTH_CASES = [(18, 16, 7, 2), (34, 8, 3, 1), (50, 16, 150, 2), (101, 8, 19, 3)]


@pytest.mark.parametrize("depth,channels,num_classes,recurrence", DEPTH_CASES)
def test_config_inferred_from_tensors(tmp_path, depth, channels, num_classes, recurrence):
    cfg = custom_config("x", depth=depth, num_classes=num_classes, channels=channels,
                        aux_channels=None if depth == 34 else 8, recurrence=recurrence)
    model = randomize_model(build_model(cfg), seed=depth)
    path = tmp_path / "m.pth"
    save_checkpoint(model, str(path))
    # keep only what an mmseg file has: tensors + mmseg's config text (no ccnet_config)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    meta = {k: v for k, v in raw["meta"].items() if k != "ccnet_config"}
    torch.save({"meta": meta, "state_dict": raw["state_dict"]}, path)
    loaded = load_model(str(path))
    got = loaded.config
    assert (got.depth, got.channels, got.num_classes, got.recurrence, got.aux_channels) == \
        (depth, channels, num_classes, recurrence, cfg.aux_channels)
    assert_same_state(loaded, model)
    # without any meta, recurrence falls back to mmseg's default of 2
    torch.save(raw["state_dict"], path)
    assert load_model(str(path)).config.recurrence == 2


def test_zoo_names_both_generations():
    assert len({id(c) for c in ZOO.values()}) == 32
    a = get_config("ccnet_r50-d8_512x1024_80k_cityscapes")
    b = get_config("ccnet_r50-d8_4xb2-80k_cityscapes-512x1024")
    assert a.alias == b.name and b.alias == a.name and a.url == b.url
    slide = get_config("ccnet_r101-d8_4xb2-40k_cityscapes-769x769")
    assert (slide.mode, slide.crop_size, slide.stride, slide.align_corners, slide.test_scale) == \
        ("slide", (769, 769), (513, 513), True, (2049, 1025))
    ade = get_config("ccnet_r50-d8_512x512_160k_ade20k").meta()
    assert ade.num_classes == 150 and ade.reduce_zero_label and ade.classes[7] == "bed "


# ----------------------------------------------------------------------------- bad input
def test_unknown_zoo_name_suggests_closest():
    with pytest.raises(CCNetError, match=r"did you mean 'ccnet_r50-d8_512x1024_80k_cityscapes'"):
        load_model("ccnet_r50-d8_512x1024_80k_cityscape")
    with pytest.raises(CCNetError, match="unknown model name"):
        get_config("ccnet_r50_4xb2-80k_cityscapes-512x1024")


def test_missing_file(tmp_path):
    with pytest.raises(CCNetError, match="checkpoint not found"):
        load_model(str(tmp_path / "nope.pth"))
    with pytest.raises(CCNetError, match="is a folder"):
        read_checkpoint(str(tmp_path))


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(CCNetError, match="is not a PyTorch checkpoint") as e:
        load_model(str(path))
    assert "\n" not in str(e.value)
    path.write_text("not a checkpoint")  # starts like a pickle opcode; still not a checkpoint
    with pytest.raises(CCNetError, match="is not a PyTorch checkpoint"):
        load_model(str(path))


def test_truncated_checkpoint(tmp_path, tiny_ckpt):
    data = open(tiny_ckpt, "rb").read()
    path = tmp_path / "half.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CCNetError, match="is truncated or corrupt") as e:
        load_model(str(path))
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)
    # the legacy (non-zip) torch format, as 2020-era files may be, cut short as well
    legacy = tmp_path / "legacy.pth"
    torch.save(torch.load(tiny_ckpt, weights_only=True), legacy,
               _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    legacy.write_bytes(data[: len(data) // 2])
    with pytest.raises(CCNetError, match="is truncated or corrupt") as e:
        load_model(str(legacy))
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


def test_legacy_format_loads(tmp_path, tiny_ckpt):
    """Files written by torch < 1.6 (no zip container) load with weights_only=True."""
    legacy = tmp_path / "legacy.pth"
    torch.save(torch.load(tiny_ckpt, weights_only=True), legacy,
               _use_new_zipfile_serialization=False)
    assert_same_state(load_model(str(legacy)), load_model(tiny_ckpt))


def test_unsafe_objects_refused(tmp_path, tiny_ckpt):
    import numpy as np

    raw = torch.load(tiny_ckpt, weights_only=True)
    raw["meta"]["seed"] = np.int64(3)
    path = tmp_path / "numpy_meta.pth"
    torch.save(raw, path)
    with pytest.raises(CCNetError, match="refused as unsafe"):
        load_model(str(path))


def test_not_a_ccnet_state_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CCNetError, match="not a CCNet"):
        load_model(str(path))
    torch.save({"meta": {}, "epoch": 3}, path)
    with pytest.raises(CCNetError, match="holds no state_dict"):
        load_model(str(path))


def test_key_mismatch_names_keys_and_config(tmp_path, tiny_ckpt):
    # a ResNet-18 checkpoint against the R50 VOC zoo config: keys differ
    with pytest.raises(CCNetError) as e:
        load_model(tiny_ckpt, config="ccnet_r50-d8_4xb4-20k_voc12aug-512x512")
    msg = str(e.value)
    assert "ccnet_r50-d8_4xb4-20k_voc12aug-512x512" in msg and "missing" in msg
    assert "backbone.layer1.0.conv3.weight" in msg  # the first missing key
    assert "\n" not in msg
    # one key removed, one added
    path = _variant(tmp_path, tiny_ckpt, "keys", lambda raw: {"meta": raw["meta"], "state_dict":
                    OrderedDict([(k.replace("decode_head.cca.gamma.scale", "decode_head.cca.gamma"),
                                  v) for k, v in raw["state_dict"].items()])})
    with pytest.raises(CCNetError, match=r"1 missing \(first: decode_head\.cca\.gamma\.scale\); "
                                         r"1 unexpected \(first: decode_head\.cca\.gamma\)"):
        load_model(path)


def test_shape_mismatch_names_tensor(tmp_path, tiny_config, tiny_ckpt):
    wrong = custom_config("wrong-classes", depth=18, num_classes=19, channels=64, aux_channels=32)
    with pytest.raises(CCNetError) as e:
        load_model(tiny_ckpt, config=wrong)
    msg = str(e.value)
    assert "'decode_head.conv_seg.weight'" in msg and "wrong-classes" in msg
    assert "expected (19, 64, 1, 1), found (21, 64, 1, 1)" in msg


def test_save_is_atomic(tmp_path, tiny_config):
    model = build_model(tiny_config)
    with pytest.raises(CCNetError, match="does not exist"):
        save_checkpoint(model, str(tmp_path / "missing" / "m.pth"))
    save_checkpoint(model, str(tmp_path / "m.pth"))
    assert os.listdir(tmp_path) == ["m.pth"]  # no temp file left behind


def test_narrow_backbone_widths_round_trip_and_infer(tmp_path):
    """mmseg's ResNet base_channels/stem_channels (e.g. 32 for a small model) are built,
    saved and inferred back from the tensors of a bare state dict."""
    import torch

    from ccnet.checkpoint import build_model, infer_config, load_model, save_checkpoint
    from ccnet.zoo import custom_config

    cfg = custom_config("narrow", depth=18, num_classes=5, channels=48, aux_channels=24,
                        base_channels=32, stem_channels=32)
    model = build_model(cfg)
    assert model.backbone.layer4[0].conv1.in_channels == 128
    assert model.decode_head.convs[0].conv.in_channels == 256 == cfg.in_channels
    inferred = infer_config(model.state_dict(), {}, "narrow")
    assert (inferred.base_channels, inferred.stem_channels, inferred.channels) == (32, 32, 48)
    path = tmp_path / "bare.pth"
    torch.save(model.state_dict(), path)
    assert load_model(str(path)).config.base_channels == 32
    save_checkpoint(model, str(tmp_path / "full.pth"))
    assert load_model(str(tmp_path / "full.pth")).config == cfg


# ----------------------------------------------------------------------------- hardening
def _saved(tmp_path, tiny_ckpt, transform, name="m.pth"):
    raw = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    path = tmp_path / name
    torch.save(transform(raw), path)
    return str(path)


def _with_state(key, value):
    def transform(raw):
        raw["state_dict"][key] = value
        return raw
    return transform


def test_nonfinite_weights_refused_unless_allowed(tmp_path, tiny_ckpt):
    key = "decode_head.conv_seg.weight"

    def poison(raw):
        raw["state_dict"][key] = raw["state_dict"][key].clone()
        raw["state_dict"][key][0, 0, 0, 0] = float("nan")
        raw["state_dict"][key][1, 0, 0, 0] = float("inf")
        return raw

    path = _saved(tmp_path, tiny_ckpt, poison)
    with pytest.raises(CCNetError, match=r"2 NaN/Inf value\(s\) in 'decode_head\.conv_seg"
                                         r"\.weight'.*--allow-nonfinite"):
        load_model(path)
    model = load_model(path, allow_nonfinite=True)
    assert torch.isnan(model.decode_head.conv_seg.weight).any()
    var = "decode_head.convs.0.bn.running_var"
    negative = _saved(tmp_path, tiny_ckpt, lambda raw: _with_state(
        var, -raw["state_dict"][var])(raw), "neg.pth")
    with pytest.raises(CCNetError, match="negative BatchNorm variances"):
        load_model(negative)


def test_stride0_tensor_claiming_1e8_classes_fails_before_any_model(tmp_path, tiny_ckpt,
                                                                     monkeypatch):
    """A 16-element storage expanded to 10^8 × 64 must be refused from its shape alone: no
    model is built (CCNet() would allocate ~25 GB for that head)."""
    import time

    import ccnet.checkpoint as checkpoint

    fake = torch.zeros(1, 64, 1, 1).expand(10 ** 8, 64, 1, 1)
    path = _saved(tmp_path, tiny_ckpt, _with_state("decode_head.conv_seg.weight", fake))
    assert os.path.getsize(path) < 100 * 2 ** 20
    config = load_model(tiny_ckpt).config
    built = []  # models with real (not meta-device) tensors
    real = checkpoint.CCNet

    def counting(*args, **kwargs):
        if torch.get_default_device().type != "meta":
            built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "CCNet", counting)
    start = time.perf_counter()
    with pytest.raises(CCNetError, match=r"shape mismatch .* found \(100000000, 64, 1, 1\)"):
        load_model(path)  # under the checkpoint's own config
    raw = torch.load(path, weights_only=True)
    del raw["meta"]["ccnet_config"]  # inferred from the tensors: same refusal
    torch.save(raw, path)
    with pytest.raises(CCNetError, match="CCNET_MAX_CLASSES"):
        load_model(path)
    # Shapes are compared before building: a lying tensor under a valid config too.
    with pytest.raises(CCNetError, match="shape mismatch"):
        load_model(path, config=config)
    assert not built and time.perf_counter() - start < 30


@pytest.mark.parametrize("name,make,match", [
    ("int_key", None, "key 7 is a int"),
    ("str_value", lambda: "weights", "is a str, not a tensor"),
    ("sparse", lambda: torch.zeros(21, 64).to_sparse(), "sparse"),
    ("quantized", lambda: torch.quantize_per_tensor(torch.zeros(21, 64, 1, 1), 0.1, 0,
                                                    torch.qint8), "quantized"),
    ("complex", lambda: torch.zeros(21, 64, 1, 1, dtype=torch.complex64), "complex"),
])
def test_state_dict_entries_that_are_not_dense_tensors(tmp_path, tiny_ckpt, name, make, match):
    import warnings

    if name == "int_key":
        def transform(raw):
            raw["state_dict"][7] = torch.zeros(1)
            return raw
    else:
        with warnings.catch_warnings():  # quantized tensor creation is deprecated
            warnings.simplefilter("ignore")
            transform = _with_state("decode_head.conv_seg.weight", make())
    try:
        path = _saved(tmp_path, tiny_ckpt, transform)
    except Exception as e:  # a tensor kind this torch cannot save is no input to worry about
        pytest.skip(f"torch cannot save it: {e}")
    with pytest.raises(CCNetError, match=match) as e:
        load_model(path)
    assert "\n" not in str(e.value)


def test_meta_tensor_entry(tmp_path, tiny_ckpt):
    from ccnet.checkpoint import check_state_dict

    with pytest.raises(CCNetError, match="meta tensor"):
        check_state_dict({"a": torch.empty(2, device="meta")})
    with pytest.raises(CCNetError, match="twice"):
        check_state_dict({"a": torch.zeros(1), "module.a": torch.zeros(1)})


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("make", [
    lambda m: _Payload(os.system, f"touch {m}"),
    lambda m: _Payload(eval, f"open({m!r}, 'w')"),
    lambda m: _Payload(torch.load, m),  # a real torch function is just as unsafe
])
def test_malicious_pickles_refused_as_unsafe_and_never_run(tmp_path, tiny_ckpt, make):
    import pickle

    marker = tmp_path / "PWNED"
    zipped = _saved(tmp_path, tiny_ckpt, lambda raw: {**raw, "meta": {"x": make(str(marker))}})
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps({"state_dict": make(str(marker))}, protocol=2))
    for path in (zipped, str(legacy)):
        with pytest.raises(CCNetError, match="refused as unsafe") as e:
            load_model(path)
        assert "truncated" not in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


def test_truncated_torch_global_is_reported_as_truncated():
    from ccnet.checkpoint import _load_error

    cut = Exception("Weights only load failed. ... WeightsUnpickler error: Unsupported global: "
                    "GLOBAL torch._utils._rebuild_ten was not an allowed global by default.")
    assert "truncated or corrupt" in str(_load_error("m.pth", cut))
    real = Exception("Weights only load failed. WeightsUnpickler error: Unsupported global: "
                     "GLOBAL torch.nn.modules.conv.Conv2d was not an allowed global by default.")
    assert "refused as unsafe" in str(_load_error("m.pth", real))


def test_unreadable_and_fifo_checkpoints(tmp_path):
    fifo = tmp_path / "m.pth"
    os.mkfifo(fifo)
    with pytest.raises(CCNetError, match="not a regular file"):
        load_model(str(fifo))  # must not block reading it
    if os.geteuid() == 0:
        pytest.skip("root reads any file: the permission check cannot fail here")
    locked = tmp_path / "locked.pth"
    locked.write_bytes(b"PK")
    locked.chmod(0)
    with pytest.raises(CCNetError, match="permission denied"):
        load_model(str(locked))


def test_bad_mmseg_meta_class_names(tmp_path, tiny_ckpt):
    path = _saved(tmp_path, tiny_ckpt, lambda raw: {"state_dict": raw["state_dict"],
                                                    "meta": {"CLASSES": 42}})
    with pytest.raises(CCNetError, match="class names are not a list"):
        load_model(path)
    path = _saved(tmp_path, tiny_ckpt, lambda raw: {
        "state_dict": raw["state_dict"],
        "meta": {"config": "decode_head=dict(recurrence=1000000000)"}})
    with pytest.raises(CCNetError, match="recurrence"):
        load_model(path)

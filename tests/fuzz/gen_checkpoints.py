"""Checkpoint cases: ``ccnet predict --model <mutated small.pth>`` (and a few ``ccnet export``).

Families: layouts that must load identically; files that are not checkpoints; malicious
pickles (must be "refused as unsafe" and never run); structural damage (keys, values, tensor
kinds); NaN/Inf weights; shapes that lie (e.g. a stride-0 tensor claiming 10^8 classes);
metadata with absurd or mistyped values; truncation and random byte flips (seeded).
"""
from __future__ import annotations

import functools
import os
import pickle
import random
import subprocess
import warnings
from collections import OrderedDict
from typing import Callable, List

import torch

from . import checks
from .environment import copy_into
from .harness import Case

UNSAFE = r"refused as unsafe"
MODEL = "{in}/model.pth"


class _Payload:
    """Pickles to a call of ``func(*args)``: what a malicious checkpoint runs on plain
    ``torch.load(weights_only=False)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _raw(env) -> dict:
    return torch.load(env.small_ckpt, map_location="cpu", weights_only=True)


def _saver(env, transform: Callable[[dict], object], legacy: bool = False):
    """A setup writing ``transform(raw checkpoint)`` with torch.save."""
    def setup(case_dir: str) -> None:
        obj = transform(_raw(env))
        torch.save(obj, os.path.join(case_dir, "in", "model.pth"),
                   _use_new_zipfile_serialization=not legacy)
    return setup


def _bytes_setup(make: Callable[[bytes], bytes], env):
    def setup(case_dir: str) -> None:
        with open(env.small_ckpt, "rb") as f:
            data = f.read()
        with open(os.path.join(case_dir, "in", "model.pth"), "wb") as f:
            f.write(make(data))
    return setup


def _predict_case(env, name: str, expect: str, setup, message=None, check="match",
                  extra_argv=()) -> Case:
    def check_fn(case_dir, result):
        out = os.path.join(case_dir, "out", "labels.png")
        if check == "match":
            return checks.labels_match(env, env.photo, out)
        return checks.labels_wellformed(env.photo, out, 256)

    return Case(id=f"checkpoint/{name}", family="checkpoint",
                argv=["predict", "--model", MODEL, "--input", env.photo, "--out",
                      "{out}/labels.png", *extra_argv],
                expect=expect, setup=setup, check=check_fn, outputs=("labels.png",),
                message=message)


def _sd(transform):
    """Apply ``transform`` to the state_dict of a raw checkpoint."""
    def apply(raw):
        raw["state_dict"] = transform(raw["state_dict"])
        return raw
    return apply


def _meta(**changes):
    """Change fields of the checkpoint's own config (meta['ccnet_config'])."""
    def apply(raw):
        raw["meta"]["ccnet_config"].update(changes)
        return raw
    return apply


# ----------------------------------------------------------------------------- fixed cases
def layout_cases(env) -> List[Case]:
    prefixed = _sd(lambda sd: OrderedDict((f"module.{k}", v) for k, v in sd.items()))
    cases = [
        _predict_case(env, "valid", "ok", lambda d: copy_into(env.small_ckpt, d, "model.pth")),
        _predict_case(env, "module_prefix", "ok", _saver(env, prefixed)),
        _predict_case(env, "state_dict_only", "ok",
                      _saver(env, lambda raw: {"state_dict": raw["state_dict"], "meta":
                                               {"ccnet_config": raw["meta"]["ccnet_config"]}})),
        _predict_case(env, "legacy_format", "ok", _saver(env, lambda raw: raw, legacy=True)),
        # Without our config the architecture is inferred and the scale is the default one.
        _predict_case(env, "bare_state_dict", "ok", _saver(env, lambda raw: raw["state_dict"]),
                      check="wellformed"),
        _predict_case(env, "unknown_meta_keys", "ok",
                      _saver(env, lambda raw: {**raw, "optimizer": {"lr": 0.1}, "meta": {
                          **raw["meta"], "epoch": 3, "dataset_meta": 42}})),
    ]
    return cases


def not_checkpoint_cases(env) -> List[Case]:
    def write(data: bytes):
        def setup(case_dir):
            with open(os.path.join(case_dir, "in", "model.pth"), "wb") as f:
                f.write(data)
        return setup

    def fifo(case_dir):
        os.mkfifo(os.path.join(case_dir, "in", "model.pth"))

    def folder(case_dir):
        os.mkdir(os.path.join(case_dir, "in", "model.pth"))

    cases = [("empty", write(b"")), ("text", write(b"not a checkpoint\n" * 10)),
             ("zip_garbage", write(b"PK\x03\x04" + bytes(range(256)) * 4)),
             ("pickle_garbage", write(b"\x80\x02" + bytes(range(255, 0, -1)) * 4)),
             ("pickle_int", write(pickle.dumps(42, protocol=2))),
             ("fifo", fifo), ("folder", folder), ("missing", lambda d: None)]
    return [_predict_case(env, f"not_checkpoint/{n}", "error", s) for n, s in cases]


def malicious_cases(env) -> List[Case]:
    """Pickles that would run code; each must be refused as unsafe and never run."""
    def marker(case_dir):
        return os.path.join(case_dir, "out", "PWNED")

    def evil_zip(make_payload, where="meta"):
        def setup(case_dir):
            raw = _raw(env)
            payload = make_payload(marker(case_dir))
            if where == "meta":
                raw["meta"]["x"] = payload
            else:
                raw["state_dict"]["backbone.stem.0.weight"] = payload
            torch.save(raw, os.path.join(case_dir, "in", "model.pth"))
        return setup

    def evil_raw(make_payload, protocol):
        def setup(case_dir):
            with open(os.path.join(case_dir, "in", "model.pth"), "wb") as f:
                f.write(pickle.dumps({"state_dict": make_payload(marker(case_dir))},
                                     protocol=protocol))
        return setup

    def full_module(case_dir):
        torch.save(env.model, os.path.join(case_dir, "in", "model.pth"))

    payloads = {
        "os_system": lambda m: _Payload(os.system, f"touch {m}"),
        "subprocess": lambda m: _Payload(subprocess.call, ["touch", m]),
        "eval": lambda m: _Payload(eval, f"open({m!r}, 'w')"),
        "exec": lambda m: _Payload(exec, f"open({m!r}, 'w')"),
        "partial": lambda m: functools.partial(os.system, f"touch {m}"),
        "import": lambda m: _Payload(__import__, "os"),
        "torch_load": lambda m: _Payload(torch.load, m),
        "open": lambda m: _Payload(open, m, "w"),
    }
    cases = []
    for name, make in payloads.items():
        cases.append(_evil_case(env, f"{name}/zip_meta", evil_zip(make), marker))
        cases.append(_evil_case(env, f"{name}/zip_state", evil_zip(make, "state"), marker))
        cases.append(_evil_case(env, f"{name}/raw_p2", evil_raw(make, 2), marker))
    cases.append(_evil_case(env, "os_system/raw_p4", evil_raw(payloads["os_system"], 4), marker))
    cases.append(_evil_case(env, "full_module_pickle", full_module, marker))
    return cases


def _evil_case(env, name, setup, marker) -> Case:
    case = _predict_case(env, f"malicious/{name}", "error", setup, message=UNSAFE)
    case.check = lambda case_dir, result: "pickled code ran" if os.path.exists(
        marker(case_dir)) else None
    return case


def _quantized(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # quantized tensor creation is deprecated in torch
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(weight, 0.1, 0, torch.qint8)


def structure_cases(env) -> List[Case]:
    key = "decode_head.conv_seg.weight"

    def put(value, k=key):
        return _sd(lambda sd: {**sd, k: value})

    weight = _raw(env)["state_dict"][key]
    mutations = {
        "int_key": _sd(lambda sd: {**sd, 7: torch.zeros(1)}),
        "str_value": put("weights"), "list_value": put([1.0, 2.0]), "none_value": put(None),
        "dict_value": put({"a": torch.zeros(1)}),
        "sparse": put(weight.reshape(weight.shape[0], -1).to_sparse()),
        "quantized": put(_quantized(weight)),
        "meta_tensor": put(torch.empty(weight.shape, device="meta")),
        "complex": put(weight.to(torch.complex64)), "bool": put(weight > 0),
        "state_dict_list": lambda raw: {**raw, "state_dict": [1, 2]},
        "state_dict_empty": lambda raw: {**raw, "state_dict": {}},
        "key_missing": _sd(lambda sd: {k: v for k, v in sd.items() if k != key}),
        "key_extra": put(torch.zeros(3), "decode_head.extra.weight"),
        "key_twice": _sd(lambda sd: {**sd, f"module.{key}": sd[key]}),
        "scalar_conv": put(torch.tensor(1.0)),
        # 10^8 classes from a 16-element storage: must fail before allocating anything.
        "stride0_1e8_classes": put(torch.zeros(1, 16, 1, 1).expand(10 ** 8, 16, 1, 1)),
        "stride0_wide_head": _sd(lambda sd: {**sd, "decode_head.convs.0.conv.weight":
                                             torch.zeros(1, 64, 3, 3).expand(10 ** 7, 64, 3, 3)}),
        "nan": _sd(lambda sd: {**sd, key: torch.full_like(sd[key], float("nan"))}),
        "inf_one": _sd(lambda sd: {**sd, key: sd[key].clone().index_fill_(0, torch.tensor([0]),
                                                                         float("inf"))}),
        "negative_running_var": _sd(lambda sd: {**sd, "decode_head.convs.0.bn.running_var":
                                                -sd["decode_head.convs.0.bn.running_var"]}),
    }
    messages = {"nan": "NaN", "inf_one": "NaN/Inf", "negative_running_var": "negative"}
    return [_predict_case(env, f"structure/{n}", "error", _saver(env, t), messages.get(n))
            for n, t in mutations.items()]


def meta_cases(env) -> List[Case]:
    bad = {
        "num_classes_1e7": dict(num_classes=10 ** 7), "recurrence_0": dict(recurrence=0),
        "recurrence_1e9": dict(recurrence=10 ** 9), "recurrence_str": dict(recurrence="2"),
        "recurrence_float": dict(recurrence=2.5), "depth_7": dict(depth=7),
        "depth_str": dict(depth="50"), "depth_list": dict(depth=[50]),
        "channels_0": dict(channels=0), "channels_1e9": dict(channels=10 ** 9),
        "aux_negative": dict(aux_channels=-1), "base_1e6": dict(base_channels=10 ** 6),
        "scale_zero": dict(test_scale=[0, 0]), "scale_huge": dict(test_scale=[10 ** 9] * 2),
        "scale_str": dict(test_scale="big"), "scale_one": dict(test_scale=[64]),
        "scale_three": dict(test_scale=[64, 48, 3]), "mode_tile": dict(mode="tile"),
        "slide_no_crop": dict(mode="slide"),
        "slide_stride0": dict(mode="slide", crop_size=[32, 32], stride=[0, 0]),
        "slide_stride1": dict(mode="slide", crop_size=[16, 16], stride=[1, 1],
                              test_scale=[4096, 4096]),
        "slide_gap": dict(mode="slide", crop_size=[32, 32], stride=[64, 64]),
        "classes_int": dict(classes=42), "classes_ints": dict(classes=[1, 2, 3, 4, 5]),
        "classes_short": dict(classes=["a", "b"]),
        "palette_300": dict(palette=[[300, 0, 0]] * 5), "palette_str": dict(palette="red"),
        "palette_short": dict(palette=[[1, 2, 3]]), "align_str": dict(align_corners="yes"),
        "name_none": dict(name=None), "dataset_int": dict(dataset=42),
    }
    cases = [_predict_case(env, f"meta/{n}", "error", _saver(env, _meta(**c)))
             for n, c in bad.items()]
    text_bad = {
        "config_text_recurrence_1e9": "model = dict(decode_head=dict(recurrence=1000000000))",
        "config_text_recurrence_0": "model = dict(decode_head=dict(recurrence=0))",
    }
    for n, text in text_bad.items():
        cases.append(_predict_case(env, f"meta/{n}", "error", _saver(env, lambda raw, t=text: {
            "state_dict": raw["state_dict"], "meta": {"config": t}})))
    mmseg_bad = {"classes_number": {"CLASSES": 42},
                 "palette_garbage": {"CLASSES": [f"c{i}" for i in range(5)],
                                     "PALETTE": [["r", "g", "b"]] * 5}}
    for n, m in mmseg_bad.items():
        cases.append(_predict_case(env, f"meta/{n}", "error", _saver(env, lambda raw, m=m: {
            "state_dict": raw["state_dict"], "meta": m})))
    cases.append(_predict_case(env, "meta/no_name", "error", _saver(env, lambda raw: {
        **raw, "meta": {"ccnet_config": {k: v for k, v in raw["meta"]["ccnet_config"].items()
                                         if k != "name"}}})))
    return cases


def export_cases(env) -> List[Case]:
    """``ccnet export`` refusals that happen before the (slow) export itself."""
    def export(name, setup, extra=(), message=None):
        return Case(id=f"checkpoint/export/{name}", family="checkpoint",
                    argv=["export", "--model", MODEL, "--out", "{out}/m.onnx", *extra],
                    expect="error", setup=setup, message=message)

    valid = lambda d: copy_into(env.small_ckpt, d, "model.pth")  # noqa: E731
    nan = _sd(lambda sd: {**sd, "decode_head.conv_seg.weight":
                          torch.full_like(sd["decode_head.conv_seg.weight"], float("nan"))})
    return [export("nan_weights", _saver(env, nan), message="NaN"),
            export("recurrence_0", _saver(env, _meta(recurrence=0)), message="recurrence"),
            export("classes_1e7", _saver(env, _meta(num_classes=10 ** 7)), message="classes"),
            export("atol_negative", valid, ["--atol", "-1"], message="atol"),
            export("rtol_nan", valid, ["--rtol", "nan"], message="rtol"),
            export("agreement_2", valid, ["--min-agreement", "2"], message="min-agreement"),
            export("out_folder", lambda d: (valid(d), os.mkdir(os.path.join(d, "out", "m.onnx"))),
                   message="folder")]


def export_slow_cases(env) -> List[Case]:
    """Full exports: a valid checkpoint writes its file; --allow-nonfinite still fails
    verification on NaN weights."""
    nan = _sd(lambda sd: {**sd, "decode_head.conv_seg.weight":
                          torch.full_like(sd["decode_head.conv_seg.weight"], float("nan"))})
    return [
        Case(id="checkpoint/export/valid", family="checkpoint",
             argv=["export", "--model", MODEL, "--out", "{out}/m.onnx"], expect="ok",
             setup=lambda d: copy_into(env.small_ckpt, d, "model.pth"),
             check=lambda d, r: checks.onnx_runs(os.path.join(d, "out", "m.onnx"), "fp32"),
             outputs=("m.onnx",), timeout=600),
        Case(id="checkpoint/export/nan_allowed", family="checkpoint",
             argv=["export", "--model", MODEL, "--out", "{out}/m.onnx", "--allow-nonfinite"],
             expect="error", setup=_saver(env, nan), message="NaN", timeout=600),
    ]


# ----------------------------------------------------------------------------- seeded cases
def random_cases(env, count: int, seed: int) -> List[Case]:
    """Seeded random mutations: NaN/Inf at a random element of a random tensor, a random tensor
    reshaped, truncation at a random offset, random byte flips, a random config field set to a
    junk value."""
    rng = random.Random(seed)
    raw = _raw(env)
    keys = [k for k, v in raw["state_dict"].items() if v.is_floating_point()]
    fields = sorted(raw["meta"]["ccnet_config"])
    junk = [None, True, -1, 0, 3, 2.5, "x", [], {}, [64, 48], [[1, 2, 3]], 10 ** 12,
            float("nan")]
    size = os.path.getsize(env.small_ckpt)
    cases = []
    for i in range(count):
        kind = ("nonfinite", "reshape", "truncate", "flip", "field")[i % 5]
        key, r = rng.choice(keys), rng.random()
        if kind == "nonfinite":
            value = rng.choice([float("nan"), float("inf"), float("-inf")])

            def poison(sd, key=key, r=r, value=value):
                t = sd[key].clone()
                t.view(-1)[int(r * t.numel())] = value
                return {**sd, key: t}
            cases.append(_predict_case(env, f"random/nonfinite/{i}", "error",
                                       _saver(env, _sd(poison)), message="NaN/Inf"))
        elif kind == "reshape":
            extra = rng.choice([1, 2, 7])

            def grow(sd, key=key, extra=extra):
                t = sd[key]
                shape = list(t.shape) or [1]
                shape[0] += extra
                return {**sd, key: torch.zeros(shape)}
            cases.append(_predict_case(env, f"random/reshape/{i}", "error",
                                       _saver(env, _sd(grow))))
        elif kind == "truncate":
            cut = rng.randrange(1, size)
            cases.append(_predict_case(env, f"random/truncate/{i}", "error",
                                       _bytes_setup(lambda b, cut=cut: b[:cut], env)))
        elif kind == "field":
            # Some junk is valid for some fields (e.g. a name): either outcome, one line.
            field, value = rng.choice(fields), rng.choice(junk)
            cases.append(_predict_case(env, f"random/field/{i}/{field}", "either",
                                       _saver(env, _meta(**{field: value})),
                                       check="wellformed"))
        else:
            flips = [(rng.randrange(size), rng.randrange(1, 256))
                     for _ in range(rng.choice([1, 4, 32]))]

            def flip(b, flips=flips):
                data = bytearray(b)
                for pos, mask in flips:
                    data[pos] ^= mask
                return bytes(data)
            # The zip container has no checksum torch checks: flipped weights may load.
            cases.append(_predict_case(env, f"random/flip/{i}", "either",
                                       _bytes_setup(flip, env), check="wellformed"))
    return cases


def checkpoint_cases(env, size: str) -> List[Case]:
    cases = (layout_cases(env) + not_checkpoint_cases(env) + malicious_cases(env)
             + structure_cases(env) + meta_cases(env) + export_cases(env))
    cases += random_cases(env, 25 if size == "fast" else 900, seed=12)
    if size != "fast":
        cases += export_slow_cases(env)
    return cases


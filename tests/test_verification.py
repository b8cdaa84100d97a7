"""Export verification: NaN/Inf outputs fail it, polygraphy-style tolerances sized for FP32
deep networks with argmax agreement first, the strictness flags, and FP16 conversion of files
the converter or ONNX Runtime reject (one-line errors)."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch

from ccnet.errors import CCNetError
from export.verify import (DEFAULT_ATOL, Tolerance, check_comparison, check_finite, compare,
                           verify_against_torch)

from helpers import one_error_line


def _logits(seed=0, scale=8.0, shape=(1, 150, 16, 16)):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def test_nan_outputs_fail_verification():
    """NaN compares False with everything and argmax of all-NaN is 0 on both sides: without an
    explicit check a broken model "agrees" on 100 % of pixels."""
    nan = np.full((1, 3, 4, 4), np.nan, np.float32)
    assert compare(nan, nan, labels=False)["agreement"] == 1.0
    with pytest.raises(CCNetError, match=r"has 48 NaN/Inf value\(s\)"):
        check_finite(nan, "the ONNX Runtime output", nan.shape)
    check_finite(_logits(), "x", (1,))


def test_fp32_rounding_of_a_deep_network_passes_the_defaults():
    """The case behind the defaults, as measured on a trained R50-D8 ADE20K export: max abs
    error 0.0022 at max |logit| ~20 with 100 % argmax agreement, which the former criterion
    (max error <= 1e-4 × max |logit|) refused."""
    expected = np.clip(_logits(scale=5.0), -20, 20)
    expected.flat[0] = 20.0
    got = expected + np.random.default_rng(1).uniform(-0.0022, 0.0022, expected.shape).astype(
        np.float32)
    result = compare(expected, got, labels=False)
    assert result["max_abs_error"] == pytest.approx(0.0022, rel=0.01)
    assert result["agreement"] > 0.999
    assert result["max_abs_error"] > 1e-4 * result["max_abs_logit"]  # the former refusal
    assert result["p99_abs_error"] < result["max_abs_error"]
    check_comparison(result, expected.shape, labels=False, fp16=False)
    # The strictness options still refuse it.
    strict = Tolerance(atol=1e-4, rtol=1e-5)
    with pytest.raises(CCNetError, match=r"differ by more than max\(atol=0.0001"):
        check_comparison(compare(expected, got, False, strict), expected.shape, False, False,
                         strict)


def test_an_export_defect_fails():
    expected = _logits()
    got = expected.copy()
    got[:, :, :4] += 0.5  # a wrong op on a quarter of the map: logits off by whole tenths
    with pytest.raises(CCNetError, match="differ by more than"):
        check_comparison(compare(expected, got, False), expected.shape, False, False)
    flipped = expected.copy()
    flipped[0, :, :8] = flipped[0, ::-1, :8]  # argmax changes on half the pixels
    with pytest.raises(CCNetError, match="argmax agreement"):
        check_comparison(compare(expected, flipped, False), expected.shape, False, False)


def test_r50_d8_fp32_vs_float64_within_default_tolerance():
    """FP32 rounding through an R50-D8 ADE20K network (150 classes, 100+ layers) measured
    against the same network in float64: within the defaults, argmax on (nearly) every pixel."""
    from helpers import randomize_model

    from ccnet.checkpoint import build_model

    torch.manual_seed(0)
    model = randomize_model(build_model("ccnet_r50-d8_4xb4-80k_ade20k-512x512"), seed=4)
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        got = model(x).numpy()
        expected = model.double()(x.double()).numpy()
    result = compare(expected, got, labels=False)
    assert result["max_abs_error"] < DEFAULT_ATOL
    check_comparison(result, x.shape, labels=False, fp16=False)


@pytest.mark.parametrize("kwargs,match", [
    (dict(atol=-1.0), "atol"), (dict(rtol=float("nan")), "rtol"),
    (dict(min_agreement=1.5), "min-agreement"), (dict(min_agreement="all"), "min-agreement"),
])
def test_tolerance_values(kwargs, match):
    with pytest.raises(CCNetError, match=match):
        Tolerance(**kwargs)


def test_verification_refuses_nan_pytorch_output(tmp_path, tiny_ckpt, tiny_onnx):
    from ccnet.checkpoint import load_model

    raw = torch.load(tiny_ckpt, weights_only=True)
    raw["state_dict"]["decode_head.conv_seg.bias"] = torch.full((21,), float("nan"))
    path = tmp_path / "nan.pth"
    torch.save(raw, path)
    model = load_model(str(path), allow_nonfinite=True)
    x = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(CCNetError, match="PyTorch model's output has"):
        verify_against_torch(onnx.load(tiny_onnx), model, [x], labels=False, fp16=False,
                             log=lambda *a: None)


def test_export_cli_nan_checkpoint_and_flags(tmp_path, tiny_ckpt, capsys):
    from cli.export import main

    raw = torch.load(tiny_ckpt, weights_only=True)
    raw["state_dict"]["decode_head.conv_seg.weight"].fill_(float("inf"))
    bad = tmp_path / "inf.pth"
    torch.save(raw, bad)
    out = tmp_path / "m.onnx"
    assert main(["--model", str(bad), "--out", str(out)]) == 2
    assert "--allow-nonfinite" in one_error_line(capsys)
    for flags, match in ([["--min-agreement", "2"], "min-agreement"], [["--atol", "-1"], "atol"]):
        assert main(["--model", tiny_ckpt, "--out", str(out), *flags]) == 2
        assert match in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["inf.pth"]


@pytest.mark.slow
def test_r50_d8_ade20k_export_with_default_settings(tmp_path, capsys):
    """An mmseg-format R50-D8 ADE20K checkpoint exports with default settings.  (Random weights
    give small logits and errors; the trained-model error distribution that the former
    criterion refused is test_fp32_rounding_of_a_deep_network_passes_the_defaults.)"""
    from helpers import make_checkpoint

    from ccnet.zoo import get_config
    from cli.export import main

    ckpt = tmp_path / "r50_ade.pth"
    make_checkpoint(ckpt, get_config("ccnet_r50-d8_4xb4-80k_ade20k-512x512"), seed=5)
    out = tmp_path / "r50_ade.onnx"
    assert main(["--model", str(ckpt), "--out", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "argmax agreement" in printed and "p99" in printed
    assert out.exists()


# ----------------------------------------------------------------------------- fp16
def _rewritten(tmp_path, tiny_onnx, change, name="m.onnx"):
    """tiny_onnx changed by ``change(model)``, metadata (and checksum) rewritten."""
    from export.metadata import read_metadata, set_metadata

    model = onnx.load(tiny_onnx)
    meta = read_metadata(model)
    change(model)
    set_metadata(model, meta)
    path = tmp_path / name
    onnx.save(model, path)
    return str(path)


def test_fp16_refuses_models_without_one_image_input(tmp_path, tiny_onnx):
    from export.to_fp16 import convert_to_fp16

    no_input = _rewritten(tmp_path, tiny_onnx, lambda m: m.graph.input.pop())
    with pytest.raises(CCNetError, match=r"0 input\(s\)"):
        convert_to_fp16(no_input, str(tmp_path / "h.onnx"), log=lambda *a: None)
    assert not (tmp_path / "h.onnx").exists()


def test_fp16_probe_wraps_onnx_runtime_errors(tiny_onnx):
    from export.to_fp16 import overflow_nodes

    model = onnx.load(tiny_onnx)
    with pytest.raises(CCNetError, match="ONNX Runtime cannot run the model") as e:
        overflow_nodes(model, {"wrong_name": np.zeros((1, 3, 32, 32), np.float32)})
    assert "\n" not in str(e.value)
    del model.graph.node[len(model.graph.node) // 2]
    with pytest.raises(CCNetError, match="ONNX Runtime cannot run the model"):
        overflow_nodes(model, {"input": np.zeros((1, 3, 32, 32), np.float32)})


def test_fp16_cli_non_dict_metadata(tmp_path, tiny_onnx, capsys):
    from ccnet.meta import METADATA_KEY
    from cli.fp16 import main

    model = onnx.load(tiny_onnx)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = "[1, 2]"
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert main(["--model", str(path), "--out", str(tmp_path / "h.onnx")]) == 2
    assert "not an object" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_label_head_shape_mismatch_is_a_ccnet_error():
    """A head whose labels do not have the reference's shape fails with a one-line CCNetError
    (not numpy's ValueError from comparing non-broadcastable arrays)."""
    from types import SimpleNamespace

    from onnx import TensorProto, helper, numpy_helper

    from ccnet.labels import LABEL_HEAD_INPUT
    from export.verify import verify_label_head

    wrong = numpy_helper.from_array(np.zeros((1, 3, 3), np.uint8), "value")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["labels"], value=wrong)], "wrong_head",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4]),
         helper.make_tensor_value_info(LABEL_HEAD_INPUT, TensorProto.FLOAT, [0, 7, 7])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, 3, 3])])
    head = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    head.ir_version = 8
    x = np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(CCNetError, match=r"label head output \(1, 3, 3\) != \(1, 7, 7\)"):
        verify_label_head(head, [_logits(shape=(1, 5, 4, 4))], [x],
                          SimpleNamespace(align_corners=False), log=lambda *a: None)

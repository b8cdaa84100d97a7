"""Mixed precision: per-layer sensitivity, Convs kept in float, what parity shows, ModelOpt.

The default suite uses a micro CCNet (ResNet-18 D8 at 1/8 width, 128×64 test scale) so that
quantizing once per Conv stays quick; the built-in model's agreement targets run under
``-m slow`` (numbers recorded in bench/RESULTS.md)."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import pytest

from helpers import ADE_DIR, VOC_DIR, export_tiny_onnx, make_checkpoint

from calib.qdq_graph import conv_names, int8_conv_names, producers  # noqa: E402
from calib.quantize import quantize  # noqa: E402
from calib.sensitivity import _smallest_meeting  # noqa: E402
from cli.calibrate import main as calibrate_main  # noqa: E402


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from ccnet.zoo import custom_config

    config = custom_config("micro-r18-voc", depth=18, num_classes=21, channels=16,
                           aux_channels=8, base_channels=8, stem_channels=8, dataset="voc",
                           test_scale=(128, 64))
    ckpt = tmp_path_factory.mktemp("micro") / "micro.pth"
    make_checkpoint(ckpt, config, seed=3)
    return str(ckpt), config, export_tiny_onnx(tmp_path_factory, str(ckpt), "micro.onnx",
                                               config=config)


@pytest.fixture(scope="module")
def fallback_two(micro, tmp_path_factory, shared_data):
    """The micro model with its 2 most sensitive Convs in float (3 photos + 2 held out)."""
    folder = tmp_path_factory.mktemp("fallback")
    out, table = str(folder / "int8.onnx"), str(folder / "sensitivity.json")
    report = quantize(micro[2], out, images_dir=shared_data, num_images=3, holdout_images=2,
                      max_fallback=2, sensitivity_json=table, method="minmax", progress=False)
    return out, table, report


def test_search_takes_the_fewest_layers_that_reach_the_target():
    curve = [97.0, 98.0, 98.5, 99.0, 99.2, 99.4, 99.6, 99.7, 99.9]
    calls = []

    def agreement(k):
        calls.append(k)
        return curve[k]

    assert _smallest_meeting(agreement, 99.5, 8) == 6
    assert len(set(calls)) < len(curve) - 1  # doubling + bisection, not every k
    assert _smallest_meeting(lambda k: curve[k], 99.95, 8) == 8  # unreachable: the budget
    assert _smallest_meeting(lambda k: curve[k], 96.0, 8) == 0
    assert _smallest_meeting(lambda k: curve[k], 99.5, 5) == 5


def test_most_sensitive_convs_stay_float_and_are_recorded(fallback_two, micro):
    from export.metadata import read_metadata

    out, table, report = fallback_two
    with open(table) as f:
        sensitivity = json.load(f)
    assert os.path.getsize(os.path.splitext(table)[0] + ".png") > 1000
    layers = sensitivity["layers"]
    convs = conv_names(onnx.load(micro[2]))
    assert sorted(s["name"] for s in layers) == sorted(convs)
    errors = [s["relative_error"] for s in layers]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    assert sensitivity["fallback_layers"] == [s["name"] for s in layers[:2]]
    assert [s["name"] for s in layers if s["fallback"]] == sensitivity["fallback_layers"]
    assert len(sensitivity["holdout_images"]) == 2
    model = onnx.load(out)
    producer = producers(model)
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        quantized = [getattr(producer.get(t), "op_type", None) == "DequantizeLinear"
                     for t in conv.input[:2]]
        assert quantized == ([False, False] if conv.name in sensitivity["fallback_layers"]
                             else [True, True]), conv.name
    calibration = read_metadata(model).extra["calibration"]
    assert calibration["fallback_layers"] == sorted(sensitivity["fallback_layers"],
                                                    key=convs.index)
    assert calibration["int8_convs"] == len(convs) - 2 == len(int8_conv_names(model))
    assert report["holdout_agreement_pct"] == pytest.approx(sensitivity["agreement_pct"])
    assert not set(report["holdout_images"]) & set(report["images"])


def test_parity_shows_which_layers_fell_back(fallback_two, micro, shared_data):
    from runtime.parity import format_report, parity_report

    out, table, _ = fallback_two
    report = parity_report(micro[0], VOC_DIR, "voc", onnx_int8=out, config=micro[1],
                           max_images=1, progress=False)
    text = format_report(report)
    fallback = json.load(open(table))["fallback_layers"]
    row = report["backends"][1]["int8_layers"]
    assert row["fallback_layers"] and set(row["fallback_layers"]) == set(fallback)
    assert f"{row['int8_convs']} of {row['convs']} Convs INT8" in text
    assert all(name in text for name in fallback)


def test_unreachable_target_is_a_one_line_error(micro, tmp_path, capsys, shared_data):
    out = tmp_path / "int8.onnx"
    rc = calibrate_main(["--model", micro[2], "--images", os.path.join(VOC_DIR, "images"),
                         "--holdout", os.path.join(ADE_DIR, "images"), "--method", "minmax",
                         "--target-agreement", "100", "--max-fallback", "0", "--out", str(out),
                         "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "below --target-agreement 100" in err, err
    assert not out.exists()


def test_mixed_precision_option_errors(micro, tmp_path, capsys, shared_data):
    out = str(tmp_path / "int8.onnx")
    images = os.path.join(VOC_DIR, "images")
    cases = [
        (["--cache", str(tmp_path / "c.json"), "--max-fallback", "1"], "held-out photos"),
        (["--images", images, "--holdout", images], "--holdout photos measure"),
        (["--images", images, "--max-fallback", "1", "--target", "ort-cpu"], "--target tensorrt"),
        (["--images", images, "--sensitivity-json", str(tmp_path / "s.json")], "needs"),
        (["--images", images, "--max-fallback", "1", "--quantizer", "modelopt"], "--quantizer ort"),
        (["--images", images, "--target-agreement", "120"], "percentage in (0, 100]"),
        (["--images", images, "--target-agreement", "nan"], "percentage in (0, 100]"),
        (["--images", images, "--max-fallback", "-1"], "--max-fallback must be"),
        (["--images", images, "--seed", "-2"], "--seed must be"),
    ]
    for argv, words in cases:
        rc = calibrate_main(["--model", micro[2], "--out", out] + argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and words in err and len(err.splitlines()) == 1, (argv, err)
    assert not os.path.exists(out)


def test_modelopt_missing_is_a_one_line_error(micro, tmp_path, capsys, monkeypatch, shared_data):
    monkeypatch.setitem(sys.modules, "modelopt", None)  # import modelopt → ImportError
    out = tmp_path / "int8.onnx"
    rc = calibrate_main(["--model", micro[2], "--images", os.path.join(VOC_DIR, "images"),
                         "--quantizer", "modelopt", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nvidia-modelopt" in err, err
    assert not out.exists()


def test_modelopt_placement_keeps_the_criss_cross_float(micro, tmp_path, shared_data,
                                                         monkeypatch):
    pytest.importorskip("modelopt.onnx.quantization",
                        reason="NVIDIA ModelOpt is optional (pip install 'nvidia-modelopt[onnx]')")
    from export.graph import cca_functions, cca_nodes
    from calib.qdq_graph import cca_inputs_through_dq
    from ccnet.images import load_image
    from runtime import Segmenter

    out = str(tmp_path / "out" / "modelopt.onnx")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # ModelOpt's shape inference writes temp files here: none may stay
    report = quantize(micro[2], out, images_dir=shared_data, num_images=4, quantizer="modelopt",
                      progress=False)
    assert os.listdir(cwd) == []
    model = onnx.load(out)
    assert report["quantizer"] == "modelopt" and report["quantized_convs"] > 0
    assert len(cca_nodes(model)) == 2 and cca_functions(model)
    assert not cca_inputs_through_dq(model)
    image = load_image(os.path.join(VOC_DIR, "images", "1_image.png"))
    with Segmenter(out, device="cpu") as seg:
        assert seg.meta.extra["calibration"]["quantizer"] == "modelopt"
        assert np.isfinite(seg.predict(image).logits).all()


# ----------------------------------------------------------------------------- built-in model
SCENE_SIZES = [(256, 512), (300, 500), (360, 480), (240, 640), (400, 400), (288, 384)]


@pytest.fixture(scope="module")
def demo_target(tmp_path_factory, shared_data, demo_onnx):
    """ccnet-demo, INT8 with --target-agreement 99.5: calibrated on the real photos plus 24
    synthetic scenes of six sizes, agreement measured on the real photos (the hard case for a
    model trained on synthetic streets), then parity on the real photos (pooled pixels of the
    VOC and ADE20K samples) and on 8 held-out scenes (seeds 1000000+)."""
    import shutil

    import cv2

    from calib.selection import photos_in_folder
    from ccnet.files import write_image
    from ccnet.synthetic import make_scene, write_dataset
    from runtime.parity import parity_report

    work = tmp_path_factory.mktemp("demo_target")
    calib = work / "calibration"
    calib.mkdir()
    for photo in photos_in_folder(shared_data):
        shutil.copy(photo, calib)
    for i in range(24):
        image, _ = make_scene(600000 + i, SCENE_SIZES[i % len(SCENE_SIZES)])
        write_image(str(calib / f"scene_{600000 + i}.png"), image)
    int8 = str(work / "demo_int8.onnx")
    report = quantize(demo_onnx, int8, images_dir=str(calib), holdout=shared_data,
                      target_agreement=99.5, progress=False)
    scenes = write_dataset(str(work / "scenes"), 8, seed=1000000)
    agreement, pixels = {}, {}
    for name, (data, layout) in {"voc": (VOC_DIR, "voc"), "ade20k": (ADE_DIR, "ade20k"),
                                 "scenes": (scenes, "folder")}.items():
        parity = parity_report("ccnet-demo", data, layout, onnx_int8=int8, progress=False)
        agreement[name] = parity["backends"][1]["pixel_agreement"]
        pixels[name] = sum(int(np.prod(cv2.imread(p).shape[:2])) for p in photos_in_folder(data))
    agreement["real"] = (agreement["voc"] * pixels["voc"] + agreement["ade20k"] * pixels["ade20k"]) \
        / (pixels["voc"] + pixels["ade20k"])
    print(report["quantized_convs"], report["convs"], agreement)
    return report, agreement


@pytest.mark.slow
def test_builtin_model_reaches_995_agreement_on_real_photos_and_scenes(demo_target):
    report, agreement = demo_target
    assert report["holdout_agreement_pct"] >= 99.5
    assert agreement["real"] >= 99.5 and agreement["scenes"] >= 99.5, agreement


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured: 99.5 % on the real photos needs more than 6 "
                                       "of the 32 Convs in float, also with --clip-search mse "
                                       "(neither do bias correction, activation equalization, "
                                       "weight fine-tuning or quantization-aware training; "
                                       "bench/RESULTS.md, docs/int8.md)")
def test_builtin_model_keeps_80_percent_of_convs_int8_at_995(demo_target):
    report, _ = demo_target
    assert report["quantized_convs"] >= 0.8 * report["convs"]

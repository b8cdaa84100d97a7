"""ccnet predict / ccnet eval through main(argv) in-process, the evaluation loop, plus one real
subprocess run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from ccnet import processing
from ccnet.datasets import open_dataset
from ccnet.evaluation import evaluate, evaluate_one
from ccnet.images import load_image
from ccnet.metrics import IoUAccumulator
from ccnet.visualize import overlay
from cli.eval import main as eval_main
from cli.predict import main as predict_main

from helpers import REPO, VOC_DIR, one_error_line


@pytest.fixture(scope="module")
def voc_photo(shared_data):
    return os.path.join(VOC_DIR, "images", "1_image.png")


@pytest.fixture(scope="module")
def expected_prediction(tiny_ckpt, voc_photo):
    from ccnet import load_model, predict

    model = load_model(tiny_ckpt)
    return model, predict(model, load_image(voc_photo))


def test_predict_label_map_and_logits(tmp_path, tiny_ckpt, voc_photo, expected_prediction, capsys):
    _, expected = expected_prediction
    out, logits = tmp_path / "labels.png", tmp_path / "logits.npy"
    rc = predict_main(["--ckpt", tiny_ckpt, "--image", voc_photo, "--out", str(out),
                       "--save-logits", str(logits)])
    assert rc == 0
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint8 and written.shape == (513, 513)
    np.testing.assert_array_equal(written, expected.labels)
    np.testing.assert_array_equal(np.load(logits), expected.logits)
    assert sorted(os.listdir(tmp_path)) == ["labels.png", "logits.npy"]
    assert "wrote" in capsys.readouterr().out


def test_predict_overlay(tmp_path, tiny_ckpt, voc_photo, expected_prediction):
    model, expected = expected_prediction
    out = tmp_path / "overlay.png"
    assert predict_main(["--ckpt", tiny_ckpt, "--image", voc_photo, "--out", str(out),
                         "--overlay"]) == 0
    image = load_image(voc_photo)
    np.testing.assert_array_equal(cv2.imread(str(out)), overlay(
        image, expected.labels, model.meta.palette))


def test_eval_cli_json(tmp_path, tiny_ckpt, expected_prediction, capsys):
    model, _ = expected_prediction
    report = tmp_path / "metrics.json"
    rc = eval_main(["--ckpt", tiny_ckpt, "--data", VOC_DIR, "--dataset", "voc",
                    "--max-images", "1", "--json", str(report)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "aeroplane" in out and "mIoU:" in out
    got = json.loads(report.read_text())
    # independent accumulation of the same two predictions
    from ccnet import predict

    acc = IoUAccumulator(21)
    for image_path, label in open_dataset(VOC_DIR, "voc").head(1):
        acc.update(predict(model, load_image(image_path)).labels, label)
    expected = acc.compute()
    assert got["num_images"] == 1 and got["dataset"] == "voc"
    assert got["miou"] == pytest.approx(expected["miou"])
    assert got["aacc"] == pytest.approx(expected["aacc"])
    assert len(got["per_class"]) == 21 and got["per_class"][0]["class"] == "background"


def test_evaluation_loop_with_any_segment_fn(shared_data):
    """The loop the runtimes reuse: any callable image -> labels (or an object with .labels)."""
    dataset = open_dataset(VOC_DIR, "folder")
    labels = {p: l for p, l in dataset}

    def oracle(image):  # perfect segmenter: looks the label up by image content
        for path, label in labels.items():
            if np.array_equal(load_image(path), image):
                return processing.Prediction(labels=np.where(label == 255, 0, label), logits=None)
        raise AssertionError

    result = evaluate_one(oracle, dataset, 21, progress=False)
    assert result["miou"] == 1.0 and result["aacc"] == 1.0 and result["num_images"] == 3
    assert np.isnan(result["iou"][2])  # bicycle: in no image

    result = evaluate_one(lambda image: np.zeros(image.shape[:2], np.int64), dataset, 21,
                          progress=False)
    assert result["iou"][1] == 0.0 and 0 < result["iou"][0] < 1
    from ccnet import CCNetError

    with pytest.raises(CCNetError, match="its label"):
        evaluate_one(lambda image: np.zeros((3, 3), np.int64), dataset, 21, progress=False)


def test_evaluation_loop_agreement_with_a_reference(shared_data):
    """Several segmenters in one pass: each gets its own metrics and its pixel agreement with
    the reference segmenter's labels."""
    dataset = open_dataset(VOC_DIR, "folder")
    zeros = lambda image: np.zeros(image.shape[:2], np.int64)  # noqa: E731
    half = lambda image: np.pad(np.zeros((image.shape[0], image.shape[1] // 2), np.int64),  # noqa: E731
                                ((0, 0), (0, image.shape[1] - image.shape[1] // 2)),
                                constant_values=1)
    results = evaluate({"zeros": zeros, "half": half}, dataset, 21, reference="zeros",
                       progress=False)
    assert results["zeros"]["pixel_agreement"] == 1.0
    widths = [load_image(p).shape[1] for p, _ in dataset]
    heights = [load_image(p).shape[0] for p, _ in dataset]
    expected = sum(h * (w // 2) for h, w in zip(heights, widths)) / sum(
        h * w for h, w in zip(heights, widths))
    assert results["half"]["pixel_agreement"] == pytest.approx(expected)
    assert results["zeros"]["num_images"] == results["half"]["num_images"] == 3


# ----------------------------------------------------------------------------- bad input
def _bad_ckpts(tmp_path, tiny_ckpt):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    data = open(tiny_ckpt, "rb").read()
    half = tmp_path / "half.pth"
    half.write_bytes(data[: len(data) // 2])
    raw = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    raw["meta"]["ccnet_config"]["num_classes"] = 19  # meta disagrees with the tensors
    wrong = tmp_path / "wrong_shape.pth"
    torch.save(raw, wrong)
    return {"text": str(text), "half": str(half), "wrong": str(wrong)}


@pytest.mark.parametrize("case,pattern", [
    ("unknown_name", "did you mean 'ccnet_r50-d8_4xb2-80k_cityscapes-512x1024'"),
    ("missing", "checkpoint not found"),
    ("text", "is not a PyTorch checkpoint"),
    ("half", "is truncated or corrupt"),
    ("keys", r"keys do not match config 'ccnet_r50-d8_4xb4-20k_voc12aug-512x512'.*missing \(first: "),
    ("shape", r"shape mismatch for 'decode_head.conv_seg.weight'.*expected \(19, 64, 1, 1\), "
              r"found \(21, 64, 1, 1\)"),
    ("image", "cannot read image"),
    ("logits_folder", "does not exist"),
])
def test_predict_bad_input(tmp_path, tiny_ckpt, voc_photo, capsys, case, pattern):
    bad = _bad_ckpts(tmp_path, tiny_ckpt)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "pred.png"
    ckpt, image, extra = tiny_ckpt, voc_photo, []
    if case == "unknown_name":
        ckpt = "ccnet_r50-d8_4xb2-80k_cityscape-512x1024"
    elif case == "missing":
        ckpt = str(tmp_path / "none.pth")
    elif case in ("text", "half"):
        ckpt = bad[case]
    elif case == "keys":
        extra = ["--config", "ccnet_r50-d8_4xb4-20k_voc12aug-512x512"]
    elif case == "shape":
        ckpt = bad["wrong"]
    elif case == "image":
        image = bad["text"]
    elif case == "logits_folder":  # the label map must not be left alone either
        extra = ["--save-logits", str(tmp_path / "no_such_dir" / "x.npy")]
    rc = predict_main(["--ckpt", ckpt, "--image", image, "--out", str(out)] + extra)
    assert rc != 0
    import re

    assert re.search(pattern, one_error_line(capsys))
    assert os.listdir(outdir) == []  # no output and no temp file


@pytest.mark.parametrize("case,pattern", [
    ("layout", "does not have the cityscapes layout: expected leftImg8bit/val"),
    ("classes", "predicts 21 classes but ade20k has 150"),
    ("missing_data", "dataset folder not found"),
])
def test_eval_bad_input(tmp_path, tiny_ckpt, capsys, case, pattern, shared_data):
    from helpers import ADE_DIR

    data, kind = {"layout": (VOC_DIR, "cityscapes"), "classes": (ADE_DIR, "ade20k"),
                  "missing_data": (str(tmp_path / "nope"), "folder")}[case]
    report = tmp_path / "m.json"
    rc = eval_main(["--ckpt", tiny_ckpt, "--data", data, "--dataset", kind, "--json", str(report),
                    "--no-progress"])
    assert rc != 0
    import re

    assert re.search(pattern, one_error_line(capsys))
    assert not report.exists()


def test_outputs_written_all_or_nothing(tmp_path):
    from ccnet.files import commit_together

    def fail(path):
        raise OSError("disk full")

    with pytest.raises(OSError):
        commit_together([(str(tmp_path / "a.png"), lambda p: open(p, "w").close()),
                       (str(tmp_path / "b.npy"), fail)])
    assert os.listdir(tmp_path) == []


def test_subprocess_exit_code(tmp_path):
    """One real process: the exit code and the single stderr line reach the shell."""
    bad = tmp_path / "photo.jpg"
    bad.write_text("not an image")
    out = tmp_path / "out.png"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "cli.main", "predict", "--model", "whatever.pth",
                           "--image", str(bad), "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: cannot read image {bad}: not an image "
                                                "file or corrupt"]
    assert not out.exists()


def test_eval_accepts_exported_onnx(tmp_path, tiny_ckpt, tiny_onnx, capsys):
    """ccnet-eval runs an exported .onnx through the runtime's Segmenter (ONNX Runtime) and
    gets the PyTorch checkpoint's metrics on the same images."""
    reports = {}
    for name, model in (("torch", tiny_ckpt), ("onnx", tiny_onnx)):
        reports[name] = tmp_path / f"{name}.json"
        assert eval_main(["--ckpt", model, "--data", VOC_DIR, "--dataset", "voc",
                          "--max-images", "2", "--no-progress",
                          "--json", str(reports[name])]) == 0
    torch_report, onnx_report = (json.loads(reports[n].read_text()) for n in ("torch", "onnx"))
    assert onnx_report["num_images"] == 2
    assert onnx_report["aacc"] == pytest.approx(torch_report["aacc"], abs=1e-3)

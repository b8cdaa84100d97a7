"""`ccnet deploy`: the whole pipeline on a small real model (checkpoint → ONNX FP32/FP16/INT8 →
parity vs PyTorch on real labelled photos → report), resuming (unchanged steps skipped, changed
inputs rerun), the unlabelled agreement path, and bad input."""
from __future__ import annotations

import importlib.util
import json
import os

import cv2
import numpy as np
import pytest

from cli.deploy import main as deploy_main

from helpers import VOC_DIR, make_checkpoint

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def micro_ckpt(tmp_path_factory):
    """A narrow depth-18 CCNet with VOC classes and a small test scale (seconds per step)."""
    from ccnet.zoo import custom_config

    config = custom_config("micro-r18-voc", depth=18, num_classes=21, channels=32,
                           aux_channels=16, dataset="voc", test_scale=(192, 96),
                           base_channels=16, stem_channels=16)
    path = tmp_path_factory.mktemp("micro") / "micro.pth"
    make_checkpoint(path, config, seed=3)
    return str(path)


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("calib")
    for name in sorted(os.listdir(os.path.join(VOC_DIR, "images"))):
        image = cv2.imread(os.path.join(VOC_DIR, "images", name))
        cv2.imwrite(str(folder / name), image)
    return folder


def _deploy(capsys, *argv):
    rc = deploy_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _steps(out_dir):
    report = json.load(open(os.path.join(out_dir, "report.json")))
    return report, {s["name"]: s["skipped"] for s in report["steps"]}


def _pytorch_miou(ckpt, max_images):
    """mmseg's mIoU of the checkpoint on the first VOC images, computed independently."""
    from ccnet import load_model, predict
    from ccnet.datasets import open_dataset
    from ccnet.images import load_image
    from ccnet.metrics import IoUAccumulator

    model = load_model(ckpt)
    acc = IoUAccumulator(21)
    for image_path, label in open_dataset(VOC_DIR, "voc").head(max_images):
        acc.update(predict(model, load_image(image_path)).labels, label)
    return 100 * acc.compute()["miou"]


def test_deploy_resumes(tmp_path, micro_ckpt, calib_dir, capsys):
    out = tmp_path / "deployed"
    argv = ["--model", micro_ckpt, "--out", out, "--calib-images", calib_dir, "--data", VOC_DIR,
            "--dataset", "voc", "--max-images", "2", "--engine", "--no-progress"]
    rc, stdout, err = _deploy(capsys, *argv)
    assert rc == 0, err
    report, steps = _steps(out)
    assert not any(steps.values())
    assert {"export fp32 onnx", "fp16 onnx", "int8 onnx (calibration)", "parity (labelled data)",
            "latency"} <= set(steps)
    assert {f["file"] for f in report["files"]} >= {"model.onnx", "model_fp16.onnx",
                                                    "model_int8.onnx", "calibration_cache.json"}
    for f in report["files"]:
        assert f["bytes"] == os.path.getsize(out / f["file"]) > 0
    reference, *exported = report["parity"]["backends"]
    assert reference["name"] == "pytorch"
    assert reference["miou"] == pytest.approx(_pytorch_miou(micro_ckpt, 2))
    rows = {b["precision"]: b for b in exported if b["name"] == "onnxruntime"}
    assert rows["fp32"]["pixel_agreement"] > 99.9 and abs(rows["fp32"]["delta_miou"]) < 0.1
    for precision in ("fp16", "int8"):
        assert rows[precision]["delta_miou"] == pytest.approx(
            rows[precision]["miou"] - reference["miou"])
    assert [r["model"] for r in report["latency"]] == ["fp32", "fp16", "int8"]
    assert all(r["ms_per_image"] > 0 for r in report["latency"])
    markdown = (out / "report.md").read_text()
    assert "| pytorch | fp32 |" in markdown and "model_int8.onnx" in markdown
    if not HAS_TENSORRT:
        assert any("TensorRT engines not built" in n for n in report["notes"])
        assert "note: TensorRT engines not built" in stdout
        assert not list(out.glob("*.engine"))

    # unchanged: every step is skipped and no file is rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.onnx")}
    rc, stdout, err = _deploy(capsys, *argv)
    assert rc == 0, err
    assert all(_steps(out)[1].values()) and "0 step(s) ran" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.onnx")} == mtimes

    # new calibration images: INT8 and what reads it rerun; export and FP16 do not
    last = sorted(calib_dir.iterdir())[-1]  # not the first: that one is the FP16 probe photo
    cv2.imwrite(str(last), cv2.flip(cv2.imread(str(last)), 1))
    (out / "model_fp16.onnx").unlink()  # a deleted output is made again
    rc, _, err = _deploy(capsys, *argv)
    assert rc == 0, err
    _, steps = _steps(out)
    assert steps["export fp32 onnx"] and not steps["fp16 onnx"]
    assert not steps["int8 onnx (calibration)"] and not steps["parity (labelled data)"]
    assert (out / "model_fp16.onnx").is_file()

    # no labelled data: agreement with PyTorch on the calibration images instead
    rc, _, err = _deploy(capsys, "--model", micro_ckpt, "--out", out, "--calib-images",
                         calib_dir, "--precision", "fp32,fp16", "--max-images", "2")
    assert rc == 0, err
    report, steps = _steps(out)
    assert steps["export fp32 onnx"] and steps["fp16 onnx"]
    assert report["parity"]["kind"] == "agreement" and report["parity"]["num_images"] == 2
    rows = {b["precision"]: b for b in report["parity"]["backends"]}
    assert set(rows) == {"fp32", "fp16"} and rows["fp32"]["pixel_agreement"] > 99.9
    assert any("without labels" in n for n in report["notes"])


@pytest.mark.parametrize("extra, expect", [
    (["--precision", "int8"], "int8 needs calibration images"),
    (["--precision", "fp64"], "unknown precision fp64"),
    (["--data", VOC_DIR], "--data DIR and --dataset KIND together"),
    (["--calib-images", "/no/such/folder"], "not found"),
])
def test_deploy_bad_input(extra, expect, tmp_path, micro_ckpt, capsys):
    rc, _, err = _deploy(capsys, "--model", micro_ckpt, "--out", tmp_path / "d", *extra)
    assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "d").exists()


def test_deploy_out_is_a_file(tmp_path, micro_ckpt, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    rc, _, err = _deploy(capsys, "--model", micro_ckpt, "--out", target)
    assert rc == 2 and "is a file" in err and target.read_text() == "keep me"


def test_default_engine_profile():
    from ccnet.zoo import get_config
    from runtime.deploy import default_profile

    ade = default_profile(get_config("ccnet_r50-d8_4xb4-80k_ade20k-512x512").meta())
    assert ade == {"min": "input:1x3x256x256", "opt": "input:1x3x512x688",
                   "max": "input:1x3x512x2048"}
    slide = default_profile(get_config("ccnet_r50-d8_4xb2-80k_cityscapes-769x769").meta())
    assert set(slide.values()) == {"input:1x3x769x769"}


@pytest.mark.tensorrt
def test_deploy_builds_engines(tmp_path, micro_ckpt, calib_dir, capsys):
    if not HAS_TENSORRT:
        pytest.skip("TensorRT is not installed (see the README, section 'Workflow')")
    out = tmp_path / "deployed"
    rc, _, err = _deploy(capsys, "--model", micro_ckpt, "--out", out, "--calib-images",
                         calib_dir, "--engine", "--precision", "fp16,int8", "--max-images", "2")
    assert rc == 0, err
    report, _ = _steps(out)
    names = {f["file"] for f in report["files"]}
    assert {"model_fp16.engine", "model_int8.engine"} <= names
    engines = [b for b in report["parity"]["backends"] if b["name"] == "tensorrt"]
    assert len(engines) == 2 and all(b["pixel_agreement"] > 90 for b in engines)
    assert np.isfinite([r["ms_per_image"] for r in report["latency"]]).all()


def test_engine_steps_on_tensorrt_doubles(tmp_path, tiny_onnx, monkeypatch, request):
    """deploy's engine step driven by the TensorRT doubles of tests/trt_doubles.py (documented
    TensorRT behaviour; they compute no outputs): an engine + side file per precision with the
    default profile, skipped when nothing changed, rebuilt when the ONNX changes."""
    import shutil

    from export.metadata import read_metadata
    from runtime.deploy import DeployPlan, StepRunner, build_engines, default_profile
    from runtime.engine_info import parse_shapes

    from trt_doubles import install

    trt, _ = install(monkeypatch, request)
    library = tmp_path / "libccnet_plugins.so"  # stands for the plugin library
    library.write_bytes(b"plugin")
    trt.registry.libraries[str(library)] = [("CrissCrossAttention", "1", "ccnet")]
    out = tmp_path / "deployed"
    out.mkdir()
    onnx_path = str(out / "model.onnx")
    shutil.copy(tiny_onnx, onnx_path)
    plan = DeployPlan(model="unused", out_dir=str(out), precisions=("fp32",), engine=True,
                      plugins=str(library))

    def run_engine_step():
        steps, notes = StepRunner(plan.path("deploy_state.json")), []
        engines = build_engines(plan, steps, {"fp32": onnx_path}, notes)
        return engines, steps.records(), notes

    engines, records, notes = run_engine_step()
    engine = str(out / "model_fp32.engine")
    assert engines == {"fp32-engine": engine} and not notes
    assert records == [{"name": "fp32 engine", "seconds": records[0]["seconds"],
                        "skipped": False}]
    profile = json.load(open(engine + ".json"))["profiles"][0]["input"]
    expected = default_profile(read_metadata(onnx_path))
    for which in ("min", "opt", "max"):
        assert tuple(profile[which]) == tuple(parse_shapes(expected[which])["input"])
    assert run_engine_step()[1][0]["skipped"]
    import onnx

    model = onnx.load(onnx_path)
    model.doc_string = "edited"
    onnx.save(model, onnx_path)
    assert not run_engine_step()[1][0]["skipped"]

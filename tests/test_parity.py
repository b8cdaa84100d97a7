"""The parity report (runtime.parity, ccnet parity): end to end on the real photos, --max-delta
failure, trained-model parity."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from helpers import VOC_DIR, make_checkpoint

from cli.parity import main as parity_main  # noqa: E402
from runtime import parity  # noqa: E402


def _export(ckpt, out, **kw):
    from export.to_onnx import export_onnx

    export_onnx(ckpt, str(out), verify=False, log=lambda *a, **k: None, **kw)
    return str(out)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory, tiny_onnx, shared_data):
    from calib.quantize import quantize

    folder = tmp_path_factory.mktemp("parity")
    fp32 = tiny_onnx
    int8 = str(folder / "tiny_int8.onnx")
    quantize(fp32, int8, images_dir=os.path.join(VOC_DIR, "images"), method="minmax",
             progress=False)
    return fp32, int8


def test_parity_cli_on_real_photos(tiny_ckpt, tiny_files, tmp_path, capsys):
    fp32, int8 = tiny_files
    out_json, out_png = tmp_path / "parity.json", tmp_path / "parity.png"
    rc = parity_main(["--ckpt", tiny_ckpt, "--data", VOC_DIR, "--dataset", "voc", "--onnx", fp32,
                      "--onnx-int8", int8, "--json", str(out_json), "--plot", str(out_png),
                      "--max-delta", "100", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "ΔmIoU" in text and "onnxruntime-int8" in text and "parity OK" in text
    report = json.loads(out_json.read_text())
    assert out_png.stat().st_size > 1000
    assert report["num_images"] == 3
    names = [(b["name"], b["precision"]) for b in report["backends"]]
    assert names == [("pytorch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    for b in report["backends"]:
        assert set(b) >= {"name", "precision", "miou", "delta_miou", "pixel_agreement",
                          "per_class"}
        assert 0.0 <= b["pixel_agreement"] <= 100.0
        assert len(b["per_class"]) == 21 and "aeroplane" in b["per_class"]
    torch_row, fp32_row = report["backends"][:2]
    assert torch_row["delta_miou"] == 0.0 and torch_row["pixel_agreement"] == 100.0
    assert fp32_row["pixel_agreement"] > 99.0 and abs(fp32_row["delta_miou"]) < 0.5


@pytest.fixture(scope="module")
def labelled_by_model_a(tmp_path_factory, tiny_ckpt, shared_data):
    """A folder dataset whose labels are the PyTorch predictions of the tiny model (mIoU 100)."""
    from PIL import Image

    import ccnet
    from ccnet.images import iter_images, load_image

    root = tmp_path_factory.mktemp("labelled")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    model = ccnet.load_model(tiny_ckpt)
    for path in iter_images(os.path.join(VOC_DIR, "images")):
        image = load_image(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        Image.fromarray(image[:, :, ::-1]).save(root / "images" / f"{stem}.png")
        labels = ccnet.predict(model, image).labels.astype(np.uint8)
        Image.fromarray(labels, mode="L").save(root / "labels" / f"{stem}.png")
    return str(root)


def test_max_delta_failure_exits_non_zero(tiny_ckpt, tiny_config, labelled_by_model_a, tmp_path,
                                          capsys):
    # Model B: same architecture, other weights; its ONNX disagrees with model A's labels.
    make_checkpoint(tmp_path / "b.pth", tiny_config, seed=7)
    other = _export(str(tmp_path / "b.pth"), tmp_path / "b.onnx")
    out_json = tmp_path / "p.json"
    rc = parity_main(["--ckpt", tiny_ckpt, "--data", labelled_by_model_a, "--dataset", "folder",
                      "--onnx", other, "--max-delta", "1", "--json", str(out_json),
                      "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1, captured.out
    assert "parity FAILED" in captured.err
    report = json.loads(out_json.read_text())
    assert report["backends"][0]["miou"] == pytest.approx(100.0)
    assert abs(report["backends"][1]["delta_miou"]) > 1.0


def test_parity_bad_input(tiny_ckpt, tiny_files, tmp_path, capsys):
    rc = parity_main(["--ckpt", tiny_ckpt, "--data", str(tmp_path), "--dataset", "voc",
                      "--onnx", tiny_files[0], "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and len(err.splitlines()) == 1
    rc = parity_main(["--ckpt", tiny_ckpt, "--data", VOC_DIR, "--dataset", "voc",
                      "--no-progress"])
    assert rc == 2 and "nothing to compare" in capsys.readouterr().err
    engine = tmp_path / "model.engine"  # no TensorRT here: the runner must say so in one line
    engine.write_bytes(b"not an engine")
    rc = parity_main(["--ckpt", tiny_ckpt, "--data", VOC_DIR, "--dataset", "voc",
                      "--engine", str(engine), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err


# ----------------------------------------------------------------------------- trained model
HELD_OUT_SEED = 900_000  # far from the training seeds of ccnet-demo
CALIB_SEED = 800_000


def _demo_checkpoint():
    from ccnet.zoo import BUILTIN

    entry = BUILTIN.get("ccnet-demo")
    return entry[1] if entry and os.path.isfile(entry[1]) else None


@pytest.mark.skipif(_demo_checkpoint() is None,
                    reason="the trained built-in model ccnet-demo (ccnet/weights) is not there yet")
def test_trained_model_fp16_and_int8_parity_on_held_out_scenes(tmp_path):
    from calib.quantize import quantize
    from ccnet.synthetic import write_dataset
    from export.to_fp16 import convert_to_fp16

    data, calib_dir = tmp_path / "held_out", tmp_path / "calib"
    write_dataset(str(data), 8, seed=HELD_OUT_SEED)
    write_dataset(str(calib_dir), 8, seed=CALIB_SEED)
    fp32 = _export("ccnet-demo", tmp_path / "demo.onnx")
    fp16 = str(tmp_path / "demo_fp16.onnx")
    convert_to_fp16(fp32, fp16, verify=False, log=lambda *a, **k: None)
    int8 = str(tmp_path / "demo_int8.onnx")
    quantize(fp32, int8, images_dir=os.path.join(str(calib_dir), "images"), progress=False)
    report = parity.parity_report("ccnet-demo", str(data), "folder", onnx=fp32, onnx_fp16=fp16,
                                  onnx_int8=int8, progress=False)
    print(parity.format_report(report))
    rows = {b["precision"]: b for b in report["backends"][1:]}
    assert report["backends"][0]["miou"] > 50.0  # a trained model, not noise
    assert abs(rows["fp32"]["delta_miou"]) <= 0.05
    assert abs(rows["fp16"]["delta_miou"]) <= 0.1
    assert abs(rows["int8"]["delta_miou"]) <= 1.0

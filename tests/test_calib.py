"""calib.quantize: Q/DQ placement, calibration cache round trip, plugin form, bad input.

Photo choice and mixed sizes: test_calib_data.py; malformed caches and output paths:
test_calib_cache.py; mixed precision: test_calib_sensitivity.py."""
from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ccnet.errors import CCNetError
from ccnet.files import file_sha256

from helpers import VOC_DIR

calib_quantize = pytest.importorskip("calib.quantize")
from calib.data import CalibrationWarning  # noqa: E402
from calib.qdq_graph import is_quantized  # noqa: E402
from cli.calibrate import main as calibrate_main  # noqa: E402


@pytest.fixture(scope="module")
def voc_images(shared_data):
    return os.path.join(VOC_DIR, "images")


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory, tiny_onnx, voc_images):
    folder = tmp_path_factory.mktemp("int8")
    out, cache = str(folder / "tiny_int8.onnx"), str(folder / "calib.json")
    report = calib_quantize.quantize(tiny_onnx, out, images_dir=voc_images, cache=cache,
                                     progress=False)
    return out, cache, report


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def test_qdq_placement(tiny_int8):
    from export.graph import cca_functions, cca_nodes
    from export.metadata import read_metadata

    path, _, report = tiny_int8
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    producer = _producers(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and report["quantized_convs"] == len(convs)
    for conv in convs:  # activation and weight both come out of a DequantizeLinear
        for tensor in conv.input[:2]:
            assert producer[tensor].op_type == "DequantizeLinear", (conv.name, tensor)
    weight_scales = [numpy_helper.to_array(next(i for i in model.graph.initializer
                                                if i.name == producer[c.input[1]].input[1])).size
                     for c in convs]
    assert max(weight_scales) > 1, "weights are not quantized per channel"
    zero_points = [numpy_helper.to_array(i) for i in model.graph.initializer
                   if i.name.endswith("zero_point")]
    assert zero_points and all(z.dtype in (np.int8, np.int32) and not z.any() for z in zero_points)
    # The criss-cross attention stays float: its inputs are plain Conv outputs, its body unchanged.
    nodes = cca_nodes(model)
    assert len(nodes) == 2 and len(cca_functions(model)) == 1
    for node in nodes:
        for tensor in node.input:
            assert producer[tensor].op_type == "Conv", (node.name, tensor)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   for n in cca_functions(model)[0].node)
    # Residual Adds of the ResNet read their shortcut through Q/DQ (TensorRT Conv+Add fusion).
    residual = [n for n in model.graph.node if n.op_type == "Add"
                and "Conv" in [producer[t].op_type for t in n.input if t in producer]]
    assert len(residual) == 8 and report["residual_adds"] == 8  # ResNet-18: 8 blocks
    for add in residual:
        assert sorted(producer[t].op_type for t in add.input) == ["Conv", "DequantizeLinear"]
    meta = read_metadata(model)
    assert meta.extra["precision"] == "int8" and meta.extra["function"] is True
    assert meta.extra["calibration"]["method"] == "entropy"
    assert meta.extra["calibration"]["num_images"] == 3
    assert meta.extra["calibration"]["fallback_layers"] == []
    assert meta.extra["calibration"]["int8_convs"] == meta.extra["calibration"]["convs"] == len(convs)
    assert sorted(meta.extra["calibration"]["images"]) == ["114_image.png", "1_image.png",
                                                           "23_image.png"]


def test_cache_round_trip_is_bit_exact(tiny_int8, tiny_onnx, tmp_path):
    path, cache, _ = tiny_int8
    with open(cache) as f:
        data = json.load(f)
    assert data["model_sha256"] == file_sha256(tiny_onnx)
    assert data["method"] == "entropy" and data["num_images"] == 3
    assert sorted(os.path.basename(p) for p in data["images"]) == ["114_image.png", "1_image.png",
                                                                    "23_image.png"]
    assert all(len(r) == 2 and r[0] < r[1] for r in data["tensors"].values())
    again = str(tmp_path / "again.onnx")
    report = calib_quantize.quantize(tiny_onnx, again, cache=cache, progress=False)
    assert report["from_cache"] and report["method"] == "entropy"
    first = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    second = {i.name: numpy_helper.to_array(i) for i in onnx.load(again).graph.initializer}
    scales = [k for k in first if k.endswith("_scale")]
    assert len(scales) > 30 and set(first) == set(second)
    for name in first:
        assert first[name].dtype == second[name].dtype
        assert first[name].tobytes() == second[name].tobytes(), name


def test_int8_runs_on_onnxruntime(tiny_int8, tiny_onnx, photos):
    from ccnet.images import load_image
    from runtime import Segmenter

    image = load_image(photos[0])
    with Segmenter(tiny_int8[0], device="cpu") as int8, Segmenter(tiny_onnx, device="cpu") as fp32:
        assert int8.meta.extra["precision"] == "int8"
        pred8, pred32 = int8.predict(image), fp32.predict(image)
    assert pred8.labels.shape == image.shape[:2]
    assert np.isfinite(pred8.logits).all()
    # INT8 approximates the FP32 logits (random weights: loose bound, relative to their range).
    spread = float(np.abs(pred32.logits).max())
    assert float(np.abs(pred8.logits - pred32.logits).max()) < 0.25 * spread


def test_no_function_writes_plugin_form(tiny_int8, tiny_onnx, tmp_path):
    from export.graph import cca_functions, cca_nodes
    from runtime import Segmenter

    out = str(tmp_path / "plugin_int8.onnx")
    calibrate_main(["--onnx", tiny_onnx, "--cache", tiny_int8[1], "--no-function",
                         "--out", out])
    model = onnx.load(out)
    assert len(cca_nodes(model)) == 2 and not cca_functions(model)
    assert is_quantized(model)
    with pytest.raises(CCNetError, match="plugin form"):
        Segmenter(out, device="cpu")


def test_plugin_form_input_is_calibrated_through_its_function(tiny_onnx, tiny_int8, tmp_path):
    from export.graph import cca_functions

    plugin = onnx.load(tiny_onnx)
    del plugin.functions[:]
    plugin_path = str(tmp_path / "plugin.onnx")
    onnx.save(plugin, plugin_path)
    out = str(tmp_path / "int8.onnx")
    report = calib_quantize.quantize(plugin_path, out, images_dir=os.path.join(VOC_DIR, "images"),
                                     num_images=1, method="minmax", progress=False)
    assert report["num_images"] == 1 and cca_functions(onnx.load(out))


# ----------------------------------------------------------------------------- bad input
def _fails(argv, capsys, match):
    rc = calibrate_main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert match in err, err
    return err


def test_empty_image_folder(tiny_onnx, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "x.onnx"
    _fails(["--onnx", tiny_onnx, "--images", str(empty), "--out", str(out)], capsys, "no photos")
    assert not out.exists()


def test_unreadable_images_skipped_then_fail_if_none_left(tiny_onnx, tmp_path, capsys, photos):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    (broken / "b.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "x.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fails(["--onnx", tiny_onnx, "--images", str(broken), "--out", str(out)], capsys,
               "could be read")
    assert not out.exists()
    shutil.copy(photos[0], broken / "c.png")
    with pytest.warns(CalibrationWarning, match="a.jpg"):
        report = calib_quantize.quantize(tiny_onnx, str(out), images_dir=str(broken),
                                         method="minmax", progress=False)
    assert report["num_images"] == 1 and out.exists()
    assert sorted(os.path.basename(p) for p, _ in report["skipped"]) == ["a.jpg", "b.png"]


def test_cache_for_another_model(tiny_onnx, tiny_int8, tmp_path, capsys):
    with open(tiny_int8[1]) as f:
        cache = json.load(f)
    cache["model_sha256"] = "0" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(cache))
    out = tmp_path / "x.onnx"
    _fails(["--onnx", tiny_onnx, "--cache", str(other), "--out", str(out)], capsys,
           "another model")
    assert not out.exists()
    _fails(["--onnx", tiny_onnx, "--cache", str(tmp_path / "missing.json"), "--out", str(out)],
           capsys, "not found")
    _fails(["--onnx", tiny_onnx, "--cache", tiny_int8[1], "--method", "minmax", "--out",
            str(out)], capsys, "entropy ranges")
    assert not out.exists()


def test_already_quantized_model(tiny_int8, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    _fails(["--onnx", tiny_int8[0], "--images", os.path.join(VOC_DIR, "images"), "--out",
            str(out)], capsys, "already quantized")
    assert not out.exists()


def test_onnx_without_metadata(tiny_onnx, tmp_path, capsys):
    model = onnx.load(tiny_onnx)
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    out = tmp_path / "x.onnx"
    _fails(["--onnx", str(bare), "--images", os.path.join(VOC_DIR, "images"), "--out", str(out)],
           capsys, "metadata")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    _fails(["--onnx", str(tmp_path / "junk.onnx"), "--images", os.path.join(VOC_DIR, "images"),
            "--out", str(out)], capsys, "ONNX")
    _fails(["--onnx", tiny_onnx, "--out", str(out)], capsys, "no calibration data")
    assert not out.exists()


def test_ort_cpu_target_keeps_cca_float(tiny_int8, tiny_onnx, tmp_path, photos):
    """ort-cpu placement: Conv outputs quantized (ORT QLinearConv), CCA inputs still float."""
    from export.graph import cca_nodes
    from runtime import Segmenter
    from ccnet.images import load_image

    out = str(tmp_path / "ort_int8.onnx")
    report = calib_quantize.quantize(tiny_onnx, out, cache=tiny_int8[1], target="ort-cpu",
                                     progress=False)
    assert report["target"] == "ort-cpu"
    model = onnx.load(out)
    producer = _producers(model)
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        assert producer[conv.input[0]].op_type == "DequantizeLinear"
        assert producer[conv.input[1]].op_type == "DequantizeLinear"
    for node in cca_nodes(model):
        assert all(producer[t].op_type == "Conv" for t in node.input)
    used = {t for n in model.graph.node for t in n.input}
    assert all(i.name in used for i in model.graph.initializer)
    with Segmenter(out, device="cpu") as seg:
        assert seg.segment(load_image(photos[0])).shape == load_image(photos[0]).shape[:2]


def test_calibration_inputs_follow_inference_preprocessing(tiny_config, voc_images):
    """Whole mode: the test-scale input of ccnet.processing.preprocess; slide mode: its windows."""
    from calib.data import load_calibration_data, network_inputs
    from calib.selection import photos_in_folder
    from ccnet.images import load_image
    from ccnet.processing import preprocess

    meta = tiny_config.meta if not callable(tiny_config.meta) else tiny_config.meta()
    photos = photos_in_folder(voc_images)
    data = load_calibration_data(photos, meta, 2)
    assert len(data.images) == 2 and len(data.batches) == 2 and not data.holdout
    assert np.array_equal(data.inputs[0][0], preprocess(load_image(data.images[0]), meta))
    slide = meta.replace(mode="slide", crop_size=(128, 128), stride=(96, 96))
    windows = network_inputs(load_image(photos[0]), slide)
    assert len(windows) > 1 and all(w.shape[2:] == (128, 128) for w in windows)
    fixed = network_inputs(load_image(photos[0]), meta, (2, 3, 64, 96))
    assert fixed[0].shape == (2, 3, 64, 96)


def test_percentile_cache_round_trip(tiny_onnx, voc_images, tmp_path):
    cache = str(tmp_path / "p.json")
    first, second = str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx")
    calib_quantize.quantize(tiny_onnx, first, images_dir=voc_images, num_images=1,
                            method="percentile", cache=cache, progress=False)
    calib_quantize.quantize(tiny_onnx, second, cache=cache, progress=False)
    a = {i.name: numpy_helper.to_array(i) for i in onnx.load(first).graph.initializer}
    b = {i.name: numpy_helper.to_array(i) for i in onnx.load(second).graph.initializer}
    assert set(a) == set(b)
    assert all(a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)

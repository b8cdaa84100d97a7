"""``--clip-search mse``: per-tensor clipping thresholds chosen by the Conv output error.

On the tiny model: the searched thresholds give every Conv input a layer output error no larger
than the calibrated (minmax) threshold and a smaller one in total, the INT8 file gets the new
scales, and a cache written with the search reproduces the file bit-exactly without photos.
Its effect on the built-in model's agreement is measured in bench/int8_accuracy.py."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

from helpers import VOC_DIR

from calib.clip_search import (best_clip, capture, conv_session, dequantized_conv_weights,  # noqa: E402
                               quantize_dequantize)
from calib.quantize import quantize  # noqa: E402
from cli.calibrate import main as calibrate_main  # noqa: E402


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_onnx, shared_data):
    """The tiny model quantized with minmax ranges, without and with the clip search."""
    folder = tmp_path_factory.mktemp("clip_search")
    files = {}
    for name, search in (("minmax", None), ("mse", "mse")):
        out, cache = str(folder / f"{name}.onnx"), str(folder / f"{name}.json")
        report = quantize(tiny_onnx, out, images_dir=os.path.join(VOC_DIR, "images"),
                          num_images=2, method="minmax", clip_search=search, cache=cache,
                          progress=False)
        with open(cache) as f:
            files[name] = (out, json.load(f), report)
    return folder, files


def _layer_errors(tiny_onnx, qdq_path, ranges, batches):
    """{tensor: summed squared output error of the Convs reading it with ``ranges``}."""
    fp32 = onnx.load(tiny_onnx)
    weights = dequantized_conv_weights(onnx.load(qdq_path))
    convs = [n for n in fp32.graph.node if n.op_type == "Conv" and n.name in weights]
    values = capture(fp32, fp32.graph.input[0].name, batches,
                     [c.input[0] for c in convs] + [c.output[0] for c in convs])
    errors = {}
    for conv in convs:
        session = conv_session(conv, *weights[conv.name])
        clip = max(abs(v) for v in ranges[conv.input[0]])
        for x, ref in zip(values[conv.input[0]], values[conv.output[0]]):
            out = session.run(None, {"x": quantize_dequantize(x, clip)})[0]
            errors[conv.input[0]] = errors.get(conv.input[0], 0.0) + float(
                np.square(out - ref, dtype=np.float64).sum())
    return errors


def test_searched_clips_reduce_the_layer_output_error(searched, tiny_onnx):
    from calib.data import network_inputs
    from calib.source import load_source
    from ccnet.images import load_image

    _, files = searched
    (_, minmax, report), (mse_path, mse, mse_report) = files["minmax"], files["mse"]
    assert mse["clip_search"] == "mse" and minmax["clip_search"] is None
    assert mse_report["images"] == report["images"]
    meta = load_source(tiny_onnx).meta
    batches = [b for p in report["images"] for b in network_inputs(load_image(p), meta)]
    before = _layer_errors(tiny_onnx, mse_path, minmax["tensors"], batches)
    after = _layer_errors(tiny_onnx, mse_path, mse["tensors"], batches)
    assert set(before) == set(after) and len(before) > 3
    assert all(after[t] <= before[t] for t in before), (before, after)
    assert sum(after.values()) < sum(before.values())
    changed = [t for t in before if mse["tensors"][t] != minmax["tensors"][t]]
    assert changed and all(mse["tensors"][t][0] == -mse["tensors"][t][1] for t in changed)


def test_searched_ranges_change_the_file_and_the_cache_reproduces_it(searched, tiny_onnx):
    from export.metadata import read_metadata

    folder, files = searched
    mse_path, mse_cache = files["mse"][0], str(folder / "mse.json")
    scales = {name: {i.name: i.raw_data for i in onnx.load(path).graph.initializer
                     if i.name.endswith("_scale")} for name, (path, _, _) in files.items()}
    assert scales["minmax"].keys() == scales["mse"].keys()
    assert scales["minmax"] != scales["mse"]
    again = str(folder / "again.onnx")
    report = quantize(tiny_onnx, again, cache=mse_cache, progress=False)
    assert report["from_cache"] and report["clip_search"] == "mse"
    assert onnx.load(again).graph == onnx.load(mse_path).graph
    assert read_metadata(onnx.load(again)).extra["calibration"]["clip_search"] == "mse"


def test_clip_search_option_errors(searched, tiny_onnx, tmp_path, capsys):
    folder, _ = searched
    out = str(tmp_path / "int8.onnx")
    images = os.path.join(VOC_DIR, "images")
    cases = [
        (["--cache", str(folder / "minmax.json"), "--clip-search", "mse"], "made without"),
        (["--images", images, "--clip-search", "mse", "--target", "ort-cpu"], "--target tensorrt"),
        (["--images", images, "--clip-search", "mse", "--quantizer", "modelopt"], "--quantizer ort"),
    ]
    for argv, words in cases:
        rc = calibrate_main(["--model", tiny_onnx, "--out", out] + argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and words in err and len(err.splitlines()) == 1, (argv, err)
    assert not os.path.exists(out)


def test_ties_keep_the_calibrated_threshold():
    class Identity:
        def run(self, _, feeds):
            return [feeds["x"]]

    x = [np.zeros((1, 1, 2, 2), np.float32)]  # every threshold quantizes zeros exactly
    assert best_clip(x + [np.ones_like(x[0])], [(Identity(), [x[0], x[0]])], (-3.0, 2.0)) > 0
    assert best_clip(x, [(Identity(), x)], (-3.0, 2.0)) == 3.0

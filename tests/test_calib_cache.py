"""Malformed calibration caches and unusable output paths: one-line errors, nothing written."""
from __future__ import annotations

import json
import os

import pytest

from helpers import VOC_DIR

from calib.cache import load_cache  # noqa: E402
from calib.quantize import quantize  # noqa: E402
from ccnet.errors import CCNetError  # noqa: E402
from cli.calibrate import main as calibrate_main  # noqa: E402


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory, tiny_onnx, shared_data):
    folder = tmp_path_factory.mktemp("cache")
    cache = str(folder / "good.json")
    quantize(tiny_onnx, str(folder / "int8.onnx"), images_dir=os.path.join(VOC_DIR, "images"),
             num_images=1, method="minmax", cache=cache, progress=False)
    with open(cache) as f:
        return json.load(f)


def _first(cache):
    return sorted(cache["tensors"])[0]


def _set_range(value):
    def edit(cache):
        cache["tensors"][_first(cache)] = value
    return edit


def _set(key, value):
    def edit(cache):
        cache[key] = value
    return edit


def _rename_tensor(cache):
    cache["tensors"]["no_such_tensor"] = cache["tensors"].pop(_first(cache))


def _drop_tensor(cache):
    del cache["tensors"][_first(cache)]


# (defect, edit of a valid cache dict or raw file bytes, words the error must contain)
DEFECTS = [
    ("not JSON", b'{"format": ', "cannot read"),
    ("binary garbage", b"\xff\xfe\x00\x81garbage", "cannot read"),
    ("a JSON list", b"[1, 2]", "not a ccnet calibration cache"),
    ("another format", _set("format", "tensorrt-cache"), "not a ccnet calibration cache"),
    ("future version", _set("version", 2), "version 2"),
    ("unknown method", _set("method", "kl"), "'kl'"),
    ("unknown clip search", _set("clip_search", "kl"), "clip search 'kl'"),
    ("sha256 not a string", _set("model_sha256", 42), "model_sha256"),
    ("negative image count", _set("num_images", -3), "num_images"),
    ("image list of numbers", _set("images", [1, 2]), "images must be a list"),
    ("tensors a list", _set("tensors", [[0, 1]]), "no tensor ranges"),
    ("no tensors", _set("tensors", {}), "no tensor ranges"),
    ("range of three", _set_range([0.0, 1.0, 2.0]), "not [low, high]"),
    ("range a number", _set_range(1.0), "not [low, high]"),
    ("string end", _set_range(["0.1", 1.0]), "not [low, high]"),
    ("null end", _set_range([None, 1.0]), "not [low, high]"),
    ("bool end", _set_range([False, True]), "not [low, high]"),
    ("NaN end", _set_range([float("nan"), 1.0]), "not finite"),
    ("infinite end", _set_range([-1.0, float("inf")]), "not finite"),
    ("beyond float32", _set_range([-1.0, 1e39]), "not finite"),
    ("integer beyond any float", _set_range([-1, 10 ** 400]), "not finite"),
    ("inverted range", _set_range([2.0, -1.0]), "inverted"),
    ("zero-width range", _set_range([0.0, 0.0]), "empty"),
    ("unknown tensor", _rename_tensor, "does not have"),
    ("missing tensor", _drop_tensor, "lacks the ranges"),
    ("another model", _set("model_sha256", "0" * 64), "another model"),
]


@pytest.mark.parametrize("defect,edit,words", DEFECTS, ids=[d[0] for d in DEFECTS])
def test_malformed_cache_is_a_one_line_error(defect, edit, words, good_cache, tiny_onnx,
                                             tmp_path, capsys):
    path = tmp_path / "bad.json"
    if isinstance(edit, bytes):
        path.write_bytes(edit)
    else:
        cache = json.loads(json.dumps(good_cache))
        edit(cache)
        path.write_text(json.dumps(cache))
    out = tmp_path / "int8.onnx"
    rc = calibrate_main(["--model", tiny_onnx, "--cache", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert words in err, err
    assert not out.exists()


def test_cache_folder_and_valid_cache(good_cache, tiny_onnx, tmp_path):
    from calib.calibrate import calibrated_tensor_names
    from calib.source import load_source

    with pytest.raises(CCNetError, match="is a folder"):
        load_cache(str(tmp_path))
    path = tmp_path / "good.json"
    path.write_text(json.dumps(good_cache))
    source = load_source(tiny_onnx)
    cache = load_cache(str(path), source.sha256, calibrated_tensor_names(source.model))
    assert all(low < high for low, high in cache["tensors"].values())


@pytest.mark.parametrize("flag", ["--out", "--cache", "--sensitivity-json"])
def test_unwritable_output_fails_before_calibration(flag, tiny_onnx, tmp_path, capsys,
                                                    monkeypatch, shared_data):
    import calib.quantize

    def must_not_run(*args, **kwargs):
        raise AssertionError("calibration ran before the output path was checked")

    monkeypatch.setattr(calib.quantize, "collect_ranges", must_not_run)
    outputs = {"--out": str(tmp_path / "int8.onnx"), "--cache": str(tmp_path / "c.json"),
               "--sensitivity-json": str(tmp_path / "s.json")}
    outputs[flag] = str(tmp_path)  # a folder
    argv = ["--model", tiny_onnx, "--images", os.path.join(VOC_DIR, "images"),
            "--max-fallback", "1"]
    for name, value in outputs.items():
        argv += [name, value]
    rc = calibrate_main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is a folder" in err and len(err.splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def test_output_must_be_an_onnx_file(tiny_onnx, tmp_path, capsys, shared_data):
    rc = calibrate_main(["--model", tiny_onnx, "--images", os.path.join(VOC_DIR, "images"),
                         "--out", str(tmp_path / "int8.engine")])
    assert rc == 2 and ".onnx" in capsys.readouterr().err

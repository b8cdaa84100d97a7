"""Calibration data: which photos are chosen (folder, glob, list, seed) and calibration on photos
of different sizes with every method."""
from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import onnx
import pytest

from helpers import ADE_DIR, VOC_DIR

from calib.data import CalibrationWarning, load_calibration_data  # noqa: E402
from calib.options import METHODS  # noqa: E402
from calib.quantize import quantize  # noqa: E402
from calib.selection import candidate_photos, is_photo, photos_from_glob, photos_in_folder  # noqa: E402
from ccnet.errors import CCNetError  # noqa: E402
from cli.calibrate import main as calibrate_main  # noqa: E402

PHOTOS = {"1_image.png", "23_image.png", "114_image.png", "voc_sample.png", "rgb.jpg",
          "ADE_val_00000001.jpg", "ADE_train_00000001.jpg"}


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, shared_data):
    """The real photos (each its own size) plus synthetic scenes of two other sizes."""
    from ccnet.files import write_image
    from ccnet.synthetic import make_scene

    folder = tmp_path_factory.mktemp("mixed")
    for photo in photos_in_folder(shared_data):
        shutil.copy(photo, folder / os.path.basename(photo))
    for i, size in enumerate([(160, 320), (300, 200)]):
        write_image(str(folder / f"scene_{610000 + i}.png"), make_scene(610000 + i, size)[0])
    return str(folder)


def _meta(tiny_config):
    return tiny_config.meta if not callable(tiny_config.meta) else tiny_config.meta()


def test_label_maps_and_label_folders_are_not_calibration_photos(shared_data):
    found = photos_in_folder(shared_data)
    assert {os.path.basename(p) for p in found} == PHOTOS
    for path in found:
        assert not any(part.startswith(("label", "annotation")) for part in path.split(os.sep))
    # Palette (VOC) and grey (ADE20K) label PNGs are recognised from their header alone.
    assert not is_photo(os.path.join(VOC_DIR, "labels", "1.png"))
    assert not is_photo(os.path.join(ADE_DIR, "annotations", "ADE_val_00000001.png"))
    assert is_photo(os.path.join(VOC_DIR, "images", "1_image.png"))
    pngs = photos_from_glob(os.path.join(shared_data, "**", "*.png"))
    assert {os.path.basename(p) for p in pngs} == {"1_image.png", "23_image.png",
                                                   "114_image.png", "voc_sample.png"}


def test_list_file_and_glob_choose_the_photos(shared_data, tmp_path):
    listing = tmp_path / "calib.txt"
    listing.write_text("# photos\n" + os.path.join(ADE_DIR, "images", "ADE_val_00000001.jpg")
                       + "\n\n" + os.path.join(VOC_DIR, "labels", "1.png") + "\n")
    assert [os.path.basename(p) for p in candidate_photos(image_list=str(listing))] == \
        ["ADE_val_00000001.jpg"]
    jpgs = candidate_photos(os.path.join(ADE_DIR, "images", "*.jpg"))
    assert len(jpgs) == 2
    with pytest.raises(CCNetError, match="no photos"):
        candidate_photos(os.path.join(shared_data, "*.tif"))
    with pytest.raises(CCNetError, match="not both"):
        candidate_photos(shared_data, str(listing))
    with pytest.raises(CCNetError, match="not found"):
        candidate_photos(image_list=str(tmp_path / "missing.txt"))


def test_seeded_shuffle_picks_a_reproducible_sample(shared_data, tiny_config):
    meta = _meta(tiny_config)
    photos = photos_in_folder(shared_data)
    first = load_calibration_data(photos, meta, 3, seed=5)
    again = load_calibration_data(photos, meta, 3, seed=5)
    other = load_calibration_data(photos, meta, 3, seed=6)
    assert first.images == again.images and len(first.images) == 3
    assert first.images != other.images
    held = load_calibration_data(photos, meta, 3, holdout=2, seed=5)
    assert held.images == first.images and len(held.holdout) == 2
    assert not set(held.holdout) & set(held.images)
    from ccnet.images import load_image  # the held-out photos are kept decoded for the probe

    assert len(held.holdout_photos) == 2
    assert all(np.array_equal(pixels, load_image(path))
               for pixels, path in zip(held.holdout_photos, held.holdout))
    assert not first.holdout_photos
    with pytest.raises(CCNetError, match="held-out"):
        load_calibration_data(photos[:2], meta, 3, holdout=2)


def test_mixed_size_folder_calibrates_with_every_method(tiny_onnx, mixed_folder, tmp_path):
    from runtime import Segmenter

    sizes = {np.asarray(__import__("cv2").imread(os.path.join(mixed_folder, f))).shape[:2]
             for f in os.listdir(mixed_folder)}
    assert len(sizes) >= 5  # photos of many sizes in one folder
    for method in METHODS:
        out, cache = str(tmp_path / f"{method}.onnx"), str(tmp_path / f"{method}.json")
        report = quantize(tiny_onnx, out, images_dir=mixed_folder, method=method, num_images=5,
                          seed=1, cache=cache, progress=False)
        assert report["num_images"] == 5 and report["quantized_convs"] == report["convs"]
        with open(cache) as f:
            recorded = json.load(f)
        assert recorded["images"] == [os.path.abspath(p) for p in report["images"]]
        assert recorded["seed"] == 1 and recorded["method"] == method
        with Segmenter(out, device="cpu") as seg:
            assert seg.meta.extra["calibration"]["method"] == method


def test_minmax_over_mixed_sizes_equals_the_extremes_of_each_photo(tiny_onnx, mixed_folder,
                                                                   tmp_path):
    """Shape-by-shape collection merges exactly: the ranges of the whole set are the extremes of
    the per-photo ranges."""
    photos = sorted(photos_in_folder(mixed_folder))[:3]
    per_photo = []
    for i, photo in enumerate(photos):
        listing = tmp_path / f"one_{i}.txt"
        listing.write_text(photo + "\n")
        cache = tmp_path / f"one_{i}.json"
        quantize(tiny_onnx, str(tmp_path / f"one_{i}.onnx"), image_list=str(listing),
                 method="minmax", cache=str(cache), progress=False)
        per_photo.append(json.loads(cache.read_text())["tensors"])
    listing = tmp_path / "all.txt"
    listing.write_text("\n".join(photos) + "\n")
    cache = tmp_path / "all.json"
    quantize(tiny_onnx, str(tmp_path / "all.onnx"), image_list=str(listing), method="minmax",
             cache=str(cache), progress=False)
    merged = json.loads(cache.read_text())["tensors"]
    for name, (low, high) in merged.items():
        assert low == min(r[name][0] for r in per_photo), name
        assert high == max(r[name][1] for r in per_photo), name


def test_unreadable_listed_photo_is_reported_and_skipped(tiny_onnx, tmp_path, capsys):
    listing = tmp_path / "calib.txt"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    listing.write_text(f"{broken}\n{tmp_path / 'gone.png'}\n"
                       + os.path.join(VOC_DIR, "images", "1_image.png") + "\n")
    out = tmp_path / "x.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        rc = calibrate_main(["--model", tiny_onnx, "--list", str(listing), "--method", "minmax",
                             "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0 and onnx.load(str(out)).graph.node
    assert "1_image.png" in text and f"skipped {broken}" in text and "gone.png" in text


def test_cli_on_the_shared_data_folder_uses_its_seven_photos(tiny_onnx, shared_data, tmp_path,
                                                             capsys):
    """The folder mixes photo sizes and label maps: default (entropy) calibration works and the
    summary lists exactly the photos."""
    out, cache = tmp_path / "int8.onnx", tmp_path / "calib.json"
    rc = calibrate_main(["--model", tiny_onnx, "--images", shared_data, "--cache", str(cache),
                         "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    listed = {os.path.basename(line.strip()) for line in text.splitlines()
              if line.startswith("  ")}
    assert listed == PHOTOS and "calibrated on 7 photo(s), entropy" in text
    assert {os.path.basename(p) for p in json.loads(cache.read_text())["images"]} == PHOTOS

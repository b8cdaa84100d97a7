"""Dataset readers on the real samples and on constructed Cityscapes/VOC/ADE20K trees."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from ccnet import CCNetError
from ccnet.datasets import open_dataset, read_label, reduce_zero_label

from helpers import ADE_DIR, VOC_DIR


def _png(path, array, palette=False):
    """Write a label PNG: grayscale ("L") or, like VOC, palette ("P") with indices = values."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    array = np.asarray(array, dtype=np.uint8)
    if palette:
        im = Image.new("P", (array.shape[1], array.shape[0]))
        im.putdata(array.flatten().tolist())
        im.putpalette([v for i in range(256) for v in ((i * 7) % 256, (i * 13) % 256, i)])
    else:
        im = Image.fromarray(array)
    im.save(path)
    assert Image.open(path).mode == ("P" if palette else "L")


def _photo(path, h=6, w=8):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_voc_palette_labels_are_indices(shared_data):
    """VOC labels are palette PNGs: we must get indices (cv2 would give the colours)."""
    path = os.path.join(VOC_DIR, "labels", "1.png")
    label = read_label(path)
    assert label.ndim == 2 and label.dtype == np.uint8
    assert set(np.unique(label)) == {0, 1, 255}  # background, aeroplane, void (data README)
    assert cv2.imread(path, cv2.IMREAD_UNCHANGED).ndim == 3  # why PIL is used


@pytest.mark.parametrize("kind", ["voc", "folder"])
def test_voc_samples_folder(shared_data, kind):
    ds = open_dataset(VOC_DIR, kind)
    assert len(ds) == 3 and not ds.reduce_zero_label
    names = [(os.path.basename(i), os.path.basename(l)) for i, l in ds.pairs]
    assert names == [("114_image.png", "114.png"), ("1_image.png", "1.png"),
                     ("23_image.png", "23.png")]
    for image_path, label in ds:
        assert label.shape == cv2.imread(image_path).shape[:2]
        assert set(np.unique(label)) <= set(range(21)) | {255}


def test_ade20k_samples_reduce_zero_label(shared_data):
    ds = open_dataset(ADE_DIR, "ade20k")
    assert len(ds) == 2 and ds.reduce_zero_label
    raw = np.array(Image.open(ds.pairs[1][1]))  # ADE_val_00000001
    assert "ADE_val_00000001" in ds.pairs[1][0]
    reduced = ds.load_label(ds.pairs[1][1])
    assert set(np.unique(raw)) == {0, 1, 2, 3, 5, 7, 10, 18}
    assert set(np.unique(reduced)) == {255, 0, 1, 2, 4, 6, 9, 17}
    np.testing.assert_array_equal(reduced[raw == 0], 255)
    np.testing.assert_array_equal(reduced[raw > 0], raw[raw > 0] - 1)


def test_reduce_zero_label_rule():
    label = np.array([0, 1, 2, 150, 255], dtype=np.uint8)
    # gt[gt==0]=255; gt=gt-1; gt[gt==254]=255
    assert reduce_zero_label(label).tolist() == [255, 0, 1, 149, 255]


def test_cityscapes_tree(tmp_path):
    root = tmp_path / "cityscapes"
    for city, frame in [("frankfurt", "000000_000294"), ("lindau", "000001_000019")]:
        _photo(str(root / "leftImg8bit" / "val" / city / f"{city}_{frame}_leftImg8bit.png"))
        _png(str(root / "gtFine" / "val" / city / f"{city}_{frame}_gtFine_labelTrainIds.png"),
             np.full((6, 8), 18))
        _png(str(root / "gtFine" / "val" / city / f"{city}_{frame}_gtFine_labelIds.png"),
             np.full((6, 8), 33))
    _photo(str(root / "leftImg8bit" / "train" / "aachen" / "aachen_0_0_leftImg8bit.png"))
    ds = open_dataset(str(root), "cityscapes")
    assert len(ds) == 2 and ds.kind == "cityscapes"
    assert all(l.endswith("_gtFine_labelTrainIds.png") for _, l in ds.pairs)
    assert all(label.max() == 18 for _, label in ds)
    # a missing labelTrainIds file is named
    os.remove(ds.pairs[0][1])
    with pytest.raises(CCNetError, match="createTrainIdLabelImgs"):
        open_dataset(str(root), "cityscapes")


def test_voc2012_tree(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for name in ("2007_000033", "2007_000042", "2007_000061"):
        _photo(str(base / "JPEGImages" / f"{name}.jpg"))
        _png(str(base / "SegmentationClass" / f"{name}.png"), np.full((6, 8), 15), palette=True)
    os.makedirs(base / "ImageSets" / "Segmentation")
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n2007_000061\n")
    for root in (tmp_path, tmp_path / "VOCdevkit", base):
        ds = open_dataset(str(root), "voc")
        assert [os.path.basename(i) for i, _ in ds.pairs] == ["2007_000033.jpg", "2007_000061.jpg"]
        assert all(set(np.unique(label)) == {15} for _, label in ds)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\nmissing_one\n")
    with pytest.raises(CCNetError, match="missing"):
        open_dataset(str(base), "voc")


def test_ade_challenge_tree(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    _photo(str(base / "images" / "validation" / "ADE_val_00000001.jpg"))
    _photo(str(base / "images" / "training" / "ADE_train_00000001.jpg"))
    _png(str(base / "annotations" / "validation" / "ADE_val_00000001.png"), np.full((6, 8), 3))
    for root in (tmp_path, base):
        ds = open_dataset(str(root), "ade20k")
        assert len(ds) == 1 and next(iter(ds))[1].max() == 2


def test_folder_layout_and_head(tmp_path):
    for stem in ("a", "b", "c"):
        _photo(str(tmp_path / "images" / f"{stem}.jpg"))
        _png(str(tmp_path / "labels" / f"{stem}.png"), np.ones((6, 8)))
    ds = open_dataset(str(tmp_path), "folder")
    assert len(ds) == 3 and len(ds.head(2)) == 2 and len(ds.head(None)) == 3
    path, image, label = next(ds.samples())
    assert image.shape == (6, 8, 3) and label.shape == (6, 8)


@pytest.mark.parametrize("kind,expected", [
    ("cityscapes", "leftImg8bit/val"), ("ade20k", "annotations/validation"),
    ("voc", "ImageSets/Segmentation/val.txt"), ("folder", "images/ and labels/")])
def test_wrong_layout_names_expected_layout(tmp_path, kind, expected):
    _photo(str(tmp_path / "photos" / "x.jpg"))
    with pytest.raises(CCNetError, match=f"does not have the {kind} layout: expected .*") as e:
        open_dataset(str(tmp_path), kind)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_other_bad_datasets(tmp_path):
    with pytest.raises(CCNetError, match="dataset folder not found"):
        open_dataset(str(tmp_path / "nope"), "folder")
    with pytest.raises(CCNetError, match="unknown dataset kind"):
        open_dataset(str(tmp_path), "coco")
    _photo(str(tmp_path / "images" / "a.jpg"))
    _photo(str(tmp_path / "images" / "b.jpg"))
    os.makedirs(tmp_path / "labels")
    _png(str(tmp_path / "labels" / "a.png"), np.zeros((6, 8)))
    with pytest.raises(CCNetError, match=r"1 image\(s\) .* no label PNG .*first: b.jpg"):
        open_dataset(str(tmp_path), "folder")
    # a colour-rendered label (RGB) is refused, not misread
    cv2.imwrite(str(tmp_path / "labels" / "b.png"), np.zeros((6, 8, 3), np.uint8))
    ds = open_dataset(str(tmp_path), "folder")
    with pytest.raises(CCNetError, match="RGB image"):
        list(ds)
    (tmp_path / "labels" / "b.png").write_text("garbage")
    with pytest.raises(CCNetError, match="cannot read label"):
        list(ds)

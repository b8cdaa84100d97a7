"""Evaluation dataset readers: (image path, label path) pairs + mmseg's label loading.  Torch-free.

Layouts (docs/mmseg-inference.md, "Datasets"):

- ``cityscapes``: ``leftImg8bit/<split>/**/*_leftImg8bit.png`` ↔
  ``gtFine/<split>/**/*_gtFine_labelTrainIds.png`` (19 train ids, 255 ignore).
- ``ade20k``: ``images/validation/*.jpg`` ↔ ``annotations/validation/*.png`` (the
  ADEChallengeData2016 folder or its parent), or ``images/`` ↔ ``annotations/`` directly;
  ``reduce_zero_label``: 0 ("other") → 255, k → k-1.
- ``voc``: ``JPEGImages/*.jpg`` ↔ ``SegmentationClass/*.png`` listed in
  ``ImageSets/Segmentation/<split>.txt`` (VOC2012 folder or its VOCdevkit parent), or the
  ``folder`` layout with VOC labels.
- ``folder``: ``images/`` ↔ ``labels/`` with matching stems (``x_image.png`` ↔ ``x.png`` is
  accepted too).

Labels are read with PIL as mmseg's LoadAnnotations does (``imdecode_backend='pillow'``): VOC
labels are palette PNGs and PIL returns their palette *indices*, whereas cv2 would return the
palette colours.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .errors import CCNetError
from .files import require_folder
from .images import IMAGE_EXTS, load_image
from .zoo import dataset_info

DATASET_KINDS = ("cityscapes", "ade20k", "voc", "folder")
# Stem suffixes dropped when pairing images and labels of a generic folder.
_IMAGE_SUFFIXES = ("_leftImg8bit", "_image", "_img")
_LABEL_SUFFIXES = ("_gtFine_labelTrainIds", "_labelTrainIds", "_label", "_labels", "_mask",
                   "_gt", "_target")


def read_label(path: str) -> np.ndarray:
    """Read a label PNG as an H×W array of class indices (palette indices for "P" PNGs)."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise CCNetError(f"label not found: {path}")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
                raise CCNetError(f"label {path} is a {im.mode} image; expected a single-channel "
                                 "(class index or palette) PNG, not a colour rendering")
            label = np.array(im)
    except (UnidentifiedImageError, OSError) as e:
        raise CCNetError(f"cannot read label {path}: not an image file or corrupt") from e
    return label.astype(np.uint8) if label.dtype == bool else label


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmseg's reduce_zero_label: 0 → 255 (ignored), k → k-1 (ADE20K ids 1..150 → 0..149)."""
    label = np.array(label, dtype=np.int64)
    label[label == 0] = 255
    label = label - 1
    label[label == 254] = 255
    return label.astype(np.uint8)


@dataclass
class SegDataset:
    """A list of (image path, label path) pairs and how to read the labels."""

    kind: str
    root: str
    pairs: List[Tuple[str, str]]
    reduce_zero_label: bool = False

    def __len__(self) -> int:
        return len(self.pairs)

    def load_label(self, path: str) -> np.ndarray:
        label = read_label(path)
        return reduce_zero_label(label) if self.reduce_zero_label else label

    def __iter__(self) -> Iterator[Tuple[str, np.ndarray]]:
        """(image path, H×W label array ready for the metric: ignore = 255)."""
        for image_path, label_path in self.pairs:
            yield image_path, self.load_label(label_path)

    def samples(self) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
        """(image path, BGR uint8 image, label array)."""
        for image_path, label in self:
            yield image_path, load_image(image_path), label

    def head(self, n: Optional[int]) -> "SegDataset":
        """The first ``n`` pairs (all if ``n`` is None)."""
        pairs = self.pairs if n is None else self.pairs[:max(0, n)]
        return SegDataset(self.kind, self.root, list(pairs), self.reduce_zero_label)


# ----------------------------------------------------------------------------- layouts
def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _strip(stem: str, suffixes: Sequence[str]) -> str:
    for s in suffixes:
        if stem.endswith(s) and len(stem) > len(s):
            return stem[:-len(s)]
    return stem


def _files(folder: str, exts=IMAGE_EXTS) -> List[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(exts) and os.path.isfile(os.path.join(folder, f)))


def _pair_by_stem(image_dir: str, label_dir: str, kind: str, expected: str) -> List[Tuple[str, str]]:
    """Pair images with labels of the same stem (or the same stem without common suffixes)."""
    labels = {}
    for p in _files(label_dir, (".png",)):
        labels.setdefault(_stem(p), p)
        labels.setdefault(_strip(_stem(p), _LABEL_SUFFIXES), p)
    pairs, unmatched = [], []
    for image in _files(image_dir):
        stem = _stem(image)
        label = labels.get(stem) or labels.get(_strip(stem, _IMAGE_SUFFIXES))
        if label is None:
            unmatched.append(os.path.basename(image))
        else:
            pairs.append((image, label))
    if unmatched:
        raise CCNetError(f"{len(unmatched)} image(s) in {image_dir} have no label PNG of the same "
                         f"name in {label_dir} (first: {unmatched[0]}); the {kind} layout is "
                         f"{expected}")
    return pairs


def _no_layout(root: str, kind: str, expected: str) -> CCNetError:
    return CCNetError(f"{root} does not have the {kind} layout: expected {expected}; "
                      "pass the dataset's root folder or the right --dataset")


def _cityscapes(root: str, split: str) -> SegDataset:
    expected = (f"leftImg8bit/{split}/<city>/*_leftImg8bit.png and "
                f"gtFine/{split}/<city>/*_gtFine_labelTrainIds.png")
    image_dir = os.path.join(root, "leftImg8bit", split)
    label_dir = os.path.join(root, "gtFine", split)
    if not (os.path.isdir(image_dir) and os.path.isdir(label_dir)):
        raise _no_layout(root, "cityscapes", expected)
    pairs, missing = [], []
    for image in sorted(glob.glob(os.path.join(image_dir, "**", "*_leftImg8bit.png"),
                                  recursive=True)):
        rel = os.path.relpath(image, image_dir)
        label = os.path.join(label_dir, rel[:-len("_leftImg8bit.png")]
                             + "_gtFine_labelTrainIds.png")
        (pairs if os.path.isfile(label) else missing).append((image, label))
    if missing:
        raise CCNetError(f"{len(missing)} Cityscapes image(s) lack their label, e.g. "
                         f"{missing[0][1]}: generate *_labelTrainIds.png with cityscapesscripts' "
                         "createTrainIdLabelImgs")
    return SegDataset("cityscapes", root, pairs)


def _ade20k(root: str, split: str) -> SegDataset:
    expected = ("images/validation/*.jpg and annotations/validation/*.png "
                "(ADEChallengeData2016), or images/ and annotations/")
    for base in (root, os.path.join(root, "ADEChallengeData2016")):
        for sub in (split, ""):
            image_dir = os.path.join(base, "images", sub)
            label_dir = os.path.join(base, "annotations", sub)
            if os.path.isdir(image_dir) and os.path.isdir(label_dir) and _files(image_dir):
                pairs = _pair_by_stem(image_dir, label_dir, "ade20k", expected)
                return SegDataset("ade20k", root, pairs, reduce_zero_label=True)
    raise _no_layout(root, "ade20k", expected)


def _voc(root: str, split: str) -> SegDataset:
    expected = (f"JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/{split}.txt "
                "(VOC2012), or images/ and labels/")
    for base in (root, os.path.join(root, "VOC2012"), os.path.join(root, "VOCdevkit", "VOC2012")):
        list_file = os.path.join(base, "ImageSets", "Segmentation", f"{split}.txt")
        if os.path.isfile(list_file) and os.path.isdir(os.path.join(base, "JPEGImages")):
            with open(list_file) as f:
                names = [line.strip() for line in f if line.strip()]
            pairs = [(os.path.join(base, "JPEGImages", n + ".jpg"),
                      os.path.join(base, "SegmentationClass", n + ".png")) for n in names]
            missing = [p for pair in pairs for p in pair if not os.path.isfile(p)]
            if missing:
                raise CCNetError(f"{len(missing)} file(s) listed in {list_file} are missing "
                                 f"(first: {missing[0]}): is the VOC2012 download complete?")
            return SegDataset("voc", root, pairs)
    if os.path.isdir(os.path.join(root, "images")) and os.path.isdir(os.path.join(root, "labels")):
        return SegDataset("voc", root, _folder(root).pairs)
    raise _no_layout(root, "voc", expected)


def _folder(root: str) -> SegDataset:
    expected = "images/ and labels/ with matching file names (labels: single-channel PNGs)"
    image_dir, label_dir = os.path.join(root, "images"), os.path.join(root, "labels")
    if not (os.path.isdir(image_dir) and os.path.isdir(label_dir)):
        raise _no_layout(root, "folder", expected)
    return SegDataset("folder", root, _pair_by_stem(image_dir, label_dir, "folder", expected))


def open_dataset(root: str, kind: str, split: str = "val") -> SegDataset:
    """Open an evaluation dataset of ``kind`` (cityscapes, ade20k, voc, folder) under ``root``.

    ``split`` is 'val' for Cityscapes/VOC; for ADE20K 'val' means ``validation``.
    Raises CCNetError naming the expected layout when the folder does not match.
    """
    if kind not in DATASET_KINDS:
        raise CCNetError(f"unknown dataset kind {kind!r}: use one of {', '.join(DATASET_KINDS)}")
    require_folder(root, "dataset folder")
    if kind == "cityscapes":
        dataset = _cityscapes(root, split)
    elif kind == "ade20k":
        dataset = _ade20k(root, "validation" if split == "val" else split)
    elif kind == "voc":
        dataset = _voc(root, split)
    else:
        dataset = _folder(root)
    if not dataset.pairs:
        raise CCNetError(f"no images found in {root} ({kind} layout): check the folder")
    return dataset


def check_model_fits_dataset(num_classes: int, kind: str) -> None:
    """A model is evaluated on a known dataset only if it predicts that dataset's classes."""
    info = dataset_info().get(kind)
    if info is not None and num_classes != len(info["classes"]):
        raise CCNetError(f"the model predicts {num_classes} classes but {kind} has "
                         f"{len(info['classes'])}: evaluate it on its own dataset (or --dataset "
                         "folder)")


__all__ = ["DATASET_KINDS", "check_model_fits_dataset", "SegDataset", "open_dataset", "read_label", "reduce_zero_label"]

"""The synthetic street-scene generator: determinism, class coverage, dataset layout."""
import os

import numpy as np

from ccnet.datasets import open_dataset, read_label
from ccnet.synthetic import CLASSES, IGNORE_INDEX, PALETTE, make_scene, write_dataset

SIZE = (128, 256)


def test_same_seed_same_scene_and_different_seeds_differ():
    a_img, a_lab = make_scene(7, SIZE)
    b_img, b_lab = make_scene(7, SIZE)
    c_img, _ = make_scene(8, SIZE)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)


def test_scene_shapes_types_and_label_range():
    image, labels = make_scene(3, SIZE)
    assert image.shape == SIZE + (3,) and image.dtype == np.uint8
    assert labels.shape == SIZE and labels.dtype == np.uint8
    valid = labels[labels != IGNORE_INDEX]
    assert valid.size == labels.size  # no ignore pixels without ignore_border
    assert valid.max() < len(CLASSES)
    assert len(PALETTE) == len(CLASSES) >= 6


def test_all_classes_appear_over_a_few_scenes():
    seen = set()
    for seed in range(6):
        seen |= set(np.unique(make_scene(seed, SIZE)[1]).tolist())
    assert seen >= set(range(len(CLASSES))), f"missing classes {set(range(len(CLASSES))) - seen}"


def test_ignore_border_marks_object_outlines():
    _, plain = make_scene(5, SIZE)
    _, bordered = make_scene(5, SIZE, ignore_border=1)
    ignored = bordered == IGNORE_INDEX
    assert 0 < ignored.mean() < 0.1
    assert np.array_equal(bordered[~ignored], plain[~ignored])


def test_write_dataset_writes_the_folder_layout(tmp_path):
    root = write_dataset(str(tmp_path / "synth"), 3, seed=10, size=SIZE)
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(root, "images")))
    assert stems == ["scene_000010", "scene_000011", "scene_000012"]
    assert sorted(os.listdir(os.path.join(root, "labels"))) == [s + ".png" for s in stems]
    # every file is complete: no temp file of the atomic writer is left beside them
    assert not [f for d in ("images", "labels") for f in os.listdir(os.path.join(root, d))
                if f.startswith(".tmp-")]
    dataset = open_dataset(root, "folder")
    assert len(dataset) == 3
    label = read_label(dataset.pairs[1][1])
    assert np.array_equal(label, make_scene(11, SIZE)[1])

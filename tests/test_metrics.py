"""IoUAccumulator = mmseg IoUMetric on constructed label maps (docs/mmseg-inference.md)."""
from __future__ import annotations

import numpy as np
import pytest

from ccnet import CCNetError
from ccnet.metrics import IoUAccumulator, format_table, result_to_json


def confusion_metrics(preds, gts, num_classes, ignore=255):
    """Independent computation through a dataset-wide confusion matrix."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for p, g in zip(preds, gts):
        keep = (g != ignore) & (p < num_classes) & (g < num_classes)
        np.add.at(cm, (g[keep], p[keep]), 1)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    label = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = tp / union, tp / label
    return iou, acc, tp.sum() / label.sum()


def test_hand_computed_example():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 2, 0]])
    acc = IoUAccumulator(num_classes=4)
    acc.update(pred, gt)
    r = acc.compute()
    # class 0: I=3, P=3, L=4 → IoU 3/4; class 1: I=2, P=3, L=3 → 2/4; class 2: I=0, P=1, L=0 → 0;
    # class 3: absent everywhere → NaN (skipped).  The ignored pixel's prediction 0 is dropped.
    np.testing.assert_allclose(r["iou"][:3], [3 / 4, 2 / 4, 0.0])
    assert np.isnan(r["iou"][3])
    assert r["miou"] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    np.testing.assert_allclose(r["acc"][:2], [3 / 4, 2 / 3])
    assert np.isnan(r["acc"][2]) and np.isnan(r["acc"][3])  # no label pixels
    assert r["macc"] == pytest.approx((0.75 + 2 / 3) / 2)
    assert r["aacc"] == pytest.approx(5 / 7)
    assert r["area_label"].tolist() == [4, 3, 0, 0] and r["area_pred"].tolist() == [3, 3, 1, 0]


def test_accumulates_over_dataset_not_per_image_mean():
    # image 1: big and perfect on class 0; image 2: tiny, class 1 half wrong.
    gt1, pred1 = np.zeros((10, 10), int), np.zeros((10, 10), int)
    gt2, pred2 = np.array([[1, 1]]), np.array([[1, 0]])
    acc = IoUAccumulator(2)
    acc.update(pred1, gt1)
    acc.update(pred2, gt2)
    r = acc.compute()
    iou_ref, acc_ref, aacc_ref = confusion_metrics([pred1, pred2], [gt1, gt2], 2)
    np.testing.assert_allclose(r["iou"], iou_ref)
    assert r["iou"].tolist() == pytest.approx([100 / 101, 1 / 2])
    # per-image averaging would give a different number: image 1 mIoU 1.0 (class 1 NaN),
    # image 2 mIoU (0/1 + 1/2)/2
    per_image = []
    for p, g in [(pred1, gt1), (pred2, gt2)]:
        single = IoUAccumulator(2)
        single.update(p, g)
        per_image.append(single.compute()["miou"])
    assert r["miou"] == pytest.approx((100 / 101 + 0.5) / 2)
    assert abs(np.mean(per_image) - r["miou"]) > 0.05
    assert r["aacc"] == pytest.approx(aacc_ref) == pytest.approx(101 / 102)
    assert r["num_images"] == 2


def test_random_maps_match_confusion_matrix():
    rng = np.random.default_rng(0)
    num_classes = 7
    preds, gts = [], []
    acc = IoUAccumulator(num_classes)
    for i in range(5):
        shape = (rng.integers(5, 40), rng.integers(5, 40))
        gt = rng.integers(0, num_classes - 2, shape)  # classes 5, 6 never in the labels
        gt[rng.random(shape) < 0.1] = 255
        pred = rng.integers(0, num_classes - 1, shape)  # class 6 never predicted
        preds.append(pred)
        gts.append(gt.astype(np.uint8))
        acc.update(pred, gt.astype(np.uint8))
    r = acc.compute()
    iou, accs, aacc = confusion_metrics(preds, gts, num_classes)
    np.testing.assert_allclose(r["iou"], iou)
    np.testing.assert_allclose(r["acc"], accs)
    assert np.isnan(r["iou"][6]) and r["iou"][5] == 0.0  # predicted but never labelled: IoU 0
    assert r["miou"] == pytest.approx(np.nanmean(iou))
    assert r["macc"] == pytest.approx(np.nanmean(accs))
    assert r["aacc"] == pytest.approx(aacc)


def test_ignore_index_and_out_of_range_predictions():
    acc = IoUAccumulator(3, ignore_index=255)
    gt = np.array([255, 255, 0, 1, 2], dtype=np.uint8)
    pred = np.array([0, 1, 0, 7, 2])  # 7 is outside [0, C-1]: dropped like torch.histc
    acc.update(pred, gt)
    r = acc.compute()
    assert r["area_label"].tolist() == [1, 1, 1]
    assert r["area_pred"].tolist() == [1, 0, 1]
    assert r["iou"].tolist() == [1.0, 0.0, 1.0]


def test_all_ignored_and_shape_mismatch():
    acc = IoUAccumulator(2)
    acc.update(np.zeros((2, 2), int), np.full((2, 2), 255))
    r = acc.compute()
    assert np.isnan(r["miou"]) and np.isnan(r["aacc"]) and np.isnan(r["macc"])
    with pytest.raises(CCNetError, match="differs from label shape"):
        acc.update(np.zeros((2, 3), int), np.zeros((3, 2), int))


def test_table_and_json():
    acc = IoUAccumulator(3)
    acc.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    r = acc.compute()
    text = format_table(r, ["road", "sky", "bed "])
    lines = text.splitlines()
    assert lines[0].split("|")[0].strip() == "Class"
    assert [c.strip() for c in lines[2].split("|")] == ["road", "50.00", "50.00"]
    assert [c.strip() for c in lines[3].split("|")] == ["sky", "50.00", "100.00"]
    assert lines[4].split("|")[1].strip() == "nan"
    assert lines[-1].startswith("mIoU: ") and f"{round(r['miou'] * 100, 2):.2f}" in lines[-1]
    j = result_to_json(r, ["road", "sky", "bed "])
    assert j["per_class"][2] == {"class": "bed ", "iou": None, "acc": None}
    assert j["miou"] == r["miou"]  # raw, not rounded
    with pytest.raises(CCNetError):
        format_table(r, ["only one"])

"""Shared pre/post-processing against direct computations of mmseg's rules (docs/mmseg-inference.md)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccnet import images, processing, visualize
from ccnet.meta import ModelMeta
from ccnet.zoo import get_config

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def make_meta(num_classes=3, test_scale=(512, 256), **kw):
    return ModelMeta(name="t", dataset="custom", classes=[f"c{i}" for i in range(num_classes)],
                     palette=[(i, i, i) for i in range(num_classes)], test_scale=test_scale, **kw)


def mmcv_size(w, h, scale):
    """mmcv.rescale_size(keep_ratio=True), written out here independently."""
    long_edge, short_edge = max(scale), min(scale)
    s = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(w * s + 0.5), int(h * s + 0.5)


@pytest.mark.parametrize("w,h,scale,expected", [
    (2048, 1024, (2048, 1024), (2048, 1024)),
    (2048, 1024, (2049, 1025), (2049, 1025)),
    (500, 375, (2048, 512), (683, 512)),
    (2100, 300, (2048, 512), (2048, 293)),
])
def test_rescale_size_spec_examples(w, h, scale, expected):
    assert processing.rescale_size(w, h, scale) == expected == mmcv_size(w, h, scale)


@pytest.mark.parametrize("scale", [(2048, 512), (2048, 1024), (512, 256), (2049, 1025)])
def test_preprocess_real_photos(photos, scale):
    meta = make_meta()
    for path in photos:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        new_w, new_h = mmcv_size(w, h, scale)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        rgb = resized[:, :, [2, 1, 0]].astype(np.float32)
        expected = ((rgb - MEAN) / STD).transpose(2, 0, 1)[None]
        got = processing.preprocess(images.load_image(path), meta, scale)
        assert got.dtype == np.float32 and got.shape == (1, 3, new_h, new_w)
        np.testing.assert_array_equal(got, expected)


def test_slide_windows_2049x1025():
    windows = processing.slide_windows(1025, 2049, (769, 769), (513, 513))
    rows = [(0, 769), (256, 1025)]
    cols = [(0, 769), (513, 1282), (1026, 1795), (1280, 2049)]
    assert windows == [(y1, y2, x1, x2) for y1, y2 in rows for x1, x2 in cols]
    # smaller than the crop: one window covering the image
    assert processing.slide_windows(500, 600, (769, 769), (513, 513)) == [(0, 500, 0, 600)]


def test_slide_averages_logits_per_window():
    """A fake network returning window k's constant k+1 (class c: (k+1)*(c+1)) checks the
    summing, counting and averaging, not a model."""
    meta = make_meta(2, mode="slide", crop_size=(769, 769), stride=(513, 513))
    calls = []

    def infer(batch):
        k = len(calls)
        calls.append(batch.shape)
        n, _, h, w = batch.shape
        return np.stack([np.full((n, h, w), (k + 1) * (c + 1), np.float32) for c in range(2)], 1)

    batch = np.zeros((1, 3, 1025, 2049), np.float32)
    got = processing.network_logits(batch, meta, infer)
    assert calls == [(1, 3, 769, 769)] * 8
    rows = [(0, 769), (256, 1025)]
    cols = [(0, 769), (513, 1282), (1026, 1795), (1280, 2049)]
    total = np.zeros((1025, 2049))
    count = np.zeros((1025, 2049))
    for k, ((y1, y2), (x1, x2)) in enumerate((r, c) for r in rows for c in cols):
        total[y1:y2, x1:x2] += k + 1
        count[y1:y2, x1:x2] += 1
    assert count.min() >= 1
    np.testing.assert_allclose(got[0, 0], total / count, rtol=1e-6)
    np.testing.assert_allclose(got[0, 1], 2 * total / count, rtol=1e-6)
    # spot checks: top-left corner only in window 1; overlap of windows 1,2,5,6 averages to 3.5
    assert got[0, 0, 0, 0] == 1 and got[0, 0, 300, 600] == pytest.approx((1 + 2 + 5 + 6) / 4)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("src,dst", [((13, 17), (97, 131)), ((97, 131), (13, 17)),
                                     ((64, 86), (375, 500)), ((5, 1), (3, 7)), ((1, 1), (4, 5)),
                                     ((33, 41), (33, 80))])
def test_resize_logits_matches_torch(src, dst, align_corners):
    x = np.random.default_rng(0).standard_normal((3,) + src).astype(np.float32)

    def torch_resize(t):
        return F.interpolate(t[None], size=dst, mode="bilinear",
                             align_corners=align_corners)[0].numpy()

    got = processing.resize_logits(x, dst, align_corners)
    expected32 = torch_resize(torch.from_numpy(x))
    assert got.shape == expected32.shape and got.dtype == np.float32
    # Like torch's float32 kernel we compute source coordinates in float32, so we match it to
    # float32 rounding; both sit within ~4e-5 of the float64 result.
    np.testing.assert_allclose(got, expected32, atol=3e-5)
    np.testing.assert_allclose(got, torch_resize(torch.from_numpy(x).double()), atol=1e-4)


def test_tta_scales_follow_0x_rule():
    city = get_config("ccnet_r50-d8_4xb2-80k_cityscapes-512x1024").meta()
    scales = processing.tta_scales(city)
    assert scales == [(int(2048 * r), int(1024 * r)) for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    assert scales[0] == (1024, 512) and scales[-1] == (3584, 1792)
    # a 2048x1024 Cityscapes image is resized exactly to those scales
    assert [processing.rescale_size(2048, 1024, s) for s in scales] == scales
    voc = get_config("ccnet_r50-d8_512x512_20k_voc12aug").meta()
    assert processing.rescale_size(500, 375, processing.tta_scales(voc)[2]) == (683, 512)
    slide = get_config("ccnet_r50-d8_769x769_40k_cityscapes").meta()
    assert processing.tta_scales(slide)[3] == (2561, 1281)


def test_tta_segment_equals_direct_computation():
    """12 passes (6 scales × flip): softmax of logits resized to the original size, un-flipped,
    averaged.  The fake network's logits are the normalized input channels."""
    meta = make_meta(3, test_scale=(128, 64))
    image = np.random.default_rng(1).integers(0, 256, (75, 100, 3), dtype=np.uint8)

    def infer(batch):
        return batch.copy()

    probs = []
    for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75):
        for flip in (False, True):
            img = image[:, ::-1] if flip else image
            w, h = mmcv_size(100, 75, (int(128 * r), int(64 * r)))
            x = (cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_LINEAR)
                 [:, :, ::-1].astype(np.float32) - MEAN) / STD
            logits = F.interpolate(torch.from_numpy(x.transpose(2, 0, 1).copy())[None],
                                   size=(75, 100), mode="bilinear", align_corners=False)[0]
            if flip:
                logits = logits.flip(-1)
            probs.append(torch.softmax(logits.double(), 0))
    expected = torch.stack(probs).mean(0).numpy()
    got = processing.segment(image, meta, infer, tta=True)
    np.testing.assert_allclose(got.logits, expected, atol=1e-5)
    margin = np.sort(expected, 0)[-1] - np.sort(expected, 0)[-2]
    sure = margin > 1e-4
    assert sure.mean() > 0.9
    np.testing.assert_array_equal(got.labels[sure], expected.argmax(0)[sure])


def test_predict_real_photo_equals_direct_torch_pipeline(photos, tiny_ckpt):
    from ccnet import load_model, predict

    model = load_model(tiny_ckpt)
    path = photos[0]
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    new_w, new_h = mmcv_size(w, h, model.meta.test_scale)
    x = (cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
         .astype(np.float32) - MEAN) / STD
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])
        logits = F.interpolate(logits, size=(h, w), mode="bilinear",
                               align_corners=model.meta.align_corners)[0]
    expected_labels = logits.argmax(0).numpy()
    got = predict(model, image)
    assert got.logits.shape == (21, h, w) and got.logits.dtype == np.float32
    assert got.labels.shape == (h, w)
    np.testing.assert_allclose(got.logits, logits.numpy(), rtol=1e-4, atol=1e-4)
    top2 = np.sort(logits.numpy(), 0)[-2:]
    sure = (top2[1] - top2[0]) > 1e-3
    assert sure.mean() > 0.99
    np.testing.assert_array_equal(got.labels[sure], expected_labels[sure])


def test_colorize_and_overlay():
    palette = [(255, 0, 0), (0, 255, 0)]
    labels = np.array([[0, 1], [255, 1]])
    color = visualize.colorize(labels, palette)
    assert color.tolist() == [[[0, 0, 255], [0, 255, 0]], [[0, 0, 0], [0, 255, 0]]]  # BGR
    image = np.full((2, 2, 3), 100, np.uint8)
    blended = visualize.overlay(image, labels, palette, alpha=0.5)
    assert blended.shape == image.shape and blended[0, 0].tolist() == [50, 50, 178]


def test_bad_images(tmp_path):
    from ccnet import CCNetError

    text = tmp_path / "photo.png"
    text.write_text("not an image")
    with pytest.raises(CCNetError, match="cannot read image"):
        images.load_image(str(text))
    with pytest.raises(CCNetError, match="image not found"):
        images.load_image(str(tmp_path / "none.jpg"))
    with pytest.raises(CCNetError, match="uint8"):
        images.check_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(CCNetError, match="H×W×3"):
        images.check_image(np.zeros((4, 4), np.uint8))


# ----------------------------------------------------------------------------- fast paths
def test_preprocessor_reuses_buffers_and_equals_preprocess(photos):
    meta = make_meta(test_scale=(512, 256))
    image = images.load_image(photos[0])
    pre = processing.Preprocessor(meta, buffers=2)
    first, second, third = pre(image), pre(image), pre(image)
    assert first.dtype == np.float32 and first.flags.c_contiguous
    np.testing.assert_array_equal(first, processing.preprocess(image, meta))
    assert first is not second and third is first  # a ring of two buffers, nothing new
    row = np.empty((2,) + first.shape[1:], np.float32)
    assert pre(image, out=row[1]).base is row
    np.testing.assert_array_equal(row[1], first[0])
    rgb_kept = make_meta(bgr_to_rgb=False)
    expected = ((image.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_array_equal(processing.normalize(image, rgb_kept), expected)


def _smooth_logits(rng, num_classes, h, w, cell=4):
    """Class maps with regions of ~cell pixels, like a network's logits (upsampled noise)."""
    coarse = rng.standard_normal((num_classes, h // cell + 2, w // cell + 2)).astype(np.float32)
    return np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in coarse])


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("num_classes,src,dst", [
    (2, (13, 17), (97, 131)), (8, (64, 86), (375, 500)), (21, (40, 57), (19, 23)),
    (3, (5, 1), (3, 7)), (4, (1, 1), (4, 5)), (19, (33, 41), (33, 80)), (1, (6, 7), (12, 14)),
    (300, (20, 30), (50, 60))])
def test_resize_argmax_equals_exact_reference(num_classes, src, dst, align_corners):
    """Labels of the fast path = argmax of the exact float32 resize, on smooth maps (few
    competing classes), noise (every pixel a boundary) and integer logits (exact ties)."""
    from ccnet.label_resize import resize_argmax
    from ccnet.labels import label_dtype

    rng = np.random.default_rng(num_classes)
    cases = [rng.standard_normal((num_classes,) + src).astype(np.float32),
             rng.integers(0, 3, (num_classes,) + src).astype(np.float32)]
    if min(src) >= 4:
        cases.append(_smooth_logits(rng, num_classes, *src))
    for logits in cases:
        got = resize_argmax(logits, dst, align_corners)
        assert got.shape == dst and got.dtype == label_dtype(num_classes)
        expected = processing.resize_logits(logits, dst, align_corners).argmax(0)
        np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module")
def demo_runner():
    """The trained ccnet-demo model (PyTorch): real logits with real class boundaries."""
    from ccnet import load_model
    from ccnet.inference import TorchRunner

    return TorchRunner(load_model("ccnet-demo"))


def test_fast_labels_on_real_photos(photos, demo_runner):
    """The demo model's logits of the real photos resized back to each photo's size (and, for
    one, to a 1080p frame), align_corners False and True: fast labels = exact labels on
    >= 99.99 % of the pixels, with real boundaries to get right."""
    meta = demo_runner.meta
    for i, path in enumerate(photos):
        image = images.load_image(path)
        logits = processing.network_logits(processing.preprocess(image, meta), meta,
                                           demo_runner.infer)[0]
        cases = [(image.shape[:2], False), (image.shape[:2], True)]
        for size, align_corners in cases + ([((1080, 1920), False)] if i == 0 else []):
            fast = processing.labels_from_logits(
                logits, size, meta.replace(align_corners=align_corners))
            exact = processing.resize_logits(logits, size, align_corners).argmax(0)
            assert fast.dtype == np.uint8 and len(np.unique(exact)) > 1
            agreement = (fast == exact).mean()
            assert agreement >= 0.9999, f"{path} {size} {align_corners}: {agreement:.6f}"


def test_fast_labels_never_form_full_size_logits():
    """150 classes resized 24× up to 12 MP: the exact path would hold 7.2 GB of float32; the
    fast path's peak allocation stays a small multiple of the uint8 label map."""
    import tracemalloc

    from ccnet.label_resize import resize_argmax

    logits = _smooth_logits(np.random.default_rng(5), 150, 125, 167, cell=6)
    tracemalloc.start()
    try:
        labels = resize_argmax(logits, (3000, 4000), align_corners=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels.shape == (3000, 4000) and labels.dtype == np.uint8
    full_size = 150 * 3000 * 4000 * 4
    assert peak < 400e6 < full_size / 10, f"peak {peak / 1e6:.0f} MB"


def test_segment_labels_equal_segment(photos):
    """The labels-only path = segment()'s labels (full-size logits), uint8 for ≤ 255 classes."""
    meta = make_meta(3, test_scale=(128, 64))

    def infer(batch):
        return batch.copy()

    for path in photos[:2]:
        image = images.load_image(path)
        full = processing.segment(image, meta, infer)
        labels = processing.segment_labels(image, meta, infer)
        assert labels.dtype == full.labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, full.labels)

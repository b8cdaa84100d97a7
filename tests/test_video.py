"""runtime/video.py: pipelined VideoSegmenter and ccnet-video on short videos written here from
the real photos (ONNX Runtime CPU, tiny model, small test scale to stay fast)."""
from __future__ import annotations

import os
import threading
import time

import cv2
import numpy as np
import pytest

from ccnet.errors import CCNetError
from helpers import damage_frames, with_label_head, write_video


W, H = 128, 96


@pytest.fixture(scope="module")
def segmenter(tiny_onnx):
    from runtime import OrtRunner, Segmenter

    # The model's own metadata with a small test scale: same processing, faster frames.
    meta = OrtRunner(tiny_onnx).meta.replace(test_scale=(W, H))
    return Segmenter(tiny_onnx, meta=meta)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    """A 20-frame mp4v clip cycling through the real photos at 128x96, and its decoded frames."""
    from ccnet.images import load_image

    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    images = [cv2.resize(load_image(p), (W, H), interpolation=cv2.INTER_AREA) for p in photos]
    write_video(path, [images[i % len(images)] for i in range(20)], 10.0)
    cap = cv2.VideoCapture(path)
    decoded = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(frame)
    cap.release()
    assert len(decoded) == 20
    return path, decoded


def _read_all(path):
    cap = cv2.VideoCapture(path)
    assert cap.isOpened(), f"cannot reopen {path}"
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_video_labels_equal_per_frame_segmenter(segmenter, clip):
    from runtime import VideoSegmenter

    path, decoded = clip
    video = VideoSegmenter(segmenter, queue_size=2)
    results = list(video.run(path))
    assert [r.index for r in results] == list(range(20))
    assert video.fps == pytest.approx(10.0)
    for r, frame in zip(results, decoded):
        np.testing.assert_array_equal(r.labels, segmenter.segment(frame))
        assert r.overlay.shape == frame.shape and r.overlay.dtype == np.uint8
        assert {"decode", "preprocess", "infer", "postprocess", "latency"} <= set(r.timing)
    assert len(list(VideoSegmenter(segmenter).run(path, max_frames=5))) == 5


def test_ccnet_video_cli_writes_video_and_label_pngs(tiny_onnx, segmenter, clip, tmp_path,
                                                     capsys, monkeypatch):
    import runtime.video_job
    from cli.video import main as video_main

    path, decoded = clip
    # The CLI builds its own Segmenter; give it the same small-scale metadata as the fixture.
    real = runtime.video_job.Segmenter
    monkeypatch.setattr(runtime.video_job, "Segmenter",
                        lambda model, **kw: real(model, meta=segmenter.meta, **kw))
    out, labels_dir = str(tmp_path / "out.mp4"), str(tmp_path / "labels")
    rc = video_main(["--model", tiny_onnx, "--input", path, "--output", out,
                         "--labels-dir", labels_dir, "--show-fps", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "20 frames (0 skipped, 0 corrupt)" in printed and "FPS on onnxruntime" in printed
    frames = _read_all(out)
    assert len(frames) == 20 and frames[0].shape == (H, W, 3)
    names = sorted(os.listdir(labels_dir))
    assert names == [f"{i:06d}.png" for i in range(20)]
    for i in (0, 7, 19):
        png = cv2.imread(os.path.join(labels_dir, names[i]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(png, segmenter.segment(decoded[i]).astype(np.uint8))
    assert not [f for f in os.listdir(tmp_path) if "partial" in f]


def test_memory_stays_bounded_over_300_frames(segmenter, photos):
    """The source is consumed only as fast as results are taken: frames alive (produced by the
    source, not yet handed out) never exceed the pipeline bound, measured from outside."""
    from ccnet.images import load_image
    from runtime import VideoSegmenter

    small = cv2.resize(load_image(photos[0]), (64, 48), interpolation=cv2.INTER_AREA)
    meta = segmenter.meta.replace(test_scale=(64, 48))
    from runtime import Segmenter

    seg = Segmenter(segmenter.model, meta=meta)
    produced = [0]

    def source():
        for i in range(300):
            produced[0] += 1
            yield np.roll(small, i, axis=1)

    video = VideoSegmenter(seg, queue_size=2)
    bound = video.max_frames_in_flight + 1  # +1: the frame the reader is decoding
    peak = 0
    count = 0
    for count, result in enumerate(video.run(source()), start=1):
        peak = max(peak, produced[0] - count)
        time.sleep(0.002)  # a slow consumer: an unbounded pipeline would run far ahead
    assert count == 300 and video.frames_done == 300
    assert peak <= bound, f"{peak} frames alive, bound {bound}"
    assert video.peak_in_flight <= video.max_frames_in_flight


def test_corrupt_frames_are_skipped_with_warning(segmenter, clip):
    from runtime import VideoSegmenter

    _, decoded = clip
    good = decoded[0]
    frames = [good, None, np.zeros((10, 10), np.uint8), good.astype(np.float32), decoded[1]]
    video = VideoSegmenter(segmenter)
    with pytest.warns(RuntimeWarning, match="skipping frame"):
        results = list(video.run(frames))
    assert [r.index for r in results] == [0, 4]
    assert video.frames_skipped == 3
    np.testing.assert_array_equal(results[1].labels, segmenter.segment(decoded[1]))


def test_early_stop_ends_worker_threads(segmenter, clip):
    from runtime import VideoSegmenter

    path, _ = clip
    gen = VideoSegmenter(segmenter, queue_size=1).run(path)
    for _ in range(3):
        next(gen)
    gen.close()
    deadline = time.time() + 5
    while time.time() < deadline and any(t.name.startswith("ccnet-video")
                                         for t in threading.enumerate()):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("ccnet-video")]


def test_video_that_cannot_be_opened(segmenter, tmp_path, tiny_onnx, capsys):
    from cli.video import main as video_main
    from runtime import VideoSegmenter

    with pytest.raises(CCNetError, match="video not found"):
        next(VideoSegmenter(segmenter).run(str(tmp_path / "missing.mp4")))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 50)
    with pytest.raises(CCNetError, match="cannot open video"):
        next(VideoSegmenter(segmenter).run(str(junk)))
    out = tmp_path / "out.mp4"
    rc = video_main(["--model", tiny_onnx, "--input", str(junk), "--output", str(out),
                         "--no-progress"])
    assert rc == 2 and "cannot open video" in capsys.readouterr().err
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if "partial" in f]
    assert video_main(["--model", tiny_onnx, "--input", str(junk)]) == 2
    assert "nothing to write" in capsys.readouterr().err


def test_reused_preprocessing_buffers_never_mix_frames(clip):
    """The reader fills a ring of batch buffers; a slow consumer keeps every queue full, so a
    buffer reused too early would hand the network another frame's pixels.  The trained
    ccnet-demo model gives each photo its own label map, so any mix-up shows."""
    from ccnet.demo import demo_config
    from runtime import Segmenter, VideoSegmenter

    path, decoded = clip
    seg = Segmenter("ccnet-demo", meta=demo_config().meta().replace(test_scale=(W, H)))
    expected = [seg.segment(frame) for frame in decoded]
    assert len({e.tobytes() for e in expected}) > 1
    video = VideoSegmenter(seg, queue_size=1)
    for r in video.run(path):
        time.sleep(0.01)
        assert r.labels.dtype == np.uint8
        np.testing.assert_array_equal(r.labels, expected[r.index])


def test_label_head_file_through_the_pipeline(segmenter, clip, tmp_path):
    """A label-head export: the inference stage returns the label map at the frame size."""
    from runtime import Segmenter, VideoSegmenter

    head = with_label_head(segmenter.model, str(tmp_path / "head.onnx"))
    seg = Segmenter(head, meta=segmenter.meta)
    assert seg.label_head
    path, decoded = clip
    for r in VideoSegmenter(seg, queue_size=2).run(path, max_frames=6):
        assert r.labels.dtype == np.uint8 and r.labels.shape == (H, W)
        assert (r.labels == segmenter.segment(decoded[r.index])).mean() >= 0.9999


# ----------------------------------------------------------------------------- hardening
@pytest.fixture
def small_job(monkeypatch, segmenter):
    """runtime.video_job with its Segmenter given the fixture's small-scale metadata."""
    import runtime.video_job as job

    real = job.Segmenter
    monkeypatch.setattr(job, "Segmenter", lambda model, **kw: real(model, meta=segmenter.meta,
                                                                   **kw))
    return job


@pytest.fixture(scope="module")
def damaged_clip(clip, tmp_path_factory):
    """The clip with frames 6 and 7 damaged."""
    path, _ = clip
    data = damage_frames(open(path, "rb").read(), {6, 7})
    damaged = str(tmp_path_factory.mktemp("damaged") / "damaged.mp4")
    with open(damaged, "wb") as f:
        f.write(bytes(data))
    return damaged


def test_corrupt_frames_are_counted_against_the_container(segmenter, damaged_clip):
    from runtime import VideoSegmenter

    video = VideoSegmenter(segmenter)
    with pytest.warns(RuntimeWarning, match="could not be decoded"):
        results = list(video.run(damaged_clip))
    assert video.frame_count == 20 and video.frames_corrupt == 2
    # nothing silently cut short: every frame after the damage is there, at its own index
    assert [r.index for r in results] == [i for i in range(20) if i not in (6, 7)]


def test_damaged_video_job_summary_and_strict(small_job, tiny_onnx, damaged_clip, tmp_path,
                                              capsys):
    from cli.video import main as video_main

    out, labels = tmp_path / "out.mp4", tmp_path / "labels"
    assert video_main(["--model", tiny_onnx, "--input", damaged_clip, "--output", str(out),
                       "--labels-dir", str(labels), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert len(os.listdir(labels)) == 18 and "000006.png" not in os.listdir(labels)
    assert "18 frames (0 skipped, 2 corrupt)" in captured.out
    assert "warning: 2 of 20 frames could not be decoded" in captured.err
    for path in (out, labels):
        os.replace(path, tmp_path / f"first-{path.name}")
    assert video_main(["--model", tiny_onnx, "--input", damaged_clip, "--output", str(out),
                       "--labels-dir", str(labels), "--no-progress", "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "could not be decoded" in err[-1]
    assert sorted(os.listdir(tmp_path)) == ["first-labels", "first-out.mp4"]


def _failing_frames(frames, fail_at, error):
    for i, frame in enumerate(frames):
        if i == fail_at:
            raise error
        yield frame


@pytest.mark.parametrize("error", [CCNetError("decoder died"), KeyboardInterrupt()])
def test_failure_after_first_frames_leaves_no_output(small_job, tiny_onnx, clip, tmp_path,
                                                     error):
    _, decoded = clip
    out, labels = tmp_path / "out.mp4", tmp_path / "labels"
    with pytest.raises(type(error)):
        small_job.segment_video(tiny_onnx, _failing_frames(decoded, 5, error), str(out),
                                str(labels), progress=False)
    assert os.listdir(tmp_path) == []  # no label PNGs, no video, no hidden temp files


def test_rerun_replaces_the_label_set(small_job, tiny_onnx, clip, tmp_path):
    path, _ = clip
    out, labels = tmp_path / "out.mp4", tmp_path / "labels"
    small_job.segment_video(tiny_onnx, path, str(out), str(labels), progress=False)
    assert len(os.listdir(labels)) == 20
    first_video = out.read_bytes()
    summary = small_job.segment_video(tiny_onnx, path, str(out), str(labels), max_frames=3,
                                      progress=False)
    assert summary["frames"] == 3
    assert sorted(os.listdir(labels)) == ["000000.png", "000001.png", "000002.png"]
    assert out.read_bytes() != first_video
    assert sorted(os.listdir(tmp_path)) == ["labels", "out.mp4"]


def test_outputs_checked_before_any_work(monkeypatch, tiny_onnx, clip, tmp_path, capsys):
    import runtime.video_job as job
    from cli.video import main as video_main

    path, _ = clip

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(job, "Segmenter", no_model)
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("keep me")
    os.mkfifo(tmp_path / "fifo.mp4")
    cases = [(["--output", str(tmp_path / "folder.mp4")], "is a folder"),
             (["--output", str(tmp_path / "out.avi.txt")], "must end in"),
             (["--output", str(tmp_path / "fifo.mp4")], "not a regular file"),
             (["--labels-dir", str(tmp_path / "file")], "not a folder"),
             (["--labels-dir", str(tmp_path / "file" / "labels")], "is a file"),
             (["--labels-dir", str(tmp_path / "used")], "holds other files")]
    before = sorted(os.listdir(tmp_path))
    for argv, match in cases:
        rc = video_main(["--model", tiny_onnx, "--input", path, "--no-progress", *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and match in err and len(err.splitlines()) == 1, (argv, err)
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "used" / "notes.txt").read_text() == "keep me"


def test_video_job_stops_onnx_runtime_threads_spinning(small_job, tiny_onnx, clip, tmp_path,
                                                        monkeypatch):
    """Decoding and encoding run beside the network: the job opens ONNX Runtime with idle pool
    threads sleeping (session config ``session.intra_op.allow_spinning`` = "0")."""
    from runtime.runners import OrtRunner

    entry, seen = "session.intra_op.allow_spinning", []
    real = small_job.Segmenter

    def opened(model, **kw):
        segmenter = real(model, **kw)
        seen.append(segmenter.runner.session.get_session_options()
                    .get_session_config_entry(entry))
        return segmenter

    monkeypatch.setattr(small_job, "Segmenter", opened)
    path, _ = clip
    small_job.segment_video(tiny_onnx, path, str(tmp_path / "out.mp4"), max_frames=2,
                            progress=False)
    assert seen == ["0"]
    default = OrtRunner(tiny_onnx).session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):
        default.get_session_config_entry(entry)  # a plain runner keeps ORT's default

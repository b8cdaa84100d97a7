"""ccnet batch on real Ray Data: a local Ray on 2 CPUs with a small object store, the exported
ccnet-demo model on ONNX Runtime, small real photos, synthetic street scenes, a corrupt file and
short videos written here.  Outputs are compared with ``Segmenter.segment`` and
``VideoSegmenter`` image by image; resume, a killed worker and SIGTERM are real too."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from helpers import REPO, write_video

pytest.importorskip("ray.data", reason="ccnet batch needs Ray Data: pip install -e '.[batch]'")

FRAMES = 16


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ray_local():
    """A local Ray with 2 CPUs and a 256 MB object store; its address lets a CLI join it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20,
             log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def segmenter(demo_onnx):
    from runtime import Segmenter

    with Segmenter(demo_onnx) as seg:
        yield seg


@pytest.fixture(scope="module")
def source(tmp_path_factory, photos):
    """photos/*.jpg (real, longest side 160 px), scenes/sub/*.png (synthetic), broken.jpg,
    clip.mp4 (6 synthetic frames)."""
    from ccnet.images import load_image
    from ccnet.synthetic import make_scene

    root = tmp_path_factory.mktemp("batch_src")
    (root / "photos").mkdir()
    (root / "scenes" / "sub").mkdir(parents=True)
    for path in photos[:5]:
        image = load_image(path)
        scale = 160 / max(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        name = os.path.splitext(os.path.basename(path))[0] + ".jpg"
        cv2.imwrite(str(root / "photos" / name), cv2.resize(image, size,
                                                            interpolation=cv2.INTER_AREA))
    for seed in range(3):
        cv2.imwrite(str(root / "scenes" / "sub" / f"scene{seed}.png"),
                    make_scene(seed, (96, 144))[0])
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated, not a JPEG")
    write_video(str(root / "clip.mp4"), [make_scene(50 + i, (96, 128))[0] for i in range(6)], 5.0)
    return str(root)


@pytest.fixture(scope="module")
def first_run(ray_local, demo_onnx, source, tmp_path_factory):
    from runtime.batch import BatchSettings, run_batch

    out = str(tmp_path_factory.mktemp("batch_out"))
    settings = BatchSettings(workers=2, batch_size=2, overlays=True, progress=False)
    return run_batch(demo_onnx, source, out, settings), out


def _expected(segmenter, source):
    """{output key: labels} for every readable image and video frame of ``source``."""
    from ccnet.images import iter_images, load_image
    from runtime import VideoSegmenter

    expected = {}
    for path in iter_images(source):
        if not path.endswith("broken.jpg"):
            key = os.path.splitext(os.path.relpath(path, source))[0]
            expected[key] = segmenter.segment(load_image(path))
    for result in VideoSegmenter(segmenter, make_overlay=False).run(os.path.join(source,
                                                                                "clip.mp4")):
        expected[f"clip/{result.index:06d}"] = result.labels
    return expected


@pytest.fixture(scope="module")
def expected(segmenter, source):
    return _expected(segmenter, source)


def _read_labels(out, key):
    return cv2.imread(os.path.join(out, key + ".png"), cv2.IMREAD_UNCHANGED)


def _stat(path):
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def _temp_files(folder):
    return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
            if f.startswith(".tmp-")]


# ----------------------------------------------------------------------------- sources
def test_sources_folder_glob_list_and_video(tmp_path):
    from ccnet.errors import CCNetError
    from runtime.batch_sources import expand_source

    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.jpg", "a/b/y.png", "a/b/notes.txt", "a/cam.mp4"):
        (tmp_path / name).write_bytes(b"")
    out = tmp_path / "a" / "out"
    out.mkdir()
    (out / "x.png").write_bytes(b"")  # a result of an earlier run: never an input
    plan = expand_source(str(tmp_path / "a"), exclude=str(out))
    assert [(i.kind, i.key) for i in plan.items] == [
        ("image", "b/y"), ("video", "cam"), ("image", "x")]

    plan = expand_source(str(tmp_path / "a" / "cam.mp4"))
    assert [(i.kind, i.key) for i in plan.items] == [("video", "cam")]

    plan = expand_source(str(tmp_path / "a" / "**" / "*.png"))
    assert [i.key for i in plan.items] == ["b/y", "out/x"]

    listing = tmp_path / "a" / "list.txt"
    listing.write_text("# inputs\nx.jpg\n\nb/y.png\nmissing.jpg\n")
    plan = expand_source(str(listing))
    assert [i.key for i in plan.items] == ["b/y", "missing", "x"]  # missing: fails when read

    (tmp_path / "a" / "x.png").write_bytes(b"")
    with pytest.raises(CCNetError, match="written twice.*x.jpg and x.png"):
        expand_source(str(tmp_path / "a"), exclude=str(out))
    with pytest.raises(CCNetError, match="input not found"):
        expand_source(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CCNetError, match="no images or videos"):
        expand_source(str(tmp_path / "empty"))


def test_worker_refuses_logits_from_a_label_head_model(demo_head_onnx):
    from ccnet.errors import CCNetError
    from runtime import Segmenter
    from runtime.batch_stages import SegmentWorker

    head = demo_head_onnx
    with Segmenter(head) as segmenter:
        meta = segmenter.meta
    assert SegmentWorker(head, meta).segmenter.label_head  # labels alone: fine
    with pytest.raises(CCNetError, match=r"label head.*without --logits") as info:
        SegmentWorker(head, meta, keep_logits=True)
    assert "\n" not in str(info.value)


def test_batch_modules_import_neither_torch_nor_ray():
    """runtime/ stays torch-free at import (Jetson-class nodes); Ray loads only when a job runs."""
    code = ("import sys, runtime.batch, runtime.batch_stages, cli.batch; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- Ray jobs
def test_outputs_equal_segmenter_and_video_segmenter(first_run, expected, segmenter, source):
    import json

    from ccnet.images import iter_images, load_image
    from ccnet.visualize import overlay

    summary, out = first_run
    assert summary["failed"] == 1 and summary["skipped"] == 0
    assert summary["written"] == len(expected) == 5 + 3 + 6
    assert summary["failures"][0]["input"].endswith("broken.jpg")
    assert "\n" not in summary["failures"][0]["error"]
    assert "corrupt" in summary["failures"][0]["error"]
    assert sum(summary["images_per_worker"].values()) == summary["written"]
    assert set(summary["ms_per_image"]) == {"decode", "preprocess", "infer", "postprocess",
                                            "write"}
    with open(os.path.join(out, "_summary.json")) as f:
        assert json.load(f)["written"] == summary["written"]
    for key, labels in expected.items():
        got = _read_labels(out, key)
        assert got is not None, key
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, labels, err_msg=key)
    for path in iter_images(source):
        key = os.path.splitext(os.path.relpath(path, source))[0]
        if key in expected:  # the overlay of what segment() gives, through the same JPEG codec
            want = overlay(load_image(path), expected[key], segmenter.meta.palette)
            want = cv2.imdecode(cv2.imencode(".jpg", want)[1], cv2.IMREAD_COLOR)
            blend = cv2.imread(os.path.join(out, "_overlays", key + ".jpg"))
            np.testing.assert_array_equal(blend, want, err_msg=key)
    assert len(os.listdir(os.path.join(out, "_overlays", "clip"))) == 6
    assert not _temp_files(out)


def test_rerun_redoes_only_missing_or_broken_outputs(first_run, expected, ray_local, demo_onnx,
                                                     source):
    from runtime.batch import BatchSettings, run_batch

    _, out = first_run
    keys = sorted(expected)
    deleted, truncated, resized = keys[0], "clip/000003", keys[-1]
    os.remove(os.path.join(out, deleted + ".png"))
    path = os.path.join(out, truncated + ".png")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    cv2.imwrite(os.path.join(out, resized + ".png"), np.zeros((7, 9), np.uint8))
    stale = os.path.join(out, "photos", ".tmp-0123456789ab.png")
    open(stale, "wb").write(b"half")
    redo = {deleted, truncated, resized}
    before = {k: _stat(os.path.join(out, k + ".png")) for k in keys if k not in redo}

    summary = run_batch(demo_onnx, source, out,
                        BatchSettings(workers=1, batch_size=3, overlays=True, progress=False))
    assert (summary["written"], summary["skipped"], summary["failed"]) == (3, len(keys) - 3, 1)
    for key in keys:
        np.testing.assert_array_equal(_read_labels(out, key), expected[key], err_msg=key)
    assert {k: _stat(os.path.join(out, k + ".png")) for k in before} == before
    assert not os.path.exists(stale)


def test_killed_worker_is_replaced_and_the_job_completes(ray_local, demo_onnx, source, expected,
                                                         segmenter, tmp_path):
    """SIGKILL the worker (a process of the Ray this test started) after its first image: Ray
    restarts it and retries its batch; every output is still there and correct, logits too."""
    from ccnet.images import load_image
    from runtime.batch import BatchSettings, run_batch

    killed = []

    def kill_first_worker(row):
        host, pid = row["worker"].rsplit(":", 1)
        if row["status"] == "written" and not killed and host == socket.gethostname():
            os.kill(int(pid), signal.SIGKILL)
            killed.append(int(pid))

    out = str(tmp_path / "out")
    summary = run_batch(demo_onnx, source, out,
                        BatchSettings(workers=1, batch_size=1, logits=True, progress=False),
                        on_result=kill_first_worker)
    assert killed
    assert (summary["written"], summary["failed"]) == (len(expected), 1)
    assert len(summary["images_per_worker"]) == 2  # the killed process and its replacement
    for key, labels in expected.items():
        np.testing.assert_array_equal(_read_labels(out, key), labels, err_msg=key)
    photo = sorted(k for k in expected if k.startswith("photos/"))[0]
    logits = np.load(os.path.join(out, "_logits", photo + ".npy"))
    want = segmenter.predict(load_image(os.path.join(source, photo + ".jpg"))).logits
    np.testing.assert_array_equal(logits, want)
    assert not _temp_files(out)


def _run_cli(args):
    return subprocess.Popen([sys.executable, "-m", "cli.main", "batch", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_sigterm_then_rerun_finishes_a_video(ray_local, demo_onnx, segmenter, tmp_path):
    """`ccnet batch --address` on a video, stopped by SIGTERM after its first frames: no
    partial file, exit 130; the same command again writes only the missing frames."""
    import json

    from ccnet.synthetic import make_scene
    from runtime import VideoSegmenter
    from runtime.batch_outputs import _valid_png

    video = str(tmp_path / "drive.mp4")
    write_video(video, [make_scene(100 + i, (96, 128))[0] for i in range(FRAMES)], 5.0)
    expected = [r.labels for r in VideoSegmenter(segmenter, make_overlay=False).run(video)]
    out = str(tmp_path / "out")
    args = ["--model", demo_onnx, "--input", video, "--output", out, "--address", ray_local,
            "--workers", "1", "--batch-size", "1", "--no-progress"]
    frames = [os.path.join(out, "drive", f"{i:06d}.png") for i in range(FRAMES)]

    job = _run_cli(args)
    deadline = time.time() + 90
    while not any(os.path.exists(f) for f in frames) and time.time() < deadline:
        assert job.poll() is None, job.communicate()
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130, err
    assert "error: interrupted" in err
    done = [f for f in frames if os.path.exists(f)]
    assert 0 < len(done) < FRAMES
    assert all(_valid_png(f, (96, 128), np.uint8) for f in done)
    with open(os.path.join(out, "_summary.json")) as f:
        assert json.load(f)["interrupted"] is True
    before = {f: _stat(f) for f in done}

    job = _run_cli(args)
    stdout, err = job.communicate(timeout=180)
    assert job.returncode == 0, err
    with open(os.path.join(out, "_summary.json")) as f:
        summary = json.load(f)
    assert (summary["written"], summary["skipped"]) == (FRAMES - len(done), len(done))
    assert {f: _stat(f) for f in done} == before
    for path, labels in zip(frames, expected):
        np.testing.assert_array_equal(cv2.imread(path, cv2.IMREAD_UNCHANGED), labels)
    assert not _temp_files(out)
    assert f"{FRAMES - len(done)} written, {len(done)} already done, 0 failed" in stdout


def test_cli_refuses_bad_model_input_and_resources(ray_local, demo_onnx, source, tmp_path,
                                                   capsys):
    from cli.main import main

    out = str(tmp_path / "out")
    assert main(["batch", "--model", str(tmp_path / "no.onnx"), "--input", source,
                 "--output", out]) == 2
    assert capsys.readouterr().err.strip() == f"error: model not found: {tmp_path / 'no.onnx'}"
    assert main(["batch", "--model", demo_onnx, "--input", str(tmp_path / "nothing"),
                 "--output", out]) == 2
    assert "error: input not found" in capsys.readouterr().err
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"engine")
    assert main(["batch", "--model", str(engine), "--input", source, "--output", out]) == 2
    err = capsys.readouterr().err
    assert "each worker needs 1 GPU(s) but the Ray cluster has 0" in err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(out)  # refused before any output


def test_unknown_backend_is_refused_before_ray_starts(demo_onnx, source, tmp_path):
    from ccnet.errors import CCNetError
    from runtime.batch import BatchSettings, run_batch

    out = str(tmp_path / "out")
    with pytest.raises(CCNetError, match="^unknown backend 'tflite': use onnxruntime, tensorrt "
                                         "or pytorch$"):
        run_batch(demo_onnx, source, out, BatchSettings(backend="tflite", progress=False))
    assert not os.path.exists(out)

"""Every failure reaching a command is one line: ``error: ...`` for bad input (exit 2), a line
saying it is a bug and how to report it for anything unexpected (exit 70), ``error:
terminated`` for SIGTERM handled like Ctrl-C; and the inputs behind such failures: output paths
checked before any work, extreme image sizes, OpenCV's and our pixel limits, ONNX Runtime
errors."""
from __future__ import annotations

import argparse
import errno
import os
import signal

import cv2
import numpy as np
import pytest

from ccnet.errors import CCNetError
from cli.app import EXIT_BUG, EXIT_TERMINATED, EXIT_USER_ERROR, run_guarded


def _lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


def test_unexpected_exception_is_one_bug_line(capsys, monkeypatch):
    def run(args):
        return {}["missing"]

    monkeypatch.delenv("CCNET_DEBUG", raising=False)
    assert run_guarded(run, argparse.Namespace()) == EXIT_BUG
    (line,) = _lines(capsys)
    assert line.startswith("error: internal error, a bug in ccnet-deploy") and "KeyError" in line
    assert "CCNET_DEBUG=1" in line
    monkeypatch.setenv("CCNET_DEBUG", "1")
    assert run_guarded(run, argparse.Namespace()) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "internal error" in err


def test_user_and_system_errors(capsys):
    def bad_input(args):
        raise CCNetError("first\nsecond")

    def disk_full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.mp4")

    assert run_guarded(bad_input, argparse.Namespace()) == EXIT_USER_ERROR
    assert _lines(capsys) == ["error: first second"]
    assert run_guarded(disk_full, argparse.Namespace()) == EXIT_USER_ERROR
    assert _lines(capsys) == ["error: No space left on device: /data/out.mp4"]


def test_sigterm_runs_cleanup_like_ctrl_c(tmp_path, capsys):
    from ccnet.files import atomic_output

    out = tmp_path / "out.bin"

    def run(args):
        with atomic_output(str(out)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not interrupt")

    previous = signal.getsignal(signal.SIGTERM)
    assert run_guarded(run, argparse.Namespace()) == EXIT_TERMINATED
    assert _lines(capsys) == ["error: terminated"]
    assert os.listdir(tmp_path) == []  # the temp file went with the interrupted write
    assert signal.getsignal(signal.SIGTERM) == previous


def test_warnings_are_one_line():
    import warnings

    shown = []

    def run(args):  # pytest records warnings itself, so look at the format the CLI installs
        shown.append(warnings.formatwarning("frame 3 could not be decoded", RuntimeWarning,
                                            "video.py", 180))
        return 0

    assert run_guarded(run, argparse.Namespace()) == 0
    assert shown == ["warning: frame 3 could not be decoded\n"]


# ----------------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory, tiny_onnx):
    """tiny_onnx with a 64×48 test scale (metadata rewritten with its checksum)."""
    import onnx

    from export.metadata import read_metadata, set_metadata

    model = onnx.load(tiny_onnx)
    set_metadata(model, read_metadata(model).replace(test_scale=(64, 48)))
    path = tmp_path_factory.mktemp("small") / "small.onnx"
    onnx.save(model, path)
    return str(path)


def _image(tmp_path, h, w, name="img.png"):
    path = tmp_path / name
    cv2.imwrite(str(path), np.random.default_rng(h * w).integers(0, 255, (h, w, 3), np.uint8))
    return str(path)


@pytest.mark.parametrize("h,w", [(1, 4000), (4000, 1), (2, 5000), (1, 1)])
def test_extreme_aspect_ratios_segment(tmp_path, small_onnx, h, w):
    from ccnet.processing import rescale_size
    from cli.predict import main

    assert min(rescale_size(w, h, (64, 48))) >= 1
    out = tmp_path / "labels.png"
    assert main(["--model", small_onnx, "--input", _image(tmp_path, h, w), "--out",
                 str(out)]) == 0
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (h, w)


def test_pixel_limits(tmp_path, small_onnx, capsys, monkeypatch):
    import struct
    import zlib

    from ccnet.meta import LIMITS
    from cli.predict import main

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(bytes(16)))
        + chunk(b"IEND", b""))
    out = tmp_path / "labels.png"
    assert main(["--model", small_onnx, "--input", str(huge), "--out", str(out)]) == 2
    assert "CV_IO_MAX_IMAGE_PIXELS" in _lines(capsys)[-1]
    monkeypatch.setattr(LIMITS, "max_image_pixels", 1000)
    assert main(["--model", small_onnx, "--input", _image(tmp_path, 40, 40), "--out",
                 str(out)]) == 2
    assert "CCNET_MAX_IMAGE_PIXELS" in _lines(capsys)[-1]
    assert not out.exists()


def test_predict_outputs_checked_first(tmp_path, small_onnx, capsys):
    from cli.predict import main

    image = _image(tmp_path, 48, 64)
    (tmp_path / "folder.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")
    before = sorted(os.listdir(tmp_path))
    cases = [(["--out", str(tmp_path / "labels.jpg")], "must end in .png"),
             (["--out", str(tmp_path / "folder.png")], "is a folder"),
             (["--out", str(tmp_path / "fifo.png")], "not a regular file"),
             (["--out", image], "must be different files"),
             (["--out", str(tmp_path / "x.png"), "--overlay", "--save-logits",
               str(tmp_path / "l.txt")], ".npy"),
             (["--out", str(tmp_path / "nope" / "x.png")], "does not exist"),
             (["--out", str(tmp_path / "x.png"), "--config", "ccnet-demo"], "do not apply")]
    for argv, match in cases:
        assert main(["--model", small_onnx, "--input", image, *argv]) == 2
        (line,) = _lines(capsys)
        assert match in line, line
    assert main(["--model", small_onnx, "--input", str(tmp_path / "fifo.png"), "--out",
                 str(tmp_path / "x.png")]) == 2  # reading a FIFO would block forever
    assert "not a regular file" in _lines(capsys)[-1]
    assert sorted(os.listdir(tmp_path)) == before


def test_onnx_runtime_errors_in_infer_are_one_line(small_onnx):
    from runtime import OrtRunner

    with OrtRunner(small_onnx) as runner:
        with pytest.raises(CCNetError, match=r"ONNX Runtime failed to run .* on input "
                                             r"\(1, 2, 32, 32\)") as e:
            runner.infer(np.zeros((1, 2, 32, 32), np.float32))
    assert "\n" not in str(e.value)

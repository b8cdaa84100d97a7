"""Image, video, output-path and signal cases (``ccnet predict`` / ``ccnet video`` with
base.onnx).

Valid but unusual images (1×1, 1×4000, 2×5000, grey, 16-bit, RGBA, BMP, low-quality JPEG) must
be segmented like PyTorch segments them; broken ones (truncated, empty, not an image, a header
beyond OpenCV's pixel limit, above our pixel limit, a FIFO) must fail in one line.  Videos: a
damaged clip is processed with its corrupt frames counted and a warning (or refused with
``--strict``); outputs are checked before any work, and a SIGTERM/SIGINT mid-run leaves no file
and keeps an earlier run's outputs intact.
"""
from __future__ import annotations

import glob
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from typing import List

import cv2
import numpy as np

from helpers import damage_frames

from . import checks
from .environment import write_onnx
from .harness import REPO, Case

MODEL = "{in}/model.onnx"
# The fuzz worker runs with this pixel limit so an over-limit image is cheap to make.
MAX_IMAGE_PIXELS = 4_000_000


# ----------------------------------------------------------------------------- images
def _image_case(env, name: str, expect: str, write, ext: str = ".png", message=None,
                check="match") -> Case:
    image = "{in}/img" + ext

    def setup(case_dir):
        write_onnx(env, case_dir)
        write(os.path.join(case_dir, "in", "img" + ext))

    def check_fn(case_dir, result):
        path = os.path.join(case_dir, "in", "img" + ext)
        out = os.path.join(case_dir, "out", "labels.png")
        if check == "match":
            return checks.labels_match(env, path, out)
        return checks.labels_wellformed(path, out, env.num_classes)

    return Case(id=f"image/{name}", family="image",
                argv=["predict", "--model", MODEL, "--input", image, "--out", "{out}/labels.png"],
                expect=expect, setup=setup, check=check_fn, outputs=("labels.png",),
                message=message)


def _pixels(h: int, w: int, seed: int, channels: int = 3, dtype=np.uint8) -> np.ndarray:
    """A seeded noisy image (a random colour plus noise): every size has content."""
    rng = np.random.default_rng(seed)
    top = int(np.iinfo(dtype).max)
    base = rng.integers(0, top, size=(1, 1, channels))
    noise = rng.integers(0, top // 8, size=(h, w, channels))
    image = np.clip(base + noise, 0, top).astype(dtype)
    return image[:, :, 0] if channels == 1 else image


def _imwrite(array, params=()):
    def write(path):
        assert cv2.imwrite(path, array, list(params)), path
    return write


def _raw(data: bytes):
    def write(path):
        with open(path, "wb") as f:
            f.write(data)
    return write


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` (no real pixel data)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def _encoded(array, ext, cut=None) -> bytes:
    ok, data = cv2.imencode(ext, array)
    assert ok
    data = data.tobytes()
    return data[:cut] if cut else data


SIZES = [(1, 1), (1, 2), (2, 1), (1, 4000), (4000, 1), (2, 5000), (5000, 2), (3, 3),
         (15, 17), (16, 16), (7, 3000), (480, 640)]


def image_cases(env, size: str) -> List[Case]:
    cases = [_image_case(env, f"size/{h}x{w}", "ok", _imwrite(_pixels(h, w, h * 7 + w)))
             for h, w in SIZES]
    colour = _pixels(60, 80, 1)
    cases += [
        _image_case(env, "format/grey", "ok", _imwrite(_pixels(60, 80, 2, channels=1))),
        _image_case(env, "format/png16", "ok", _imwrite(_pixels(60, 80, 3, dtype=np.uint16))),
        _image_case(env, "format/rgba", "ok", _imwrite(_pixels(60, 80, 4, channels=4))),
        _image_case(env, "format/bmp", "ok", _imwrite(colour), ".bmp"),
        _image_case(env, "format/jpeg_q5", "ok", _imwrite(colour, (cv2.IMWRITE_JPEG_QUALITY, 5)),
                    ".jpg"),
    ]
    png, jpg = _encoded(colour, ".png"), _encoded(colour, ".jpg")

    def fifo(path):
        os.mkfifo(path)

    broken = {
        "truncated_png": (_raw(png[: len(png) // 2]), ".png", "error"),
        "truncated_jpeg": (_raw(jpg[: len(jpg) // 2]), ".jpg", "either"),
        "empty": (_raw(b""), ".png", "error"), "text": (_raw(b"hello\n" * 20), ".jpg", "error"),
        "random_bytes": (_raw(bytes(np.random.default_rng(5).integers(0, 256, 3000,
                                                                      dtype=np.uint8))),
                         ".png", "error"),
        "header_1e10_pixels": (_raw(_png_header(100000, 100000)), ".png", "error"),
        "above_pixel_limit": (_imwrite(np.zeros((2000, 2001, 3), np.uint8)), ".png", "error"),
        "fifo": (fifo, ".png", "error"), "folder": (os.mkdir, ".png", "error"),
        "missing": (lambda path: None, ".png", "error"),
    }
    for name, (write, ext, expect) in broken.items():
        cases.append(_image_case(env, f"broken/{name}", expect, write, ext, check="wellformed"))
    rng = random.Random(56)
    for i in range(6 if size == "fast" else 300):
        h = max(1, int(10 ** rng.uniform(0, 3.3)))
        w = max(1, min(int(10 ** rng.uniform(0, 3.3)), 10 ** 6 // h))
        ext = rng.choice([".png", ".bmp", ".jpg"])
        cases.append(_image_case(env, f"random/{i}/{h}x{w}{ext}", "ok",
                                 _imwrite(_pixels(h, w, 1000 + i)), ext,
                                 check="match" if ext != ".jpg" else "wellformed"))
    return cases


# ----------------------------------------------------------------------------- output paths
def path_cases(env) -> List[Case]:
    def case(name, out, expect="error", extra=(), setup_out=None, outputs=(), check=None,
             message=None):
        def setup(case_dir):
            write_onnx(env, case_dir)
            if setup_out:
                setup_out(os.path.join(case_dir, "out"))
        return Case(id=f"path/{name}", family="path",
                    argv=["predict", "--model", MODEL, "--input", env.photo, "--out", out,
                          *extra], expect=expect, setup=setup, outputs=outputs, check=check,
                    message=message)

    def overlay_ok(case_dir, result):
        got = cv2.imread(os.path.join(case_dir, "out", "overlay.jpg"))
        return None if got is not None and got.shape == (48, 64, 3) else "no overlay image"

    def logits_ok(case_dir, result):
        logits = np.load(os.path.join(case_dir, "out", "logits.npy"))
        return None if logits.shape == (env.num_classes, 48, 64) else f"logits {logits.shape}"

    return [
        case("out_folder", "{out}/labels.png", setup_out=lambda o: os.mkdir(
            os.path.join(o, "labels.png")), message="folder"),
        case("label_jpg", "{out}/labels.jpg", message="png"),
        case("missing_folder", "{out}/nope/labels.png", message="does not exist"),
        case("under_a_file", "{out}/file/labels.png", setup_out=lambda o: open(
            os.path.join(o, "file"), "w").close()),
        case("fifo", "{out}/labels.png", setup_out=lambda o: os.mkfifo(
            os.path.join(o, "labels.png")), message="regular file"),
        case("empty_name", ""),
        case("out_is_input", env.photo, message="different"),
        case("logits_txt", "{out}/labels.png", extra=["--save-logits", "{out}/l.txt"],
             message="npy"),
        case("logits_folder", "{out}/labels.png", extra=["--save-logits", "{out}/l.npy"],
             setup_out=lambda o: os.mkdir(os.path.join(o, "l.npy")), message="folder"),
        case("logits_same", "{out}/labels.png", extra=["--save-logits", "{out}/labels.png"]),
        case("overlay_xyz", "{out}/overlay.xyz", extra=["--overlay"]),
        case("overlay_jpg", "{out}/overlay.jpg", "ok", ["--overlay"], outputs=("overlay.jpg",),
             check=overlay_ok),
        case("with_logits", "{out}/labels.png", "ok", ["--save-logits", "{out}/logits.npy"],
             outputs=("labels.png", "logits.npy"), check=logits_ok),
        case("config_for_onnx", "{out}/labels.png", extra=["--config", "ccnet-demo"],
             message="do not apply"),
    ]


# ----------------------------------------------------------------------------- video
def _video_case(env, name: str, expect: str, setup, extra=(), message=None, clip=None,
                max_frames=None, argv=None) -> Case:
    clip_path = clip or "{in}/clip.mp4"

    def check(case_dir, result):
        path = clip_path.replace("{in}", os.path.join(case_dir, "in"))
        return checks.video_outputs_match(env, path, case_dir, result["stderr"], max_frames)

    argv = argv or ["video", "--model", MODEL, "--input", clip_path, "--output",
                    "{out}/overlay.mp4", "--labels-dir", "{out}/labels", "--no-progress", *extra]
    return Case(id=f"video/{name}", family="video", argv=argv, expect=expect, setup=setup,
                check=check, outputs=("overlay.mp4", "labels/"), message=message)


def _clip_setup(env, transform=None, extra=None):
    def setup(case_dir):
        write_onnx(env, case_dir)
        with open(env.clip, "rb") as f:
            data = f.read()
        with open(os.path.join(case_dir, "in", "clip.mp4"), "wb") as f:
            f.write(transform(data) if transform else data)
        if extra:
            extra(os.path.join(case_dir, "out"))
    return setup


def _zeroed(start_fraction: float, length: int):
    def transform(data):
        out = bytearray(data)
        start = int(len(out) * start_fraction)
        out[start:start + length] = bytes(len(out[start:start + length]))
        return bytes(out)
    return transform


def _damaged_frames(frames):
    """Destroy the MPEG-4 start codes of ``frames``: exactly those fail to decode."""
    return lambda data: damage_frames(data, frames)


def _old_outputs(out: str, count: int = 12) -> None:
    """An earlier run's outputs: label PNGs 000000..  and an overlay video."""
    os.makedirs(os.path.join(out, "labels"))
    for i in range(count):
        cv2.imwrite(os.path.join(out, "labels", f"{i:06d}.png"), np.full((48, 64), 3, np.uint8))
    with open(os.path.join(out, "overlay.mp4"), "wb") as f:
        f.write(b"old video")


def video_cases(env, size: str) -> List[Case]:
    clip = _clip_setup(env)
    cases = [
        _video_case(env, "valid", "ok", clip),
        _video_case(env, "max_frames_3", "ok", clip, ["--max-frames", "3"], max_frames=3),
        _video_case(env, "rerun_replaces", "ok", _clip_setup(env, extra=_old_outputs),
                    ["--max-frames", "3"], max_frames=3),
        _video_case(env, "damaged", "ok", _clip_setup(env, _damaged_frames({2, 3}))),
        _video_case(env, "damaged_strict", "error", _clip_setup(env, _damaged_frames({2})),
                    ["--strict"], message="could not be decoded"),
        _video_case(env, "truncated", "error", _clip_setup(env, lambda b: b[: len(b) * 2 // 3])),
        _video_case(env, "empty", "error", _clip_setup(env, lambda b: b"")),
        _video_case(env, "text", "error", _clip_setup(env, lambda b: b"not a video\n" * 50)),
        _video_case(env, "missing", "error", lambda d: write_onnx(env, d), clip="{in}/nope.mp4"),
        _video_case(env, "max_frames_0", "error", clip, ["--max-frames", "0"]),
        _video_case(env, "alpha_2", "error", clip, ["--alpha", "2"], message="alpha"),
        _video_case(env, "output_folder", "error", _clip_setup(env, extra=lambda o: os.mkdir(
            os.path.join(o, "overlay.mp4"))), message="folder"),
        _video_case(env, "output_fifo", "error", _clip_setup(env, extra=lambda o: os.mkfifo(
            os.path.join(o, "overlay.mp4"))), message="regular file"),
        _video_case(env, "labels_is_file", "error", _clip_setup(env, extra=lambda o: open(
            os.path.join(o, "labels"), "w").close()), message="not a folder"),
        _video_case(env, "labels_foreign_files", "error", _clip_setup(env, extra=lambda o: (
            os.mkdir(os.path.join(o, "labels")), open(os.path.join(o, "labels", "notes.txt"),
                                                      "w").close())), message="other files"),
        _video_case(env, "output_txt", "error", clip, argv=[
            "video", "--model", MODEL, "--input", "{in}/clip.mp4", "--output", "{out}/o.txt",
            "--no-progress"], message="must end in"),
        _video_case(env, "labels_under_file", "error", _clip_setup(env, extra=lambda o: open(
            os.path.join(o, "f"), "w").close()), argv=[
            "video", "--model", MODEL, "--input", "{in}/clip.mp4", "--labels-dir",
            "{out}/f/labels", "--no-progress"]),
        _video_case(env, "nothing_to_write", "error", clip, argv=[
            "video", "--model", MODEL, "--input", "{in}/clip.mp4", "--no-progress"],
            message="nothing to write"),
        _video_case(env, "same_paths", "error", clip, argv=[
            "video", "--model", MODEL, "--input", "{in}/clip.mp4", "--output", "{out}/x.mp4",
            "--labels-dir", "{out}/x.mp4", "--no-progress"]),
    ]
    rng = random.Random(78)
    for i in range(3 if size == "fast" else 150):
        start, length = rng.uniform(0.05, 0.95), rng.choice([16, 200, 1500])
        cases.append(_video_case(env, f"random/damaged/{i}", "either",
                                 _clip_setup(env, _zeroed(start, length))))
    return cases


# ----------------------------------------------------------------------------- signals
def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _drive(sig: int):
    def drive(case_dir: str, argv: List[str], env: dict, timeout: float) -> dict:
        """Run ``argv``, send ``sig`` once it has staged two label maps, allow ``timeout``
        seconds for it to stop."""
        # A test run started in the background inherits SIGINT ignored (POSIX), and Python
        # then installs no KeyboardInterrupt handler: give the command the default, as a shell
        # in the foreground does.
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", *argv], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_signals)
        staged = os.path.join(case_dir, "out", ".labels.partial-*", "*.png")
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and len(glob.glob(staged)) < 2:
            time.sleep(0.05)
        if proc.poll() is not None:  # would be misread as a leftover of an interrupted run
            proc.communicate()
            return {"crash": "the command ended before the signal was sent: the clip is too "
                             "short for this machine (raise LONG_CLIP_FRAMES)"}
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"crash": "did not stop after the signal"}
        return {"rc": proc.returncode, "stdout": out, "stderr": err}
    return drive


def signal_cases(env, size: str) -> List[Case]:
    def case(name, sig, message, old=False):
        def setup(case_dir):
            write_onnx(env, case_dir)
            if old:
                _old_outputs(os.path.join(case_dir, "out"))
        return Case(id=f"signal/{name}", family="signal",
                    argv=["video", "--model", MODEL, "--input", env.long_clip, "--output",
                          "{out}/overlay.mp4", "--labels-dir", "{out}/labels", "--no-progress"],
                    expect="error", setup=setup, message=message, runner="subprocess",
                    drive=_drive(sig), timeout=120)

    cases = [case("sigterm_over_earlier_run", signal.SIGTERM, "terminated", old=True),
             case("sigint", signal.SIGINT, "interrupted")]
    if size != "fast":
        cases += [case("sigterm", signal.SIGTERM, "terminated"),
                  case("sigint_over_earlier_run", signal.SIGINT, "interrupted", old=True)]
    return cases

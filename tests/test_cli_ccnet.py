"""The `ccnet` command: subcommands, --version, one-line errors for every subcommand, verbosity
and quiet third-party output, progress as log lines, file modes, `ccnet zoo`, and `ccnet
predict` on folders."""
from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest

from ccnet.errors import CCNetError
from cli.app import log as cli_log
from cli.app import run_guarded
from cli.main import COMMANDS, main

from helpers import REPO, VOC_DIR, error_line


def _ccnet(argv, capsys):
    """(exit status, stdout, stderr) of ``ccnet argv`` in-process; usage errors exit too."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_lists_every_subcommand(capsys):
    rc, out, _ = _ccnet(["--help"], capsys)
    assert rc == 0
    for name in COMMANDS:
        assert f"    {name} " in out or f"    {name}\n" in out, name
    assert {"export", "fp16", "calibrate", "build", "inspect", "parity", "eval", "predict",
            "video", "zoo", "deploy"} <= set(COMMANDS)


def test_version(capsys):
    import ccnet
    from cli.video import main as video_main

    assert _ccnet(["--version"], capsys)[1].strip() == f"ccnet-deploy {ccnet.__version__}"
    with pytest.raises(SystemExit):
        video_main(["--version"])
    assert ccnet.__version__ in capsys.readouterr().out


# ----------------------------------------------------------------------------- bad input
def _bad_argv(name, tmp_path):
    """A command line for subcommand ``name`` whose model (or input) does not exist."""
    missing = tmp_path / "missing"
    table = {
        "export": ["--model", f"{missing}.pth", "--out", tmp_path / "m.onnx"],
        "fp16": ["--model", f"{missing}.onnx", "--out", tmp_path / "m.onnx"],
        "calibrate": ["--model", f"{missing}.onnx", "--images", tmp_path, "--out",
                      tmp_path / "m.onnx"],
        "build": ["--model", f"{missing}.onnx", "--saveEngine", tmp_path / "m.engine"],
        "inspect": ["--model", f"{missing}.engine"],
        "parity": ["--model", f"{missing}.pth", "--data", VOC_DIR, "--dataset", "voc",
                   "--onnx", f"{missing}.onnx"],
        "eval": ["--model", f"{missing}.onnx", "--data", VOC_DIR, "--dataset", "voc"],
        "predict": ["--model", f"{missing}.onnx", "--input", tmp_path, "--out", tmp_path / "o"],
        "video": ["--model", f"{missing}.onnx", "--input", f"{missing}.mp4"],
        "train": ["--model", f"{missing}.pth", "--data", tmp_path, "--out", tmp_path / "m.pth"],
        "synthetic": ["--out", tmp_path / "scenes", "--num", "0"],
        "zoo": ["--dataset", "nope"],
        "bench": ["--model", f"{missing}.onnx", "--sizes", "640x480"],
        "deploy": ["--model", f"{missing}.pth", "--out", tmp_path / "deployed"],
        "triton-repo": ["--model", f"{missing}.onnx", "--repo", tmp_path / "repo"],
        "batch": ["--model", f"{missing}.onnx", "--input", tmp_path, "--output",
                  tmp_path / "out"],
        # a usage error: a missing model would be found only as the server starts
        "serve": ["--model", f"{missing}.onnx", "--instances", "0"],
    }
    return table.get(name)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bad_input_is_one_line_error(name, tmp_path, capsys, shared_data):
    argv = _bad_argv(name, tmp_path)
    assert argv is not None, f"add a bad-input case for {name!r}"
    before = sorted(os.listdir(tmp_path))
    rc, _, err = _ccnet([name, *argv], capsys)
    assert rc == 2, err
    error_line(err)
    assert sorted(os.listdir(tmp_path)) == before  # nothing (half-)written


def test_usage_errors_are_one_line(capsys):
    for argv in (["predict"], ["predict", "--model", "x", "--input", "y", "--bogus"],
                 ["no-such-command"], ["-v", "-q", "zoo"]):
        rc, _, err = _ccnet(argv, capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1, (argv, err)
        assert err.startswith("error: ") and "--help" in err


# ----------------------------------------------------------------------------- verbosity
def _noisy_run(args: argparse.Namespace) -> int:
    """Stands for a command: our info line, a third-party logger warning and a third-party
    Python warning, then the result line."""
    cli_log("step one")
    logging.getLogger("onnxscript.optimizer").warning("third-party logger warning")
    warnings.warn_explicit("third-party FutureWarning", FutureWarning, "torch/x.py", 1,
                           module="torch.x")
    warnings.warn_explicit("our own warning", UserWarning, "calib/quantize.py", 1,
                           module="calib.quantize")
    print("result")
    return 0


@pytest.mark.parametrize("level, shown, hidden", [
    (None, ["step one", "result", "our own warning"],
     ["third-party logger warning", "third-party FutureWarning"]),
    ("debug", ["step one", "result", "third-party logger warning", "third-party FutureWarning"],
     []),
    ("warning", ["result", "our own warning"], ["step one", "third-party logger warning",
                                                "third-party FutureWarning"]),
])
def test_verbosity_levels(level, shown, hidden, capsys, recwarn):
    """Python warnings that pass the filters are recorded by pytest (``recwarn``) where a
    terminal would print them."""
    assert run_guarded(_noisy_run, argparse.Namespace(log_level=level, no_progress=False)) == 0
    out, err = capsys.readouterr()
    text = out + err + "".join(str(w.message) for w in recwarn.list)
    for expected in shown:
        assert expected in text, (expected, text)
    for unexpected in hidden:
        assert unexpected not in text, (unexpected, text)
    assert logging.getLogger("onnxscript").level == logging.NOTSET  # restored afterwards


def test_export_is_quiet_by_default(tmp_path, tiny_ckpt):
    """A real export in a fresh process: no exporter, opset or torchvision warnings, only our
    lines; -q leaves nothing but errors."""
    def export(*extra):
        out = tmp_path / f"m{len(extra)}.onnx"
        proc = subprocess.run([sys.executable, "-m", "cli.main", "export", "--model", tiny_ckpt,
                               "--out", str(out), "--no-verify", *extra], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 and out.is_file(), proc.stdout + proc.stderr
        return proc

    proc = export()
    assert proc.stderr == "", proc.stderr
    assert "opset 18" in proc.stdout and "wrote" in proc.stdout
    quiet = export("-q")
    assert quiet.stdout == "" and quiet.stderr == ""


# ----------------------------------------------------------------------------- progress
def test_progress_is_log_lines_without_a_terminal(caplog):
    from ccnet import progress

    bar = progress.progress_bar(range(3), desc="eval", unit="img")
    assert isinstance(bar, progress.LineProgress)  # pytest's stderr is not a terminal
    bar.interval = 0.0  # a line per step (default: one every LINE_INTERVAL_S)
    seen = []
    with caplog.at_level(logging.INFO, logger="ccnet.progress"):
        for i in bar:
            seen.append(i)
            if i == 2:
                bar.set_postfix(mIoU="50.00")
        bar.close()
    assert seen == [0, 1, 2]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("eval: 1/3 img") and lines[-1].startswith("eval: 3/3 img")
    assert "mIoU=50.00" in lines[-1] and len(lines) == 3
    assert progress.progress_bar(range(3), enabled=False) is None


def test_progress_is_a_bar_on_a_terminal(monkeypatch):
    """A stand-in stderr that reports a terminal (the one thing the choice reads)."""
    import io

    from tqdm import tqdm

    from ccnet import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress.progress_bar(total=2, desc="video")
    assert isinstance(bar, tqdm)
    bar.update(2)
    bar.close()
    assert "video" in sys.stderr.getvalue()


# ----------------------------------------------------------------------------- file modes
def test_outputs_follow_the_umask(tmp_path, tiny_onnx, shared_data, capsys):
    from ccnet.files import write_json

    old = os.umask(0o022)
    try:
        out = tmp_path / "labels.png"
        rc, _, err = _ccnet(["predict", "--model", tiny_onnx, "--input",
                             os.path.join(VOC_DIR, "images", "1_image.png"), "--out", out],
                            capsys)
        assert rc == 0, err
        write_json(str(tmp_path / "r.json"), {"a": 1})
        for path in (out, tmp_path / "r.json"):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path
        os.umask(0o077)
        write_json(str(tmp_path / "private.json"), {"a": 1})
        assert stat.S_IMODE(os.stat(tmp_path / "private.json").st_mode) == 0o600
    finally:
        os.umask(old)


# ----------------------------------------------------------------------------- zoo
def test_zoo_lists_16_configs(capsys):
    from ccnet.zoo import get_config

    rc, out, _ = _ccnet(["zoo"], capsys)
    assert rc == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("ccnet_r")]
    assert len(rows) == 16
    for name, dataset, crop, schedule, miou, ms_flip, scale, mode, _, file in rows:
        config = get_config(name)
        assert (config.dataset, config.mode) == (dataset, mode)
        assert (float(miou), float(ms_flip)) == (config.miou, config.miou_ms_flip)
        assert crop in config.alias and f"_{schedule}_" in config.alias
        assert scale == "x".join(map(str, config.test_scale))
        assert config.url.endswith("/" + file)
    assert "hub" in out and "checkpoints" in out and "ccnet-demo" in out


def test_zoo_cache_folder_resolves_offline(tmp_path, monkeypatch, capsys):
    """A file put where `ccnet zoo` says makes its name resolve without a download."""
    import torch

    from ccnet.checkpoint import resolve_checkpoint

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    rc, out, _ = _ccnet(["zoo", "--dataset", "voc", "--json"], capsys)
    listing = json.loads(out)
    assert listing["checkpoint_dir"] == os.path.join(torch.hub.get_dir(), "checkpoints")
    assert len(listing["configs"]) == 4 and not any(c["cached"] for c in listing["configs"])
    row = listing["configs"][0]
    os.makedirs(listing["checkpoint_dir"])
    placed = os.path.join(listing["checkpoint_dir"], row["file"])
    open(placed, "wb").close()
    assert resolve_checkpoint(row["name"])[0] == placed
    assert resolve_checkpoint(row["alias"])[0] == placed


# ----------------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, shared_data):
    """Two real photos (one in a sub-folder, one as JPEG) and an unreadable file."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "sub").mkdir()
    photo = cv2.imread(os.path.join(VOC_DIR, "images", "1_image.png"))
    cv2.imwrite(str(folder / "a.png"), photo[:200, :300])
    cv2.imwrite(str(folder / "sub" / "b.jpg"), photo[100:, 50:])
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def test_predict_folder(image_folder, tmp_path, tiny_onnx, capsys):
    from runtime import Segmenter

    out, show = tmp_path / "labels", tmp_path / "overlays"
    rc, stdout, err = _ccnet(["predict", "--model", tiny_onnx, "--input", image_folder,
                              "--out", out, "--show-dir", show], capsys)
    assert rc == 0, err
    assert "wrote 2 image(s)" in stdout and "1 unreadable skipped" in stdout
    assert "broken.png" in err  # the warning names the skipped file
    with Segmenter(tiny_onnx) as segmenter:
        for rel in ("a.png", os.path.join("sub", "b.jpg")):
            image = cv2.imread(str(image_folder / rel))
            name = os.path.splitext(rel)[0] + ".png"
            labels = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(labels, segmenter.segment(image))
            assert cv2.imread(str(show / name)).shape == image.shape
    assert sorted(os.listdir(out)) == ["a.png", "sub"]


@pytest.mark.parametrize("case, expect", [
    ("inside", "inside the input folder"),
    ("logits", "--save-logits is for one image"),
    ("nothing", "nothing to write"),
    ("collision", "would both write"),
])
def test_predict_folder_bad_input(case, expect, image_folder, tmp_path, tiny_onnx, capsys):
    argv = ["predict", "--model", tiny_onnx, "--input", image_folder]
    if case == "inside":
        argv += ["--out", image_folder / "labels"]
    elif case == "logits":
        argv += ["--out", tmp_path / "o", "--save-logits", tmp_path / "x.npy"]
    elif case == "collision":
        clash = tmp_path / "clash"
        clash.mkdir()
        for name in ("x.png", "x.jpg"):
            cv2.imwrite(str(clash / name), np.zeros((32, 32, 3), np.uint8))
        argv = ["predict", "--model", tiny_onnx, "--input", clash, "--out", tmp_path / "o"]
    rc, _, err = _ccnet(argv, capsys)
    assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists() and not (image_folder / "labels").exists()


def test_predict_one_image_with_show_dir(tmp_path, tiny_onnx, shared_data, capsys):
    photo = os.path.join(VOC_DIR, "images", "1_image.png")
    rc, out, err = _ccnet(["predict", "--model", tiny_onnx, "--input", photo, "--show-dir",
                           tmp_path / "show"], capsys)
    assert rc == 0, err
    assert cv2.imread(str(tmp_path / "show" / "1_image.png")).shape == cv2.imread(photo).shape


def test_script_form_still_works():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "export", "to_onnx.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--ckpt" in proc.stdout and "--opset" in proc.stdout


def test_inspect_takes_model_flag_or_argument(capsys):
    for argv in (["inspect"], ["inspect", "a.engine", "--model", "b.engine"]):
        rc, _, err = _ccnet(argv, capsys)
        assert rc == 2 and "give the engine once" in err
    with pytest.raises(CCNetError):
        from cli.inspect import run

        run(argparse.Namespace(model=None, engine=None, plugins=None, json=False))

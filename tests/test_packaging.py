"""Packaging: install profiles without exact pins, a torch-free core that really runs (installed
into a fresh virtual environment from the package registry), Python >= 3.10 syntax and
standard library (checked with vermin: no 3.10 interpreter here)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv

import cv2
import pytest

from helpers import REPO, write_video

PACKAGES = ("ccnet", "export", "calib", "runtime", "plugins", "cli")
TORCH_FREE_CORE = {"numpy", "opencv-python-headless", "pillow", "tqdm"}


def _requirement_name(req: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower()


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    """(Requires-Python, {extra or "": [requirements]}, provided extras) as setup.py declares
    them now, read from freshly generated egg-info."""
    out = tmp_path_factory.mktemp("egg")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = out / "ccnet_deploy.egg-info"
    pkg_info = (info / "PKG-INFO").read_text()
    requires, section = {"": []}, ""
    for line in (info / "requires.txt").read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            requires.setdefault(section, [])
        elif line.strip():
            requires[section].append(line.strip())
    python = re.search(r"^Requires-Python: (.+)$", pkg_info, re.M).group(1)
    extras = set(re.findall(r"^Provides-Extra: (.+)$", pkg_info, re.M))
    return python, requires, extras


def test_install_profiles(metadata):
    python, requires, extras = metadata
    assert python == ">=3.10"
    assert {_requirement_name(r) for r in requires[""]} == TORCH_FREE_CORE
    assert {"ort", "ort-gpu", "trt", "export", "serve", "batch", "all", "test"} <= extras
    for section, reqs in requires.items():
        for req in reqs:
            assert "==" not in req, f"exact pin in [{section}]: {req}"
    torch = [r for r in requires["export"] if _requirement_name(r) == "torch"]
    assert len(torch) == 1 and ">=" in torch[0] and "<" in torch[0].replace("<=", "<"), torch
    where = {name: {s for s, reqs in requires.items()
                    if name in {_requirement_name(r) for r in reqs}}
             for name in ("torch", "polygraphy", "tensorrt", "onnxruntime", "onnxruntime-gpu")}
    assert where["torch"] == {"export", "all"}
    # polygraphy also in [test]: the TensorRT layer's tests run on its loaders with doubles
    assert where["polygraphy"] <= {"trt", "all", "gpu", "test"} and "trt" in where["polygraphy"]
    assert "trt" in where["tensorrt"] and "ort" in where["onnxruntime"]
    assert not where["onnxruntime"] & where["onnxruntime-gpu"]  # one import name: never both


def test_build_system_and_console_scripts():
    text = open(os.path.join(REPO, "pyproject.toml")).read()
    assert "[build-system]" in text and "setuptools.build_meta" in text
    setup_py = open(os.path.join(REPO, "setup.py")).read()
    from cli.main import COMMANDS

    scripts = re.findall(r'"(ccnet[\w-]*)=(cli\.\w+):main"', setup_py)
    assert ("ccnet", "cli.main") in scripts
    import importlib

    for _, module in scripts:
        assert callable(importlib.import_module(module).main)
    for command, module in COMMANDS.items():
        assert hasattr(importlib.import_module(f"cli.{module}"), "run"), command


def test_python_310_compatible():
    """No syntax or standard library newer than Python 3.10 in the packages or scripts."""
    pytest.importorskip("vermin", reason="vermin is in the [test] extra: pip install -e .[test]")
    targets = [os.path.join(REPO, p) for p in PACKAGES + ("scripts",)]
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
         "-t=3.10-", "--violations", "--no-tips", "--eval-annotations", *targets],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


# ----------------------------------------------------------------------------- fresh venv
def _copy_sources(dest):
    """The files a source install needs (no tests, no build folders, no local venv)."""
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(os.path.join(REPO, name), dest)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "build", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(os.path.join(REPO, package), os.path.join(dest, package), ignore=ignore)


def _write_clip(path, photo, frames=3):
    write_video(path, [cv2.resize(cv2.imread(photo), (160, 120))] * frames, 5)


TORCH_FREE_SCRIPT = r"""
import importlib.util, sys
assert importlib.util.find_spec("torch") is None, "torch is installed"
try:
    import torch  # noqa: F401
    raise SystemExit("import torch worked")
except ImportError:
    pass
import ccnet, runtime
assert not ccnet.__file__.startswith(sys.argv[3]), ccnet.__file__  # the installed copy
from ccnet.images import load_image
from runtime import Segmenter
with Segmenter(sys.argv[1]) as seg:
    image = load_image(sys.argv[2])
    labels = seg.segment(image)
    assert labels.shape == image.shape[:2] and seg.backend == "onnxruntime"
print("segmented", labels.shape)
"""


def test_torch_free_install_runs_onnx_and_video(tmp_path, tiny_onnx, photos):
    """`pip install .[ort]` into a new venv (pip's cache makes reruns quick): no torch, yet an
    exported ONNX segments a photo, `ccnet video` and `ccnet-video` run, and torch-only commands
    say which profile to install."""
    src, env_dir = tmp_path / "src", tmp_path / "venv"
    src.mkdir()
    _copy_sources(src)
    venv.create(env_dir, with_pip=False)  # this pip installs into it (--python): faster
    bin_dir = env_dir / "bin"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"),
                           "install", "-q", f"{src}[ort]"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def run(*cmd):
        return subprocess.run([str(c) for c in cmd], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)

    proc = run(bin_dir / "python", "-c", TORCH_FREE_SCRIPT, tiny_onnx, photos[0], REPO)
    assert proc.returncode == 0 and "segmented" in proc.stdout, proc.stdout + proc.stderr
    clip = tmp_path / "clip.mp4"
    _write_clip(clip, photos[0])
    for script, out in (([bin_dir / "ccnet", "video"], "a.mp4"), ([bin_dir / "ccnet-video"],
                                                                   "b.mp4")):
        proc = run(*script, "--model", tiny_onnx, "--input", clip, "--output", tmp_path / out,
                   "--labels-dir", tmp_path / f"labels_{out}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "3 frames" in proc.stdout and proc.stderr == "", proc.stdout + proc.stderr
        assert len(os.listdir(tmp_path / f"labels_{out}")) == 3
    proc = run(bin_dir / "ccnet", "--help")
    assert proc.returncode == 0 and "deploy" in proc.stdout and "zoo" in proc.stdout
    proc = run(bin_dir / "ccnet", "export", "--model", "ccnet-demo", "--out", tmp_path / "x.onnx")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "ccnet-deploy[export]" in proc.stderr and not (tmp_path / "x.onnx").exists()

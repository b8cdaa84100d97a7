"""Helpers of the plugin tests: building the native targets, the shape sweep both builds of the
kernels are checked on, the float64 reference, and running the C++ test drivers.

The CMake build lives in build/ ($CCNET_BUILD_DIR overrides it, e.g. tests/gpu/run_on_device.sh
points it at its prebuilt folder), built with 2 jobs ($CCNET_BUILD_JOBS). A fresh configure here
uses one CUDA architecture (CCNET_TEST_CUDA_ARCH, default 75) to keep CI fast; an existing build
keeps its settings. Assumes nobody builds into the same folder concurrently.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import plugins
from helpers import REPO

# The ccnet_cuda_cpu_selftest checks that must pass: the CUDA CPU mode's barrier, warp shuffles,
# launch configuration and shared memory per block.
CPU_MODE_SELFTESTS = ["barrier", "shuffle", "launch-configuration", "shared-per-block"]

# (N, Cq, C, H, W): every edge of the kernels' tiling (32-pixel query/key tiles, 16-channel q/k
# chunks, 64-channel value tiles): H=1, W=1, H and W below, equal to and above 32 and not
# multiples of it, Cq not a multiple of 16, C not a multiple of 64, N > 1, C = 512.
SWEEP_SHAPES = [
    (1, 8, 16, 1, 1),
    (1, 3, 5, 1, 37),
    (1, 20, 70, 29, 1),
    (2, 16, 64, 32, 32),
    (1, 5, 33, 33, 65),
    (2, 17, 130, 31, 45),
    (1, 64, 512, 9, 13),
]
# Logit standard deviations: a flat softmax (all weights alike) and a peaked one (few dominate).
SOFTMAX_SPREADS = {"flat": 0.1, "peaked": 6.0}
# Allowed max|out - ref| / max|ref|, the reference computed in float64 from the same inputs.
TOLERANCE = {"fp32": 1e-5, "fp16": 3e-3}
NUMPY_DTYPE = {"fp32": np.float32, "fp16": np.float16}
SANITIZE_SUBDIR = "sanitize"


def shape_id(shape) -> str:
    return "x".join(map(str, shape))


# ---- building --------------------------------------------------------------------------------
def find_nvcc() -> str | None:
    return shutil.which("nvcc") or next(
        (p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)


def build_dir() -> str:
    return os.environ.get("CCNET_BUILD_DIR") or os.path.join(REPO, "build")


def _run(cmd, env=None):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def _cmake_env(nvcc: str | None) -> dict:
    env = dict(os.environ)
    if nvcc:
        env["PATH"] = os.path.dirname(nvcc) + os.pathsep + env.get("PATH", "")
    return env


def _configure_main(folder: str, nvcc: str | None) -> None:
    if os.path.exists(os.path.join(folder, "CMakeCache.txt")):
        return
    cmd = ["cmake", "-S", REPO, "-B", folder]
    if nvcc:
        arch = os.environ.get("CCNET_TEST_CUDA_ARCH", "75")
        cmd += [f"-DCMAKE_CUDA_ARCHITECTURES={arch}", f"-DCMAKE_CUDA_COMPILER={nvcc}"]
    else:
        cmd += ["-DCCNET_CUDA=OFF"]
    _run(cmd, _cmake_env(nvcc))


_built: set[tuple[str, tuple[str, ...]]] = set()


def _build(folder: str, targets: tuple[str, ...], env=None) -> None:
    if (folder, targets) in _built:
        return
    jobs = os.environ.get("CCNET_BUILD_JOBS", "2")
    _run(["cmake", "--build", folder, f"-j{jobs}", "--target", *targets], env)
    _built.add((folder, targets))


def require_cmake() -> None:
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found: needed to build the plugin libraries")
    if not any(shutil.which(tool) for tool in (os.environ.get("CXX", "c++"), "g++", "clang++")):
        pytest.skip("no C++ compiler found: needed to build the plugin libraries")


def build_targets(*targets: str, cuda: bool = False) -> str:
    """Configure the main build folder if needed, build `targets`, return the folder.
    `cuda` targets need nvcc (skip without it); the others only a C++ compiler."""
    require_cmake()
    nvcc = find_nvcc()
    if cuda and nvcc is None:
        pytest.skip("nvcc not found: the CUDA toolkit is needed to build libccnet_plugins.so")
    folder = build_dir()
    _configure_main(folder, nvcc)
    if cuda and not _configured_with_cuda(folder):
        pytest.skip(f"{folder} was configured without CUDA; delete it to reconfigure with nvcc")
    _build(folder, targets, _cmake_env(nvcc))
    return folder


def _configured_with_cuda(folder: str) -> bool:
    try:
        with open(os.path.join(folder, "CMakeCache.txt"), encoding="utf-8") as f:
            compilers = [line.split("=", 1)[1].strip() for line in f if line.startswith("CMAKE_CUDA_COMPILER:")]
    except OSError:
        return False
    return bool(compilers) and os.path.isfile(compilers[0])


def build_sanitized(*targets: str) -> str:
    """Build `targets` in <build>/sanitize: CPU mode only, AddressSanitizer + UBSan. Uses the
    TensorRT headers the main build found, so nothing is downloaded twice."""
    main = build_targets("ccnet_cca_cpu")
    folder = os.path.join(main, SANITIZE_SUBDIR)
    if not os.path.exists(os.path.join(folder, "CMakeCache.txt")):
        with open(os.path.join(main, "ccnet_build_info.json"), encoding="utf-8") as f:
            headers = json.load(f)["tensorrt_headers_dir"]
        _run(["cmake", "-S", REPO, "-B", folder, "-DCCNET_SANITIZE=ON", "-DCCNET_CUDA=OFF",
              "-DCMAKE_BUILD_TYPE=RelWithDebInfo", f"-DTENSORRT_INCLUDE_DIR={headers}"])
    _build(folder, targets)
    return folder


# The two builds of the plugin: library file, its CMake target, the host driver built for it.
FLAVOURS = {
    "cuda": (plugins.LIBRARY_NAME, "ccnet_plugins", "ccnet_plugin_host_driver"),
    "cpu": (plugins.CPU_LIBRARY_NAME, "ccnet_cca_cpu", "ccnet_plugin_host_driver_cpu"),
}


def plugin_build(flavour: str) -> tuple[str, str]:
    """(library, host driver) of one build, built if needed; $CCNET_PLUGIN_LIB together with
    $CCNET_PLUGIN_DRIVER name prebuilt CUDA ones."""
    library_name, library_target, driver_target = FLAVOURS[flavour]
    prebuilt = os.environ.get(plugins.ENV_VAR), os.environ.get("CCNET_PLUGIN_DRIVER")
    if flavour == "cuda" and all(prebuilt):
        return prebuilt
    folder = build_targets(library_target, driver_target, cuda=flavour == "cuda")
    return os.path.join(folder, library_name), os.path.join(folder, driver_target)


def sanitizer_env() -> dict:
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "abort_on_error=1:detect_leaks=1:check_initialization_order=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


# ---- inputs and references ------------------------------------------------------------------
def make_inputs(shape, dtype: str, spread: str, seed: int):
    """Random q, k, v as contiguous numpy arrays of `dtype`; q and k scaled so that the logits
    (sums of Cq products) have standard deviation SOFTMAX_SPREADS[spread]."""
    n, cq, c, h, w = shape
    rng = np.random.default_rng(seed)
    scale = (SOFTMAX_SPREADS[spread] / np.sqrt(cq)) ** 0.5
    q = (rng.standard_normal((n, cq, h, w)) * scale).astype(NUMPY_DTYPE[dtype])
    k = (rng.standard_normal((n, cq, h, w)) * scale).astype(NUMPY_DTYPE[dtype])
    v = rng.standard_normal((n, c, h, w)).astype(NUMPY_DTYPE[dtype])
    return q, k, v


def reference_float64(q, k, v) -> np.ndarray:
    """The criss-cross attention formula (docs/mmseg-inference.md) in float64, written independently of the PyTorch op: per image, column logits
    (own pixel -inf) and row logits share one softmax; out = weights x value along both lines."""
    q, k, v = (np.asarray(t, dtype=np.float64) for t in (q, k, v))
    _, _, h, w = q.shape
    out = np.empty(v.shape)
    for b in range(q.shape[0]):
        e_col = np.einsum("chw,ciw->hwi", q[b], k[b])
        e_col[np.arange(h), :, np.arange(h)] = -np.inf
        e_row = np.einsum("chw,chj->hwj", q[b], k[b])
        logits = np.concatenate([e_col, e_row], axis=2)
        a = np.exp(logits - logits.max(axis=2, keepdims=True))
        a /= a.sum(axis=2, keepdims=True)
        out[b] = np.einsum("hwi,ciw->chw", a[..., :h], v[b]) + np.einsum("hwj,chj->chw", a[..., h:], v[b])
    return out


def reference_torch_op(q, k, v) -> np.ndarray:
    """torch.ops.ccnet.criss_cross_attention in float64 on the same (already rounded) inputs."""
    import torch

    import ccnet.ops  # noqa: F401  registers torch.ops.ccnet.criss_cross_attention

    tensors = [torch.from_numpy(np.asarray(t, dtype=np.float64)) for t in (q, k, v)]
    return torch.ops.ccnet.criss_cross_attention(*tensors).numpy()


def relative_error(out, ref) -> float:
    out = np.asarray(out, dtype=np.float64)
    assert not np.isnan(out).any(), "output has NaN: some elements were not written"
    return float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))


def record_correctness(build: str, shape, dtype: str, spread: str, reference: str, error: float) -> None:
    """Append one measured error to $CCNET_CORRECTNESS_JSON when set (the device script)."""
    path = os.environ.get("CCNET_CORRECTNESS_JSON")
    if not path:
        return
    records = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    records.append({"build": build, "shape_n_cq_c_h_w": list(shape), "dtype": dtype, "softmax": spread,
                    "reference": reference, "relative_error": error, "tolerance": TOLERANCE[dtype]})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(records, f, indent=1)


# ---- the C++ drivers --------------------------------------------------------------------------
def run_driver(driver: str, library: str, *args, env=None, timeout=300):
    return subprocess.run([driver, library, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def enqueue_through_driver(driver: str, library: str, folder, shape, dtype: str, q, k, v, env=None):
    """Run the plugin's enqueue (and its serialization round trip) in the host driver on these
    inputs; returns the output array."""
    n, cq, c, h, w = shape
    for name, t in (("query", q), ("key", k), ("value", v)):
        np.ascontiguousarray(t).tofile(os.path.join(folder, f"{name}.bin"))
    proc = run_driver(driver, library, "enqueue", dtype, n, cq, c, h, w, folder, env=env)
    assert proc.returncode == 0, f"driver enqueue {shape_id(shape)} {dtype} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return np.fromfile(os.path.join(folder, "output.bin"), dtype=NUMPY_DTYPE[dtype]).reshape(n, c, h, w)

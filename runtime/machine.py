"""The facts recorded beside every measurement: the machine, the library versions, a
median-of-repeats timer and a callable that keeps its wall time (``Timed``).  Used by ``ccnet
bench``, ``ccnet eval``, parity, ``ccnet deploy``'s report and the scripts in ``bench/``, so
every result file describes its machine the same way.  Torch-free."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from typing import Callable, Dict

# Packages that decide speed or results, looked up without importing them.
PACKAGES = ("ccnet-deploy", "numpy", "opencv-python-headless", "opencv-python", "onnxruntime",
            "onnxruntime-gpu", "onnx", "onnxscript", "torch", "tensorrt", "polygraphy", "ray",
            "nvidia-pytriton", "tritonclient")
# CPU instructions that make INT8 convolutions fast (ONNX Runtime's integer kernels use them).
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def library_versions() -> Dict[str, str]:
    """Installed versions of ``PACKAGES`` (absent ones are left out) and Python's."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _cpuinfo() -> Dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none)."""
    entries: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                entries[key.strip()] = value.strip()
    except OSError:
        pass
    return entries


def machine_info() -> dict:
    """CPU model, core counts, INT8 dot-product support, platform, architecture and load
    average."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    info = {"hostname": platform.node(), "platform": platform.platform(),
            "arch": platform.machine(),
            "cpu": cpu.get("model name") or platform.processor() or "unknown",
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None,
            "int8_dot_product": sorted(flags.intersection(INT8_DOT_PRODUCT_FLAGS))}
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def median_ms(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``reps`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class Timed:
    """A callable that keeps the wall time of its calls (the ms/image of eval and parity)."""

    def __init__(self, fn):
        self.fn = fn
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    @property
    def ms_per_call(self) -> float:
        return 1e3 * self.seconds / self.calls if self.calls else float("nan")

"""Tensor-level comparison of a TensorRT engine with ONNX Runtime, for debugging a parity
failure: polygraphy's ``Comparator`` runs the engine (polygraphy's ``TrtRunner``) and the ONNX it
was built from (polygraphy's ``OnnxrtRunner``, CPU) on the same preprocessed images and compares
every output element-wise (``CompareFunc.simple``: |a - b| <= atol + rtol * |b|).

    ccnet parity --model CKPT --data DIR --dataset voc --engine model.engine --compare

The plugin library is registered the TensorRT way first (``trt_engine.engine_runtime``), so the
engine runs with our CrissCrossAttention plugin, unlike ``polygraphy run --plugins`` (see
``trt_common``); :func:`polygraphy_command` gives that command line for the same ONNX.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np

from ccnet.files import require_file
from ccnet.images import load_image
from ccnet.meta import ModelMeta
from ccnet.processing import preprocess, slide_windows

from .engine_info import EngineInfo, find_profile
from .trt_common import polygraphy_errors, polygraphy_logging

DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 1e-3


def network_inputs(image_paths: Sequence[str], meta: ModelMeta, info: EngineInfo) -> List[dict]:
    """The network inputs segmenting ``image_paths`` feeds the engine (whole image, or each
    slide window), as polygraphy feed dicts; a shape outside the profile is a one-line error."""
    feeds = []
    for path in image_paths:
        batch = preprocess(load_image(path), meta)
        crops = [batch]
        if meta.mode == "slide":
            crops = [np.ascontiguousarray(batch[:, :, y1:y2, x1:x2]) for y1, y2, x1, x2 in
                     slide_windows(batch.shape[2], batch.shape[3], meta.crop_size, meta.stride)]
        for crop in crops:
            find_profile(crop.shape, info)
            feeds.append(OrderedDict([(info.input_name, crop)]))
    return feeds


def engine_runners(engine_path: str, onnx_path: Optional[str] = None,
                   plugins: Optional[str] = None) -> tuple:
    """([polygraphy TrtRunner, polygraphy OnnxrtRunner], EngineInfo, ONNX path): the engine and
    the ONNX it was built from (the side file's, unless ``onnx_path`` is given)."""
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from .trt_engine import engine_runtime

    runtime, info = engine_runtime(engine_path, plugins)
    onnx_path = require_file(onnx_path or info.onnx or "", "ONNX model the engine was built from")
    engine = EngineFromBytes(BytesFromPath(engine_path), runtime=runtime)
    return ([TrtRunner(engine, name="tensorrt"),
             OnnxrtRunner(SessionFromOnnx(onnx_path, providers=["cpu"]), name="onnxruntime")],
            info, onnx_path)


def _passed(result) -> bool:
    """Verdict of one output comparison (polygraphy < 0.50 stores ``passed``, later ones answer
    ``bool()``)."""
    stored = getattr(result, "passed", None)
    return stored if isinstance(stored, bool) else bool(result)


def _iterations(accuracy):
    """Per-input results of polygraphy's ``compare_accuracy``: an AccuracyResult (runner pair
    -> list of per-input results) before polygraphy 0.50, a list of them after."""
    for result in [accuracy] if hasattr(accuracy, "values") else list(accuracy):
        for iterations in result.values():
            yield from iterations


def summarize_accuracy(accuracy) -> Dict[str, object]:
    """{"passed", "outputs": {name: {"max_absdiff", "max_reldiff", "mean_absdiff",
    "failed_inputs", "inputs"}}} from polygraphy's comparison of one runner pair."""
    outputs: Dict[str, dict] = {}
    for iteration in _iterations(accuracy):
        for name, result in iteration.items():
            row = outputs.setdefault(name, {"max_absdiff": 0.0, "max_reldiff": 0.0,
                                            "mean_absdiff": 0.0, "failed_inputs": 0,
                                            "inputs": 0})
            row["max_absdiff"] = max(row["max_absdiff"], float(result.max_absdiff))
            row["max_reldiff"] = max(row["max_reldiff"], float(result.max_reldiff))
            row["mean_absdiff"] += float(result.mean_absdiff)
            row["failed_inputs"] += not _passed(result)
            row["inputs"] += 1
    for row in outputs.values():
        row["mean_absdiff"] /= max(row["inputs"], 1)
    passed = bool(outputs) and all(r["failed_inputs"] == 0 for r in outputs.values())
    return {"passed": passed, "outputs": outputs}


def compare_runners(runners: Sequence, feeds: Sequence[dict], atol: float = DEFAULT_ATOL,
                    rtol: float = DEFAULT_RTOL) -> Dict[str, object]:
    """Run two polygraphy runners on ``feeds`` and compare their outputs element-wise."""
    from polygraphy.comparator import Comparator, CompareFunc

    with polygraphy_logging(quiet=True), polygraphy_errors("the tensor comparison failed"):
        results = Comparator.run(list(runners), data_loader=list(feeds))
        accuracy = Comparator.compare_accuracy(
            results, compare_func=CompareFunc.simple(atol=atol, rtol=rtol))
    summary = summarize_accuracy(accuracy)
    summary.update(atol=atol, rtol=rtol, num_inputs=len(feeds))
    return summary


def compare_engine(engine_path: str, image_paths: Sequence[str], onnx_path: Optional[str] = None,
                   plugins: Optional[str] = None, atol: float = DEFAULT_ATOL,
                   rtol: float = DEFAULT_RTOL) -> Dict[str, object]:
    """TensorRT (``engine_path``) vs ONNX Runtime (the ONNX it was built from) on the network
    inputs of ``image_paths``; the summary names both files and the equivalent polygraphy
    command."""
    runners, info, onnx_path = engine_runners(engine_path, onnx_path, plugins)
    feeds = network_inputs(image_paths, info.model_meta(), info)
    summary = compare_runners(runners, feeds, atol, rtol)
    library = (info.plugin or {}).get("library")
    summary.update(engine=engine_path, onnx=onnx_path,
                   polygraphy=polygraphy_command(onnx_path, info.profiles[0], library, atol, rtol))
    return summary


def _polygraphy_shape(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def polygraphy_command(onnx_path: str, ranges: Dict[str, dict], plugins: Optional[str] = None,
                       atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> str:
    """``polygraphy run`` comparing the same ONNX the same way (strongly typed, same profile,
    same tolerances) on polygraphy's random inputs at the opt shape.  Its ``--plugins`` only
    dlopens the library, which does not register our creator: there the CrissCrossAttention
    nodes are inlined from their ONNX function (docs/tensorrt.md)."""
    parts = ["polygraphy", "run", onnx_path, "--trt", "--onnxrt", "--strongly-typed"]
    if plugins:
        parts += ["--plugins", plugins]
    for key, flag in (("min", "--trt-min-shapes"), ("opt", "--trt-opt-shapes"),
                      ("max", "--trt-max-shapes"), ("opt", "--input-shapes")):
        parts.append(flag)
        parts += [f"{name}:{_polygraphy_shape(r[key])}" for name, r in ranges.items()]
    parts += ["--atol", f"{atol:g}", "--rtol", f"{rtol:g}"]
    return " ".join(parts)


def format_comparison(summary: Dict[str, object]) -> str:
    """One block per engine: files, verdict, per-output error statistics."""
    verdict = "PASSED" if summary["passed"] else "FAILED"
    lines = [f"tensor comparison {verdict}: TensorRT {summary.get('engine', '')} vs ONNX Runtime "
             f"{summary.get('onnx', '')} on {summary['num_inputs']} input(s), "
             f"atol {summary['atol']:g}, rtol {summary['rtol']:g}"]
    for name, row in summary["outputs"].items():
        lines.append(f"  {name}: max |diff| {row['max_absdiff']:.4g}, max rel diff "
                     f"{row['max_reldiff']:.4g}, mean |diff| {row['mean_absdiff']:.4g}, "
                     f"{row['failed_inputs']}/{row['inputs']} input(s) out of tolerance")
    if summary.get("polygraphy"):
        lines.append(f"  polygraphy (plugin inlined, random inputs): {summary['polygraphy']}")
    return "\n".join(lines)

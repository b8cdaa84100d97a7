"""One-shot deployment of a CCNet: checkpoint → FP32 ONNX → FP16 / INT8 ONNX → TensorRT engines
(when TensorRT is installed) → parity against PyTorch → ``DIR/report.md`` + ``DIR/report.json``.

    ccnet deploy --model ccnet-demo --out deploy/ --calib-images photos/ [--engine]

Every step is the existing function (``export_onnx``, ``convert_to_fp16``, ``quantize``,
``build_engine``, ``parity_report``).  Resumable: ``DIR/deploy_state.json`` records, per step,
the digests of its inputs (files: sha256; folders: names, sizes and modification times) and of
the files it wrote; a rerun skips a step whose inputs are unchanged and whose outputs are still
there, unmodified.  A change (another checkpoint, new calibration images, an edited ONNX)
reruns that step and every step that reads its output.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ccnet.errors import CCNetError, first_line
from ccnet.files import file_sha256, require_folder, write_json
from ccnet.images import iter_images
from ccnet.meta import PRECISIONS

STATE_FILE = "deploy_state.json"
# Parity on unlabelled calibration images: PyTorch runs on each, so only the first few.
DEFAULT_AGREEMENT_IMAGES = 20
LATENCY_IMAGES = 5

logger = logging.getLogger(__name__)


@dataclass
class DeployPlan:
    """What ``deploy`` makes; see :func:`deploy` for the fields."""

    model: str
    out_dir: str
    precisions: Tuple[str, ...] = ("fp32", "fp16")
    calib_images: Optional[str] = None
    engine: bool = False
    data: Optional[str] = None
    dataset: Optional[str] = None
    max_images: Optional[int] = None
    config: Optional[str] = None
    plugins: Optional[str] = None
    shapes: Dict[str, Optional[str]] = field(default_factory=dict)  # min/opt/max trtexec style
    calib_method: Optional[str] = None
    calib_num_images: Optional[int] = None
    progress: bool = True

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)


def parse_precisions(text: Optional[str], calib_images: Optional[str]) -> Tuple[str, ...]:
    """``"fp32,fp16,int8"`` → a tuple in pipeline order; default fp32+fp16, plus int8 when
    calibration images are given."""
    if not text:
        return ("fp32", "fp16", "int8") if calib_images else ("fp32", "fp16")
    wanted = {p.strip().lower() for p in text.split(",") if p.strip()}
    unknown = sorted(wanted - set(PRECISIONS))
    if unknown or not wanted:
        raise CCNetError(f"unknown precision {', '.join(unknown) or repr(text)}: use a comma "
                         f"list of {', '.join(PRECISIONS)}")
    if "int8" in wanted and not calib_images:
        raise CCNetError("int8 needs calibration images: add --calib-images DIR (a few hundred "
                         "images like the ones the model will see)")
    return tuple(p for p in PRECISIONS if p in wanted)


# ----------------------------------------------------------------------------- digests
def _digest(path: str) -> str:
    """sha256 of a file, memoised per (path, inode, size, modification time): one deploy hashes
    the same checkpoint, ONNX and engine files in several steps.  Atomic writes replace the
    inode, so a rewritten file is hashed again."""
    st = os.stat(path)
    return _digest_of(os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest_of(path: str, inode: int, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def files_digest(paths: Sequence[str], root: str) -> str:
    """Digest of a set of files by relative name, size and modification time (a dataset is too
    large to read on every run; any copy, edit or replacement changes these)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        st = os.stat(path)
        digest.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _inputs_digest(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- steps
class StepRunner:
    """Runs named steps, skipping those whose recorded inputs and outputs are unchanged."""

    def __init__(self, state_path: str):
        self.state_path = state_path
        self.steps: Dict[str, dict] = {}
        if os.path.isfile(state_path):
            try:
                with open(state_path) as f:
                    self.steps = json.load(f).get("steps", {})
            except (OSError, ValueError, AttributeError):
                logger.warning("ignoring unreadable %s: every step runs again", state_path)
        self.order: List[str] = []

    def up_to_date(self, name: str, inputs: dict, outputs: Sequence[str]) -> bool:
        record = self.steps.get(name)
        return bool(record) and record["inputs_digest"] == _inputs_digest(inputs) and all(
            os.path.isfile(p) and record["outputs"].get(p) == _digest(p) for p in outputs)

    def run(self, name: str, inputs: dict, outputs: Sequence[str], work: Callable[[], dict]):
        """``work()`` (returning a JSON-able result) unless the step is up to date."""
        self.order.append(name)
        if self.up_to_date(name, inputs, outputs):
            self.steps[name]["skipped"] = True
            logger.info("%s: up to date, skipped", name)
            return self.steps[name]["result"]
        logger.info("%s ...", name)
        start = time.perf_counter()
        result = work()
        self.steps[name] = {
            "inputs": inputs, "inputs_digest": _inputs_digest(inputs),
            "outputs": {p: _digest(p) for p in outputs}, "result": result,
            "seconds": round(time.perf_counter() - start, 2), "skipped": False}
        write_json(self.state_path, {"steps": self.steps})
        logger.info("%s: done in %.1f s", name, self.steps[name]["seconds"])
        return result

    def records(self) -> List[dict]:
        return [dict(name=n, seconds=self.steps[n]["seconds"],
                     skipped=self.steps[n].get("skipped", False)) for n in self.order]


# ----------------------------------------------------------------------------- the pipeline
@dataclass
class DeployInputs:
    """What a run reads from the plan's folders, listed once: the calibration images (sorted
    paths) and the labelled dataset (opened), each empty/None when not given."""

    calib_images: List[str]
    dataset: object = None


def check_plan(plan: DeployPlan) -> DeployInputs:
    """One-line errors for a plan that cannot work, before anything runs; returns its inputs."""
    if os.path.isfile(plan.out_dir):
        raise CCNetError(f"--out {plan.out_dir} is a file: give a folder")
    images: List[str] = []
    if plan.calib_images:
        require_folder(plan.calib_images, "calibration image folder")
        images = list(iter_images(plan.calib_images))
        if not images:
            raise CCNetError(f"no images in {plan.calib_images}")
    if bool(plan.data) != bool(plan.dataset):
        raise CCNetError("give --data DIR and --dataset KIND together (labelled parity data)")
    dataset = None
    if plan.data:
        from ccnet.datasets import open_dataset

        dataset = open_dataset(plan.data, plan.dataset)
    return DeployInputs(images, dataset)


def deploy(plan: DeployPlan) -> dict:
    """Run every step of ``plan`` (see the module docstring) and write the reports.

    ``plan.model``: checkpoint, zoo or built-in name, URL; ``precisions``: which ONNX files to
    make, engines for and compare (the FP32 ONNX is always made: the others derive from it);
    ``calib_images``: INT8 calibration, and the parity images when no labelled ``data`` +
    ``dataset`` is given; ``engine``: build TensorRT engines when TensorRT is installed (else a
    note); ``shapes``: engine profile ``{"min"|"opt"|"max": "input:1x3xHxW"}`` (default from the
    model's test scale).  Returns the report dict also written to ``report.json``.
    """
    from ccnet.checkpoint import resolve_checkpoint

    from .deploy_report import write_reports

    inputs = check_plan(plan)
    checkpoint, _ = resolve_checkpoint(plan.model)
    os.makedirs(plan.out_dir, exist_ok=True)
    steps = StepRunner(plan.path(STATE_FILE))
    models = _make_onnx(plan, steps, {"model": plan.model, "checkpoint": _digest(checkpoint),
                                      "config": plan.config}, inputs.calib_images)
    notes: List[str] = []
    engines = build_engines(plan, steps, models, notes) if plan.engine else {}
    compared = [(p, models[p]) for p in plan.precisions] + [
        (p, path) for p, path in engines.items()]
    parity = _parity(plan, steps, checkpoint, compared, notes, inputs)
    latency = _latency(plan, steps, compared, sample_images(inputs))
    report = {"model": plan.model, "checkpoint": os.path.abspath(checkpoint),
              "out_dir": os.path.abspath(plan.out_dir), "precisions": list(plan.precisions),
              "files": _files(plan, models, engines), "steps": steps.records(),
              "parity": parity, "latency": latency, "notes": notes}
    write_reports(plan.out_dir, report)
    return report


def _make_onnx(plan: DeployPlan, steps: StepRunner, source: dict,
               images: Sequence[str]) -> Dict[str, str]:
    """FP32 ONNX always; FP16 / INT8 as asked (``images``: the calibration images).  Returns
    precision -> path."""
    from calib.quantize import quantize
    from export.graph import DEFAULT_OPSET
    from export.to_fp16 import convert_to_fp16
    from export.to_onnx import export_onnx

    log = logging.getLogger(__name__ + ".export").info
    photo = images[0] if images else None
    models = {"fp32": plan.path("model.onnx")}
    steps.run("export fp32 onnx", dict(source, opset=DEFAULT_OPSET), [models["fp32"]],
              lambda: _summary(export_onnx(plan.model, models["fp32"], config=plan.config,
                                           verify_image=photo, log=log)))
    fp32 = {"onnx": _digest(models["fp32"])}
    if "fp16" in plan.precisions:
        models["fp16"] = plan.path("model_fp16.onnx")
        # The probe photo decides which layers overflow FP16 and stay FP32.
        probe = dict(fp32, photo=_digest(photo) if photo else None)
        steps.run("fp16 onnx", probe, [models["fp16"]], lambda: _summary(convert_to_fp16(
            models["fp32"], models["fp16"], verify_image=photo, log=log)))
    if "int8" in plan.precisions:
        models["int8"] = plan.path("model_int8.onnx")
        cache = plan.path("calibration_cache.json")
        options = {k: v for k, v in (("method", plan.calib_method),
                                     ("num_images", plan.calib_num_images)) if v}
        inputs = dict(fp32, images=files_digest(images, plan.calib_images), **options)
        steps.run("int8 onnx (calibration)", inputs, [models["int8"], cache],
                  lambda: _summary(quantize(models["fp32"], models["int8"], plan.calib_images,
                                            cache=cache, progress=plan.progress, **options)))
    return models


def _summary(report) -> dict:
    """The JSON-able, path-free part of a step function's report."""
    return {k: v for k, v in report.items()
            if isinstance(v, (int, float, str, bool, list, dict)) and k not in ("out", "cache")}


def default_profile(meta) -> Dict[str, str]:
    """Engine shapes from the model's test scale: slide models take their crop; whole models a
    landscape range (short side up to the test scale's, long side up to its long side)."""
    if meta.mode == "slide" and meta.crop_size:
        h, w = meta.crop_size
        return {k: f"input:1x3x{h}x{w}" for k in ("min", "opt", "max")}
    long_side, short_side = max(meta.test_scale), min(meta.test_scale)
    opt_w = min(long_side, (short_side * 4 // 3 + 7) // 8 * 8)
    return {"min": f"input:1x3x{short_side // 2}x{short_side // 2}",
            "opt": f"input:1x3x{short_side}x{opt_w}",
            "max": f"input:1x3x{short_side}x{long_side}"}


def build_engines(plan: DeployPlan, steps: StepRunner, models: Dict[str, str],
                  notes: List[str]) -> Dict[str, str]:
    """TensorRT engines for the asked precisions, or a note saying why there are none."""
    from export.metadata import read_metadata

    from .trt_build import build_engine
    from .trt_common import import_tensorrt

    try:
        trt = import_tensorrt()
    except CCNetError as e:
        notes.append(f"TensorRT engines not built: {e}. Build them on the target with `ccnet "
                     f"build --model {models['fp16' if 'fp16' in models else 'fp32']} "
                     "--saveEngine model.engine` (shapes: see ccnet build --help).")
        return {}
    shapes = dict(default_profile(read_metadata(models["fp32"])),
                  **{k: v for k, v in plan.shapes.items() if v})
    engines = {}
    for precision in plan.precisions:
        onnx_path, engine = models[precision], plan.path(f"model_{precision}.engine")
        inputs = {"onnx": _digest(onnx_path), "shapes": shapes, "plugins": plan.plugins,
                  "tensorrt": trt.__version__}
        steps.run(f"{precision} engine", inputs, [engine, engine + ".json"],
                  lambda: _engine_summary(build_engine(
                      onnx_path, engine, min_shapes=shapes["min"], opt_shapes=shapes["opt"],
                      max_shapes=shapes["max"], plugins=plan.plugins,
                      log=logging.getLogger(__name__ + ".build").info)))
        engines[f"{precision}-engine"] = engine
    return engines


def _engine_summary(info) -> dict:
    return {"tensorrt_version": info.tensorrt_version, "precision": info.precision,
            "cca": info.cca}


def _files(plan: DeployPlan, models: Dict[str, str], engines: Dict[str, str]) -> List[dict]:
    paths = list(models.values()) + [p for e in engines.values() for p in (e, e + ".json")]
    if "int8" in models:
        paths.append(plan.path("calibration_cache.json"))
    return [{"file": os.path.relpath(p, plan.out_dir), "bytes": os.path.getsize(p),
             "sha256": _digest(p)} for p in paths if os.path.isfile(p)]


# ----------------------------------------------------------------------------- parity
def _parity(plan: DeployPlan, steps: StepRunner, checkpoint: str,
            compared: List[Tuple[str, str]], notes: List[str],
            sources: DeployInputs) -> Optional[dict]:
    """Labelled parity (mIoU, ΔmIoU, agreement) on --data, else agreement with PyTorch on the
    calibration images, else a note."""
    inputs = {"checkpoint": _digest(checkpoint), "config": plan.config,
              "models": {name: _digest(path) for name, path in compared},
              "max_images": plan.max_images}
    if sources.dataset is not None:
        from .parity import parity_report

        data = sources.dataset.head(plan.max_images)
        inputs["data"] = files_digest([p for pair in data.pairs for p in pair], plan.data)
        by_kind = {name: path for name, path in compared if name in ("fp32", "fp16", "int8")}
        return steps.run("parity (labelled data)", inputs, [], lambda: parity_report(
            plan.model, plan.data, plan.dataset, onnx=by_kind.get("fp32"),
            onnx_fp16=by_kind.get("fp16"), onnx_int8=by_kind.get("int8"),
            engines=[p for n, p in compared if n.endswith("-engine")],
            max_images=plan.max_images, progress=plan.progress, config=plan.config))
    if sources.calib_images:
        images = sources.calib_images[:plan.max_images or DEFAULT_AGREEMENT_IMAGES]
        inputs["images"] = files_digest(images, plan.calib_images)
        notes.append("Parity was measured on the calibration images without labels: agreement "
                     "with PyTorch's labels, not mIoU against ground truth (and INT8 was "
                     "calibrated on these very images). Give --data/--dataset for mIoU deltas.")
        return steps.run("parity (agreement on calibration images)", inputs, [],
                         lambda: agreement_report(plan.model, images, compared, plan.config,
                                                  plan.progress))
    notes.append("No parity check: give --data DIR --dataset KIND (labelled) or "
                 "--calib-images DIR.")
    return None


class _ReferenceLabelled:
    """(image path, the reference model's labels) pairs: PyTorch's output as the 'ground
    truth' of unlabelled images, so the one evaluation loop scores agreement."""

    def __init__(self, images: Sequence[str], reference):
        self.images, self.reference = list(images), reference

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):
        from ccnet.images import load_image

        for path in self.images:
            yield path, self.reference.segment(load_image(path))


def agreement_report(model: str, images: Sequence[str], compared: Sequence[Tuple[str, str]],
                     config=None, progress: bool = True) -> dict:
    """Per exported model: pixel agreement with PyTorch FP32 and the mIoU of its labels against
    PyTorch's (percent), on unlabelled ``images``."""
    from ccnet.evaluation import evaluate

    from .segmenter import Segmenter

    opened = []
    try:
        reference = Segmenter(model, backend="pytorch", config=config)
        opened.append(reference)
        runs = {}
        for name, path in compared:
            runs[name] = Segmenter(path)
            opened.append(runs[name])
        meta = reference.meta
        results = evaluate({n: s.segment for n, s in runs.items()},
                           _ReferenceLabelled(images, reference), meta.num_classes,
                           meta.ignore_index, progress=progress)
    finally:
        for segmenter in opened:
            segmenter.close()
    return {"kind": "agreement", "num_images": len(images), "reference": "pytorch-fp32",
            "backends": [{"name": runs[n].backend, "model": path, "precision": n,
                          "pixel_agreement": 100.0 * results[n]["aacc"],
                          "miou_vs_pytorch": 100.0 * results[n]["miou"]}
                         for n, path in compared]}


def sample_images(sources: DeployInputs) -> List[str]:
    """The first few image paths to time the models on: the calibration images, else the
    dataset's."""
    if sources.calib_images:
        return sources.calib_images[:LATENCY_IMAGES]
    if sources.dataset is not None:
        return [image for image, _ in sources.dataset.pairs[:LATENCY_IMAGES]]
    return []


def _latency(plan: DeployPlan, steps: StepRunner, compared: List[Tuple[str, str]],
             paths: Sequence[str]) -> List[dict]:
    """Mean wall time per image (pre/post-processing included) of each compared model on the
    images at ``paths``, on this machine."""
    from ccnet.images import load_image

    from .machine import Timed
    from .segmenter import Segmenter

    if not paths:
        return []
    inputs = {"models": {n: _digest(p) for n, p in compared},
              "images": files_digest(paths, os.path.commonpath(paths))}

    def measure() -> List[dict]:
        images, rows = [load_image(p) for p in paths], []
        for name, path in compared:
            try:
                with Segmenter(path) as segmenter:
                    segmenter.segment(images[0])  # warm-up: session / engine set-up
                    timed = Timed(segmenter.segment)
                    for image in images:
                        timed(image)
                    rows.append({"model": name, "backend": segmenter.backend,
                                 "ms_per_image": round(timed.ms_per_call, 1),
                                 "images": len(images)})
            except CCNetError as e:
                rows.append({"model": name, "error": first_line(e)})
        return rows

    return steps.run("latency", inputs, [], measure)

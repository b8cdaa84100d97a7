"""``run_batch``: segment a folder, glob, path list or video archive on Ray Data, locally or on a
cluster, resumably.

The job lists the source (``batch_sources``), opens the model once in a Ray task with a worker's
resources to read its metadata (and to fail early with a one-line error), then streams

    work items ─▶ decode + resize (tasks) ─▶ SegmentWorker (actor pool) ─▶ write (tasks) ─▶ driver

through Ray Data (``batch_stages``).  Each actor opens the model once; an actor asks Ray for
``gpus_per_worker`` GPUs (Ray then sets its CUDA_VISIBLE_DEVICES, so "cuda:0" in the actor is the
GPU it was given) and ``cpus_per_worker`` CPUs (also its ONNX Runtime / PyTorch thread count).
The decode and write tasks reserve no CPU, so they always run beside the actors; at most
``2 × workers`` of each run at once, and Ray Data's streaming executor holds back the upstream
stages when blocks pile up, so memory follows the pipeline's depth, not the dataset's size
(the driver keeps only the list of input paths and the counters).

Outputs are written atomically (``batch_outputs``): rerunning the job skips every image whose
files are complete; an interrupted job (SIGINT, SIGTERM, a killed worker) resumes there.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np

from ccnet.errors import CCNetError, first_line
from ccnet.files import require_file, write_json
from ccnet.meta import ModelMeta

from .batch_outputs import OutputLayout, remove_stale_temp_files
from .batch_sources import SourcePlan, expand_source
from .batch_stages import (FAILED, SKIPPED, STAGES, WRITTEN, SegmentWorker, decode_items,
                           resize_rows, write_rows)
from .segmenter import runner_kind

MAX_ITEMS_PER_BLOCK = 1024
# Ray Data packs the rows a stage emits into blocks of up to this many bytes (128 MiB by
# default) before passing them on; one byte means every image row is its own block, so each
# image moves to the next stage as soon as it is ready and a stage never holds a pile of them.
ONE_IMAGE_PER_BLOCK = 1


@dataclass
class BatchSettings:
    """How a job runs.  ``workers``: actors (default: as many as the cluster's GPUs, or CPUs,
    allow); ``gpus_per_worker``: default 1 for TensorRT engines and CUDA devices, else 0 (may be
    fractional: 0.5 puts two actors on one GPU); ``batch_size``: images per actor call (the
    network still sees one image at a time, so results equal ``Segmenter.segment``)."""

    address: Optional[str] = None
    workers: Optional[int] = None
    gpus_per_worker: Optional[float] = None
    cpus_per_worker: float = 1.0
    batch_size: int = 8
    overlays: bool = False
    logits: bool = False
    backend: Optional[str] = None
    runner_options: dict = field(default_factory=dict)
    progress: bool = True
    ray_init_options: dict = field(default_factory=dict)  # for a Ray started here

    def check(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise CCNetError(f"workers must be >= 1, got {self.workers}")
        if self.batch_size < 1:
            raise CCNetError(f"batch size must be >= 1, got {self.batch_size}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise CCNetError(f"GPUs per worker must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_worker <= 0:
            raise CCNetError(f"CPUs per worker must be > 0, got {self.cpus_per_worker}")


# ----------------------------------------------------------------------------- Ray
@contextlib.contextmanager
def ray_session(address: Optional[str], init_options: Optional[dict] = None) -> Iterator[None]:
    """Use the Ray this process is already connected to, else start a local one (``address``
    None) or join a cluster ("auto", "ray://head:10001"); disconnect only what was opened."""
    try:
        import ray
    except ImportError:
        raise CCNetError("ccnet batch needs Ray Data: pip install 'ccnet-deploy[batch]'") from None
    if ray.is_initialized():
        yield
        return
    options = dict(init_options or {})
    if address is None:
        options.setdefault("include_dashboard", False)
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise CCNetError(f"cannot connect to the Ray cluster at {address}: {first_line(e)} "
                         "(start one with `ray start --head`, or leave out --address to run "
                         "on this machine)") from None
    try:
        yield
    finally:
        ray.shutdown()


def _unwrap(error: BaseException) -> BaseException:
    """The CCNetError inside a Ray task/actor error (Ray chains the remote exception as its
    ``cause``), or ``error`` itself."""
    from ray.exceptions import RayError

    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        if isinstance(current, CCNetError) and not isinstance(current, RayError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__
    return error


def _read_meta(model: str, backend: Optional[str], runner_options: dict) -> tuple:
    """Runs as a Ray task: the model's metadata and backend name, as a worker would see them."""
    from .segmenter import Segmenter

    with Segmenter(model, backend=backend, **runner_options) as segmenter:
        return segmenter.meta, segmenter.backend


def probe_model(model: str, settings: BatchSettings, cpus: float, gpus: float) -> tuple:
    """(ModelMeta, backend name) of ``model``, opened once with a worker's resources."""
    import ray

    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_read_meta)
    try:
        return ray.get(task.remote(model, settings.backend, settings.runner_options))
    except Exception as e:
        cause = _unwrap(e)
        if isinstance(cause, CCNetError):
            raise CCNetError(str(cause)) from None
        raise CCNetError(f"cannot open {model} in a Ray worker: {first_line(cause)}") from None


# ----------------------------------------------------------------------------- resources
def _model_kind(model: str, backend: Optional[str]) -> str:
    kind = runner_kind(model, backend)
    if kind in ("ort", "trt"):
        require_file(model, "model")
    return kind


def plan_resources(kind: str, settings: BatchSettings) -> Dict[str, float]:
    """GPUs and CPUs per worker and the number of workers for a model of runner ``kind``
    (``_model_kind``), checked against the cluster; fills in the runner options the workers
    need (device, threads)."""
    import ray

    options = settings.runner_options
    device = str(options.get("device") or "")
    gpus = settings.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if kind == "trt" or device.startswith("cuda") or device == "tensorrt" else 0.0
    if kind == "trt" and gpus == 0:
        raise CCNetError("TensorRT engines run on a GPU: give --gpus-per-worker > 0")
    if gpus == 0 and kind == "ort" and not device:
        options["device"] = "cpu"  # never a GPU Ray did not hand out
    if gpus > 0 and kind == "torch" and not device:
        options["device"] = "cuda"
    threads = max(1, int(settings.cpus_per_worker))
    if kind == "ort":
        options.setdefault("threads", threads)
    total = ray.cluster_resources()
    have_gpus, have_cpus = total.get("GPU", 0.0), total.get("CPU", 0.0)
    if gpus > have_gpus:
        raise CCNetError(f"each worker needs {gpus:g} GPU(s) but the Ray cluster has "
                         f"{have_gpus:g}: join a GPU cluster with --address, or run an ONNX "
                         "model on CPU (--gpus-per-worker 0)")
    if settings.cpus_per_worker > have_cpus:
        raise CCNetError(f"each worker needs {settings.cpus_per_worker:g} CPU(s) but the Ray "
                         f"cluster has {have_cpus:g}: lower --cpus-per-worker")
    workers = settings.workers or max(1, int(have_gpus // gpus if gpus
                                             else have_cpus // settings.cpus_per_worker))
    return {"workers": workers, "gpus": gpus, "cpus": settings.cpus_per_worker,
            "threads": threads, "cluster_gpus": have_gpus, "cluster_cpus": have_cpus}


# ----------------------------------------------------------------------------- pipeline
def _item_blocks(plan: SourcePlan, workers: int, batch_size: int) -> list:
    """The work items as Arrow tables, one per Ray Data block: enough blocks for every decode
    task to have work, few enough that a million files are not a million objects."""
    import pyarrow as pa

    items = plan.items
    per_block = min(MAX_ITEMS_PER_BLOCK, max(batch_size, math.ceil(len(items) / (8 * workers))))
    blocks = []
    for start in range(0, len(items), per_block):
        chunk = items[start:start + per_block]
        blocks.append(pa.table({"kind": [i.kind for i in chunk], "path": [i.path for i in chunk],
                                "key": [i.key for i in chunk]}))
    return blocks


def build_pipeline(model: str, plan: SourcePlan, layout: OutputLayout, meta: ModelMeta,
                   settings: BatchSettings, resources: Dict[str, float]):
    """The lazy Ray Data dataset of report rows (nothing runs until it is iterated)."""
    import ray.data
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    workers = int(resources["workers"])
    blocks = _item_blocks(plan, workers, settings.batch_size)
    light = {"num_cpus": 0, "batch_format": "numpy"}
    gpu_request = {"num_gpus": resources["gpus"]} if resources["gpus"] > 0 else {}
    ds = ray.data.from_arrow(blocks)
    ds = ds.map_batches(decode_items, batch_size=settings.batch_size, **light,
                        compute=TaskPoolStrategy(size=min(2 * workers, len(blocks))),
                        fn_kwargs={"layout": layout, "num_classes": meta.num_classes,
                                   "rows_per_batch": settings.batch_size})
    ds = ds.map_batches(resize_rows, batch_size=None, **light,
                        compute=TaskPoolStrategy(size=min(2 * workers, len(blocks))),
                        fn_kwargs={"test_scale": meta.test_scale,
                                   "keep_image": settings.overlays})
    ds = ds.map_batches(SegmentWorker, batch_size=settings.batch_size, batch_format="numpy",
                        compute=ActorPoolStrategy(size=workers), num_cpus=resources["cpus"],
                        **gpu_request,
                        fn_constructor_kwargs={
                            "model": model, "meta": meta, "backend": settings.backend,
                            "runner_options": settings.runner_options,
                            "keep_logits": settings.logits,
                            "torch_threads": int(resources["threads"])})
    # An image is one row; a video's frame count is unknown until it is decoded.
    write_tasks = 2 * workers if plan.num_videos else min(2 * workers, len(plan.items))
    return ds.map_batches(write_rows, batch_size=None, **light,
                          compute=TaskPoolStrategy(size=write_tasks),
                          fn_kwargs={"layout": layout, "palette": meta.palette})


# ----------------------------------------------------------------------------- results
@dataclass
class _Tally:
    """Counts, failures and summed stage times of the rows the pipeline reports."""

    counts: Counter = field(default_factory=Counter)
    failures: List[dict] = field(default_factory=list)
    stage_ms: Dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    per_worker: Counter = field(default_factory=Counter)

    def add(self, row: dict) -> None:
        self.counts[row["status"]] += 1
        if row["status"] == FAILED:
            self.failures.append({"input": row["source"], "output": row["key"],
                                  "error": row["error"]})
        elif row["status"] == WRITTEN:
            self.per_worker[row["worker"]] += 1
            for stage in STAGES:
                self.stage_ms[stage] += float(row[f"{stage}_ms"])


def _rows(batch: dict) -> Iterator[dict]:
    names = list(batch)
    for values in zip(*(batch[n] for n in names)):
        yield {n: (v.item() if isinstance(v, np.generic) else v) for n, v in zip(names, values)}


def _estimated_total(plan: SourcePlan) -> int:
    """Images plus the frames the videos' headers announce (for the progress bar only)."""
    import cv2

    total = plan.num_images
    for item in plan.items:
        if item.kind == "video":
            capture = cv2.VideoCapture(item.path)
            total += max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
            capture.release()
    return total


@contextlib.contextmanager
def data_context(progress: bool) -> Iterator[None]:
    """Ray Data settings for this job (restored afterwards: the context is per process)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.target_max_block_size
    context.enable_progress_bars = progress
    context.target_max_block_size = ONE_IMAGE_PER_BLOCK
    try:
        yield
    finally:
        context.enable_progress_bars, context.target_max_block_size = saved


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (as SIGINT does) while the job runs, so a stopped job
    still shuts its workers down and writes its summary (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _consume(dataset, tally: _Tally, total: Optional[int], progress: bool,
             on_result: Optional[Callable[[dict], None]]) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="img", desc="ccnet batch")
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        for batch in batches:
            for row in _rows(batch):
                tally.add(row)
                if on_result is not None:
                    on_result(row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(written=tally.counts[WRITTEN],
                                    skipped=tally.counts[SKIPPED], failed=tally.counts[FAILED],
                                    refresh=False)
    except Exception as e:
        cause = _unwrap(e)
        if isinstance(cause, CCNetError):
            raise CCNetError(str(cause)) from None
        raise
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        if bar is not None:
            bar.close()


def _summary(model: str, backend: str, plan: SourcePlan, layout: OutputLayout,
             resources: dict, tally: _Tally, seconds: float, interrupted: bool) -> dict:
    import ray

    written = tally.counts[WRITTEN]
    return {
        "model": model, "backend": backend, "source": plan.source, "output": layout.root,
        "inputs": {"images": plan.num_images, "videos": plan.num_videos},
        "results": sum(tally.counts.values()), "written": written,
        "skipped": tally.counts[SKIPPED], "failed": tally.counts[FAILED],
        "interrupted": interrupted, "seconds": seconds,
        "images_per_s": written / seconds if seconds > 0 else 0.0,
        "ms_per_image": {s: (ms / written if written else 0.0)
                         for s, ms in tally.stage_ms.items()},
        "images_per_worker": dict(tally.per_worker),
        "workers": int(resources["workers"]), "gpus_per_worker": resources["gpus"],
        "cpus_per_worker": resources["cpus"],
        "cluster": {"cpus": resources["cluster_cpus"], "gpus": resources["cluster_gpus"],
                    "ray": ray.__version__},
        "overlays": layout.overlays, "logits": layout.logits,
        "failures": tally.failures,
    }


def _prepare_output(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise CCNetError(f"cannot create output folder {folder}: {e.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise CCNetError(f"output folder {folder} is not writable")
    remove_stale_temp_files(folder)


def run_batch(model: str, source: str, output: str, settings: Optional[BatchSettings] = None,
              on_result: Optional[Callable[[dict], None]] = None) -> dict:
    """Segment every image and video frame of ``source`` into ``output`` (layout:
    ``runtime.batch_outputs``) and return the summary, also written to
    ``output/_summary.json``.  ``on_result(row)`` sees each image's report as it arrives.

    Images that fail are listed in the summary ("failed", "failures") and the job goes on; an
    interrupt (KeyboardInterrupt, SIGTERM) writes the summary so far and re-raises.
    """
    settings = settings or BatchSettings()
    settings.check()
    settings = dataclasses.replace(settings, runner_options=dict(settings.runner_options))
    kind = _model_kind(model, settings.backend)  # a missing model fails before Ray starts
    plan = expand_source(source, exclude=output)
    if os.path.isfile(output):
        raise CCNetError(f"output {output} is a file: give a folder")
    layout = OutputLayout(os.path.abspath(output), settings.overlays, settings.logits)
    total = _estimated_total(plan) if settings.progress else None
    # The SIGTERM handler goes in after ray.init, which installs Ray's own (a crash report).
    with ray_session(settings.address, settings.ray_init_options), sigterm_as_interrupt(), \
            data_context(settings.progress):
        resources = plan_resources(kind, settings)
        meta, backend = probe_model(model, settings, resources["cpus"], resources["gpus"])
        _prepare_output(layout.root)
        dataset = build_pipeline(model, plan, layout, meta, settings, resources)
        tally, start = _Tally(), time.perf_counter()
        try:
            _consume(dataset, tally, total, settings.progress, on_result)
        except BaseException as e:  # the summary of what is done, then the error as it was
            summary = _summary(model, backend, plan, layout, resources, tally,
                               time.perf_counter() - start, interrupted=True)
            summary["stopped_by"] = first_line(e)
            write_json(layout.summary_path, summary)
            raise
        summary = _summary(model, backend, plan, layout, resources, tally,
                           time.perf_counter() - start, interrupted=False)
    write_json(layout.summary_path, summary)
    return summary

"""ccnet batch: segment image folders and video archives on Ray Data, locally or on a cluster."""
from __future__ import annotations

import argparse
import sys

from . import args as common
from .app import entry_point

DESCRIPTION = ("Segment a folder, glob, path list or videos on Ray Data (this machine, or a "
               "cluster with --address): one label PNG per image or frame, resumable.")
# Exit statuses above 125 mean "command not found/executable" or "killed by a signal".
MAX_EXIT_STATUS = 125
SHOWN_FAILURES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser)
    common.add_config(parser)
    parser.add_argument("--input", required=True, metavar="SRC",
                        help="folder (recursive: images and videos), glob ('a/**/*.jpg', quoted), "
                             "text file listing paths, or an image or video file; each video "
                             "expands to frames <video>/000123")
    parser.add_argument("--output", required=True, metavar="OUT",
                        help="folder: OUT/<input path without extension>.png label maps and "
                             "OUT/_summary.json; rerunning skips what is already there")
    parser.add_argument("--address", default=None, metavar="ADDR",
                        help="Ray cluster to join: auto (the cluster this node belongs to) or "
                             "ray://HEAD:10001; default: start Ray on this machine")
    parser.add_argument("--workers", type=common.positive_int, default=None, metavar="N",
                        help="model replicas (Ray actors); default: as many as the cluster's "
                             "GPUs (or CPUs, for CPU models) allow")
    parser.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                        help="GPUs each worker asks Ray for (0.5: two workers share a GPU); "
                             "default 1 for .engine files and --device cuda/tensorrt, else 0")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C",
                        help="CPUs each worker asks Ray for, also its inference threads "
                             "(default 1)")
    parser.add_argument("--batch-size", type=common.positive_int, default=8, metavar="B",
                        help="images per worker call (default 8)")
    parser.add_argument("--overlays", action="store_true",
                        help="also write colour overlays: OUT/_overlays/<name>.jpg")
    parser.add_argument("--logits", action="store_true",
                        help="also write C×H×W float32 logits at the image size: "
                             "OUT/_logits/<name>.npy (large)")
    parser.add_argument("--backend", choices=["onnxruntime", "tensorrt", "pytorch"],
                        help="default: by the model's file type")
    common.add_device(parser)
    parser.add_argument("--plugins", help="libccnet_plugins.so for TensorRT engines (a path "
                                          "every node has)")
    common.add_progress(parser)


def _report(summary: dict) -> None:
    ms = summary["ms_per_image"]
    print(f"{summary['written']} written, {summary['skipped']} already done, "
          f"{summary['failed']} failed in {summary['seconds']:.1f} s "
          f"({summary['images_per_s']:.2f} images/s on {summary['workers']} "
          f"{summary['backend']} worker(s); per image: "
          + ", ".join(f"{stage} {value:.1f} ms" for stage, value in ms.items()) + ")")
    for failure in summary["failures"][:SHOWN_FAILURES]:
        print(f"failed: {failure['input']}: {failure['error']}", file=sys.stderr)
    if summary["failed"] > SHOWN_FAILURES:
        print(f"... {summary['failed'] - SHOWN_FAILURES} more failures", file=sys.stderr)
    print(f"summary: {summary['output']}/_summary.json")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 when every image is done, else the number of failed images (at most
    125); a bad model/input/cluster is `error: ...` with status 2 before any work."""
    from runtime.batch import BatchSettings, run_batch

    settings = BatchSettings(
        address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker, batch_size=args.batch_size,
        overlays=args.overlays, logits=args.logits, backend=args.backend,
        runner_options=common.runner_options(args), progress=not args.no_progress)
    summary = run_batch(args.model, args.input, args.output, settings)
    _report(summary)
    return min(summary["failed"], MAX_EXIT_STATUS)


main = entry_point("ccnet-batch", DESCRIPTION, add_arguments, run)

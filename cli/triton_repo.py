"""ccnet triton-repo: write a Triton model repository (NGC server containers) for a model."""
from __future__ import annotations

import argparse

from . import args as common
from .app import entry_point
from .serve import add_model_flags

DESCRIPTION = ("Write a Triton model repository for NVIDIA's server containers: tensorrt_plan "
               "(.engine) or onnxruntime_onnx (.onnx) plus a Python-backend pre/post-processing "
               "model that takes images and returns label maps, like ccnet serve.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser, help=".onnx (ccnet export) or .engine (ccnet build, with its .json "
                                  "side file)", aliases=())
    parser.add_argument("--repo", required=True,
                        help="repository folder (created if missing; existing models are kept)")
    add_model_flags(parser)  # --name (the network is <name>_network), batch, instances
    parser.add_argument("--plugin", help="libccnet_plugins.so to copy beside the engine (the "
                                         "server loads it with --backend-config=tensorrt,"
                                         "plugins=...)")


def run(args: argparse.Namespace) -> int:
    from runtime.triton_repo import write_triton_repo

    report = write_triton_repo(args.model, args.repo, args.name, args.max_batch_size,
                               args.instances, args.plugin, args.max_image_side)
    print(f"wrote Triton repository {report.repo}: {', '.join(report.models)} "
          f"({report.platform}, max batch size {report.max_batch_size}, network "
          f"{report.network_batch})")
    for note in report.notes:
        print(f"note: {note}")
    print(f"how to run it: {report.repo}/{report.models[0]}/README.md")
    return 0


main = entry_point("ccnet-triton-repo", DESCRIPTION, add_arguments, run)

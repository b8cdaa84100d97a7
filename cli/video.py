"""ccnet video: segment a video file, camera or stream into an overlay video and/or label PNGs."""
from __future__ import annotations

import argparse

from ccnet.errors import CCNetError

from . import args as common
from .app import entry_point

DESCRIPTION = ("Segment a video, camera or stream: overlay video in the model's palette and/or "
               "label PNGs.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser, help=".onnx, .engine or .pth file, or a zoo name")
    parser.add_argument("--input", required=True, help="video file, camera index (0) or stream URL")
    parser.add_argument("--output", help="overlay video to write (.mp4, mp4v codec)")
    parser.add_argument("--labels-dir", help="write one label PNG per frame (000000.png, ...)")
    parser.add_argument("--max-frames", type=int, help="stop after N frames")
    parser.add_argument("--show-fps", action="store_true", help="draw the running FPS on the video")
    parser.add_argument("--backend", choices=["onnxruntime", "tensorrt", "pytorch"],
                        help="default: by the model's file type")
    common.add_device(parser)
    parser.add_argument("--plugins", help="libccnet_plugins.so for TensorRT engines")
    parser.add_argument("--queue-size", type=int, default=4, help="frames buffered per stage")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    common.add_progress(parser)


def run(args: argparse.Namespace) -> int:
    from runtime.video_job import segment_video

    if args.max_frames is not None and args.max_frames < 1:
        raise CCNetError("--max-frames must be >= 1")
    summary = segment_video(args.model, args.input, args.output, args.labels_dir,
                            args.max_frames, args.show_fps, args.queue_size, args.alpha,
                            args.backend, progress=not args.no_progress,
                            **common.runner_options(args))
    ms = summary["ms_per_frame"]
    print(f"{summary['frames']} frames ({summary['skipped']} skipped) in "
          f"{summary['seconds']:.2f} s: {summary['fps']:.2f} FPS on {summary['backend']} "
          f"(per frame: decode {ms['decode']:.1f} ms, preprocess {ms['preprocess']:.1f} ms, "
          f"infer {ms['infer']:.1f} ms, postprocess {ms['postprocess']:.1f} ms)")
    for what, path in (("video", summary["output"]), ("labels", summary["labels_dir"])):
        if path:
            print(f"wrote {what}: {path}")
    return 0


main = entry_point("ccnet-video", DESCRIPTION, add_arguments, run)

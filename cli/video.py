"""ccnet video: segment a video file, camera or stream into an overlay video and/or label PNGs."""
from __future__ import annotations

import argparse
import logging

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
    parser.add_argument("--max-frames", type=common.positive_int, help="stop after N frames")
    parser.add_argument("--show-fps", action="store_true", help="draw the running FPS on the video")
    parser.add_argument("--backend", choices=["onnxruntime", "tensorrt", "pytorch"],
                        help="default: by the model's file type")
    common.add_device(parser)
    parser.add_argument("--plugins", help="libccnet_plugins.so for TensorRT engines")
    parser.add_argument("--queue-size", type=common.positive_int, default=4,
                        help="frames buffered per stage")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    parser.add_argument("--strict", action="store_true",
                        help="fail (writing nothing) when a frame cannot be decoded, instead of "
                             "counting it as corrupt with a warning")
    common.add_allow_nonfinite(parser)
    common.add_progress(parser)


def run(args: argparse.Namespace) -> int:
    from runtime.video_job import segment_video

    if not 0.0 <= args.alpha <= 1.0:
        raise CCNetError(f"--alpha must be in [0, 1], got {args.alpha}")
    options = common.runner_options(args)
    summary = segment_video(args.model, args.input, args.output, args.labels_dir,
                            args.max_frames, args.show_fps, args.queue_size, args.alpha,
                            args.backend, progress=not args.no_progress, strict=args.strict,
                            **options)
    ms = summary["ms_per_frame"]
    if summary["corrupt"]:
        logging.getLogger(__name__).warning(
            "%s of %s frames could not be decoded (corrupt or truncated video); their labels "
            "are missing", summary["corrupt"], summary["frame_count"])
    print(f"{summary['frames']} frames ({summary['skipped']} skipped, "
          f"{summary['corrupt']} corrupt) in "
          f"{summary['seconds']:.2f} s: {summary['fps']:.2f} FPS on {summary['backend']} "
          f"(per frame: decode {ms['decode']:.1f} ms, preprocess {ms['preprocess']:.1f} ms, "
          f"infer {ms['infer']:.1f} ms, postprocess {ms['postprocess']:.1f} ms)")
    for what, path in (("video", summary["output"]), ("labels", summary["labels_dir"])):
        if path:
            print(f"wrote {what}: {path}")
    return 0


main = entry_point("ccnet-video", DESCRIPTION, add_arguments, run)

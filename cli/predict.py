"""ccnet predict: segment an image or a folder of images into label-map PNGs and/or overlays."""
from __future__ import annotations

import argparse
import os
from typing import Optional

import numpy as np

from ccnet.errors import CCNetError
from ccnet.files import check_output_file, check_output_folder

from . import args as common
from .app import entry_point

DESCRIPTION = ("Segment an image or a folder of images with a CCNet (checkpoint, zoo name, .onnx "
               "or .engine) into label-map PNGs and/or colour overlays.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser)
    common.add_config(parser)
    common.add_device(parser)
    parser.add_argument("--input", "--image", dest="input", required=True,
                        help="an image (any format OpenCV reads) or a folder of images "
                             "(searched recursively)")
    parser.add_argument("--out",
                        help="label map PNG (class indices) for an image, or the folder of "
                             "label maps for a folder (sub-folders and names kept, .png)")
    parser.add_argument("--show-dir", metavar="DIR",
                        help="also write colour overlays into this folder")
    parser.add_argument("--overlay", action="store_true",
                        help="one image: write the overlay to --out instead of the label map")
    parser.add_argument("--save-logits", metavar="X.npy", default=None,
                        help="one image: also save the C×H×W float32 logits at the original "
                             "size (averaged probabilities with --tta)")
    common.add_tta(parser)
    common.add_allow_nonfinite(parser)
    common.add_progress(parser)


def _class_names(labels: np.ndarray, classes) -> str:
    present = np.unique(labels)
    names = ", ".join(classes[c] for c in present[:8])
    return names + (" ..." if len(present) > 8 else "")


def _check_single(args: argparse.Namespace) -> Optional[str]:
    """Output checks for one image, before the (slow) model load; returns the overlay path.
    Label maps are lossless PNGs only, overlays any image type OpenCV writes, and no output may
    overwrite the input or another output."""
    from ccnet.images import IMAGE_EXTS, load_image

    if not args.out and not args.show_dir:
        raise CCNetError("nothing to write: give --out FILE.png and/or --show-dir DIR")
    if args.out:
        check_output_file(args.out, IMAGE_EXTS if args.overlay else (".png",),
                          what="overlay" if args.overlay else "label map")
    if args.save_logits:
        check_output_file(args.save_logits, (".npy",), what="--save-logits")
    if args.show_dir:
        check_output_folder(args.show_dir, "--show-dir")
    overlay_path = None if not args.show_dir else os.path.join(
        args.show_dir, os.path.splitext(os.path.basename(args.input))[0] + ".png")
    paths = [os.path.abspath(p) for p in (args.input, args.out, args.save_logits, overlay_path)
             if p]
    if len(set(paths)) != len(paths):
        raise CCNetError("--input, --out, --save-logits and the --show-dir overlay must be "
                         "different files")
    load_image(args.input)
    return overlay_path


def run(args: argparse.Namespace) -> int:
    from runtime.predict import folder_jobs, predict_folder, predict_to_files
    from runtime.segmenter import Segmenter

    folder = os.path.isdir(args.input)
    if folder:
        for flag, value in (("--overlay", args.overlay), ("--save-logits", args.save_logits)):
            if value:
                raise CCNetError(f"{flag} is for one image: for a folder use --out DIR for label "
                                 "maps and --show-dir DIR for overlays")
        jobs = folder_jobs(args.input, args.out, args.show_dir)  # bad outputs fail before the load
    else:
        overlay_path = _check_single(args)
    with Segmenter(args.model, **common.runner_options(args)) as segmenter:
        if folder:
            summary = predict_folder(segmenter, args.input, args.out, args.show_dir, args.tta,
                                     progress=not args.no_progress, jobs=jobs)
            where = " and ".join(p for p in (args.out, args.show_dir) if p)
            print(f"wrote {summary['written']} image(s) to {where} in "
                  f"{summary['seconds']:.1f} s ({len(summary['skipped'])} unreadable skipped)")
            return 0
        prediction = predict_to_files(segmenter, args.input, args.out, overlay=args.overlay,
                                      logits_path=args.save_logits, tta=args.tta,
                                      overlay_path=overlay_path)
        names = _class_names(prediction.labels, segmenter.meta.classes)
    written = ", ".join(p for p in (args.out, overlay_path, args.save_logits) if p)
    print(f"wrote {written} ({prediction.labels.shape[1]}x{prediction.labels.shape[0]}, "
          f"classes: {names})")
    return 0


main = entry_point("ccnet-predict", DESCRIPTION, add_arguments, run)

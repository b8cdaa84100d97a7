"""ccnet predict: segment one image into a label-map PNG (or a colour overlay)."""
from __future__ import annotations

import argparse

import numpy as np

from ccnet.files import check_output_file

from . import args as common
from .app import entry_point

DESCRIPTION = "Segment one image with a CCNet (checkpoint, zoo name, .onnx or .engine)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser)
    common.add_config(parser)
    common.add_device(parser)
    parser.add_argument("--input", "--image", dest="input", required=True,
                        help="input image (any format OpenCV reads)")
    parser.add_argument("--out", required=True,
                        help="output PNG: the label map (class indices) or, with --overlay, the "
                             "colour overlay")
    parser.add_argument("--overlay", action="store_true",
                        help="write the palette overlay on the image instead of the label map")
    parser.add_argument("--save-logits", metavar="X.npy", default=None,
                        help="also save the C×H×W float32 logits at the original size "
                             "(averaged probabilities with --tta)")
    parser.add_argument("--tta", action="store_true",
                        help="multi-scale + flip test-time augmentation (mmseg 0.x rule)")


def run(args: argparse.Namespace) -> int:
    from ccnet.images import load_image
    from runtime.predict import predict_to_files
    from runtime.segmenter import Segmenter

    if not args.overlay:
        check_output_file(args.out, (".png",), what="label map")
    else:
        check_output_file(args.out, what="overlay")
    if args.save_logits:
        check_output_file(args.save_logits, (".npy",), what="--save-logits")
    load_image(args.input)  # fail on bad input before the (slow) model load
    with Segmenter(args.model, **common.runner_options(args)) as segmenter:
        prediction = predict_to_files(segmenter, args.input, args.out, overlay=args.overlay,
                                      logits_path=args.save_logits, tta=args.tta)
        classes = np.unique(prediction.labels)
        names = ", ".join(segmenter.meta.classes[c] for c in classes[:8])
    print(f"wrote {args.out} ({prediction.labels.shape[1]}x{prediction.labels.shape[0]}, "
          f"classes: {names}{' ...' if len(classes) > 8 else ''})")
    return 0


main = entry_point("ccnet-predict", DESCRIPTION, add_arguments, run)

"""Command-line tools of the PyTorch package: ``ccnet-predict`` and ``ccnet-eval``.

Thin shells over importable functions: :func:`predict_to_files` and :func:`evaluate` (the eval
loop, reusable with any ``segment_fn`` such as an ONNX Runtime or TensorRT segmenter).
``python -m ccnet.cli {predict,eval} ...`` runs the same entry points.
"""
from __future__ import annotations

import argparse
import json
import os
import contextlib
import sys
from typing import Callable, Iterable, Optional, Sequence, Tuple

import numpy as np

from .errors import CCNetError, cli_main
from .files import atomic_output
from .metrics import IoUAccumulator, format_table, result_to_json

SegmentFn = Callable[[np.ndarray], object]


# ----------------------------------------------------------------------------- library functions
def evaluate(segment_fn: SegmentFn, dataset: Iterable[Tuple[str, np.ndarray]], num_classes: int,
             class_names: Optional[Sequence[str]] = None, progress: bool = True,
             ignore_index: int = 255) -> dict:
    """Run ``segment_fn`` over a dataset and accumulate mmseg's IoUMetric.

    ``segment_fn(image_bgr)`` returns an H×W label map at the original size (or an object with
    ``.labels``, e.g. a Prediction); ``dataset`` yields (image path, label array) pairs with
    ignore = ``ignore_index`` (a :class:`ccnet.datasets.SegDataset`).  Returns
    :meth:`IoUAccumulator.compute`'s dict plus ``class_names``.
    """
    from .processing import load_image

    accumulator = IoUAccumulator(num_classes, ignore_index)
    total = len(dataset) if hasattr(dataset, "__len__") else None
    items = dataset
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(dataset, total=total, desc="eval", unit="img", file=sys.stderr)
        items = bar
    try:
        for image_path, label in items:
            output = segment_fn(load_image(image_path))
            pred = np.asarray(getattr(output, "labels", output))
            if pred.shape != label.shape:
                raise CCNetError(f"prediction for {image_path} is {pred.shape[:2]} but its label "
                                 f"is {label.shape[:2]}: the label must match the image size")
            accumulator.update(pred, label)
            if bar is not None:
                bar.set_postfix(mIoU=f"{accumulator.compute()['miou'] * 100:.2f}")
    finally:
        if bar is not None:
            bar.close()
    result = accumulator.compute()
    result["class_names"] = list(class_names) if class_names is not None else None
    return result


def write_outputs(outputs: Sequence[Tuple[str, Callable[[str], None]]]) -> None:
    """Write every (path, writer(tmp_path)) to a temp file first and move them into place only
    when all succeeded, so a failure leaves no output file (neither partial nor half the set)."""
    with contextlib.ExitStack() as stack:
        for path, writer in outputs:
            writer(stack.enter_context(atomic_output(path)))


def label_image(labels: np.ndarray) -> np.ndarray:
    """Label map as an integer image: uint8 class indices (uint16 beyond 256 classes)."""
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    return labels.astype(dtype)


def _imwrite(image: np.ndarray) -> Callable[[str], None]:
    def write(path: str) -> None:
        import cv2

        if not cv2.imwrite(path, image):
            raise CCNetError(f"cannot write an image with extension "
                             f"{os.path.splitext(path)[1]!r}: use .png")
    return write


def _textsave(text: str) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "w") as f:
            f.write(text)
    return write


def _npsave(array: np.ndarray) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "wb") as f:
            np.save(f, array)
    return write


def predict_to_files(model, image_path: str, out_path: str, overlay: bool = False,
                     logits_path: Optional[str] = None, tta: bool = False):
    """Segment ``image_path`` and write the label map PNG (or the colour overlay) atomically;
    optionally the C×H×W float32 logits as .npy.  Returns the Prediction."""
    from . import processing
    from .inference import predict

    image = processing.load_image(image_path)
    prediction = predict(model, image, tta=tta)
    if overlay:
        picture = processing.overlay(image, prediction.labels, model.meta.palette)
    else:
        picture = label_image(prediction.labels)
    outputs = [(out_path, _imwrite(picture))]
    if logits_path:
        outputs.append((logits_path, _npsave(prediction.logits.astype(np.float32))))
    write_outputs(outputs)
    return prediction


def _load(ckpt: str, config: Optional[str], device: str):
    import torch

    from .checkpoint import load_model

    if device != "cpu" and not device.startswith("cuda"):
        raise CCNetError(f"unknown device {device!r}: use cpu or cuda[:N]")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CCNetError(f"device {device!r} requested but CUDA is not available: use --device cpu")
    return load_model(ckpt, config=config, device=device)


# ----------------------------------------------------------------------------- CLIs
DEPLOYED_MODEL_EXTS = (".onnx", ".engine", ".plan", ".trt")


def _predictor(ckpt: str, config: Optional[str], device: str):
    """(predict(image, tta) -> Prediction, ModelMeta): PyTorch for checkpoints and zoo names,
    the runtime's Segmenter (ONNX Runtime / TensorRT) for exported .onnx and .engine files."""
    if ckpt.lower().endswith(DEPLOYED_MODEL_EXTS):
        if config:
            raise CCNetError("--config applies to checkpoints only: an exported model carries "
                             "its metadata")
        from runtime import Segmenter

        segmenter = Segmenter(ckpt)
        return segmenter.predict, segmenter.meta
    model = _load(ckpt, config, device)
    from .inference import predict

    return (lambda image, tta=False: predict(model, image, tta=tta)), model.meta


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True,
                        help="zoo name (1.x or 0.x), built-in name, URL or checkpoint file; "
                             "ccnet-eval also takes an exported .onnx or .engine file")
    parser.add_argument("--config", default=None,
                        help="zoo name whose architecture to use (default: the zoo row of --ckpt, "
                             "or inferred from the checkpoint's tensors)")
    parser.add_argument("--tta", action="store_true",
                        help="multi-scale + flip test-time augmentation (mmseg 0.x rule)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")


@cli_main
def predict_main(argv=None) -> int:
    """ccnet-predict: segment one image with a PyTorch CCNet."""
    parser = argparse.ArgumentParser(
        prog="ccnet-predict", description="Segment one image with a CCNet checkpoint (PyTorch).")
    _model_args(parser)
    parser.add_argument("--image", required=True, help="input image (any format cv2 reads)")
    parser.add_argument("--out", required=True,
                        help="output PNG: the label map (uint8 class indices) or, with --overlay, "
                             "the colour overlay")
    parser.add_argument("--overlay", action="store_true",
                        help="write the palette overlay on the image instead of the label map")
    parser.add_argument("--save-logits", metavar="X.npy", default=None,
                        help="also save the C×H×W float32 logits at the original size "
                             "(averaged probabilities with --tta)")
    args = parser.parse_args(argv)
    if args.save_logits and not args.save_logits.endswith(".npy"):
        raise CCNetError(f"--save-logits needs a .npy file name, got {args.save_logits}")
    from .processing import load_image

    load_image(args.image)  # fail on bad input before the (slow) model load
    for path in (args.out, args.save_logits):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise CCNetError(f"cannot write {path}: folder {os.path.dirname(path)} does not exist")
    model = _load(args.ckpt, args.config, args.device)
    prediction = predict_to_files(model, args.image, args.out, overlay=args.overlay,
                                  logits_path=args.save_logits, tta=args.tta)
    classes = np.unique(prediction.labels)
    names = ", ".join(model.meta.classes[c] for c in classes[:8])
    print(f"wrote {args.out} ({prediction.labels.shape[1]}x{prediction.labels.shape[0]}, "
          f"classes: {names}{' ...' if len(classes) > 8 else ''})")
    return 0


# Class counts of the datasets' label spaces: a model must match them to be evaluated.
DATASET_NUM_CLASSES = {"cityscapes": 19, "ade20k": 150, "voc": 21}


def check_model_fits_dataset(num_classes: int, kind: str) -> None:
    expected = DATASET_NUM_CLASSES.get(kind)
    if expected is not None and num_classes != expected:
        raise CCNetError(f"the model predicts {num_classes} classes but {kind} has {expected}: "
                         "evaluate it on its own dataset (or --dataset folder)")


@cli_main
def eval_main(argv=None) -> int:
    """ccnet-eval: mIoU / aAcc / mAcc of a PyTorch CCNet on a dataset, as mmseg computes them."""
    from .datasets import DATASET_KINDS, open_dataset

    parser = argparse.ArgumentParser(
        prog="ccnet-eval", description="Evaluate a CCNet checkpoint (PyTorch) like mmseg's "
                                       "IoUMetric: mIoU, aAcc, mAcc and a per-class table.")
    _model_args(parser)
    parser.add_argument("--data", required=True, help="dataset root folder")
    parser.add_argument("--dataset", required=True, choices=DATASET_KINDS, help="dataset layout")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the metrics")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        raise CCNetError("--max-images must be >= 1")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise CCNetError(f"cannot write {args.json}: folder {os.path.dirname(args.json)} "
                         "does not exist")

    dataset = open_dataset(args.data, args.dataset, args.split).head(args.max_images)
    predict_fn, meta = _predictor(args.ckpt, args.config, args.device)
    check_model_fits_dataset(meta.num_classes, args.dataset)

    result = evaluate(lambda image: predict_fn(image, tta=args.tta), dataset,
                      meta.num_classes, meta.classes,
                      progress=not args.no_progress, ignore_index=meta.ignore_index)
    print(format_table(result, meta.classes))
    if args.json:
        report = result_to_json(result, meta.classes)
        report.update(model=meta.name, dataset=args.dataset, data=os.path.abspath(args.data),
                      tta=args.tta)
        text = json.dumps(report, indent=2)
        write_outputs([(args.json, _textsave(text))])
    return 0


@cli_main
def _dispatch(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"predict": predict_main, "eval": eval_main}
    if not argv or argv[0] not in commands:
        raise CCNetError("usage: python -m ccnet.cli {predict,eval} [options] (see --help of each)")
    return commands[argv[0]](argv[1:])


main = _dispatch

if __name__ == "__main__":
    sys.exit(main())

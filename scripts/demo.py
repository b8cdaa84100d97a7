"""The offline CPU demo behind `make demo`: the whole path on the built-in `ccnet-demo` model.

ccnet-demo (PyTorch) → ONNX (criss-cross custom op + local function) → FP16 and INT8 ONNX →
ONNX Runtime → parity table vs PyTorch on held-out synthetic scenes → overlays of the real
photos in ../shared/data → a segmented sample video.  Everything lands in --out.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import cv2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PHOTOS = os.path.join(os.path.dirname(REPO), "shared", "data")


def step(title: str):
    print(f"\n=== {title}", flush=True)
    return time.perf_counter()


def done(t0: float):
    print(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)


def run_demo(out: str, photos_dir: str, num_scenes: int = 8, video_frames: int = 24) -> dict:
    """Run every stage; returns the parity report."""
    import ccnet
    from ccnet.images import iter_images

    os.makedirs(out, exist_ok=True)
    t0 = step("1/6 load the built-in trained model ccnet-demo (PyTorch, CPU)")
    model = ccnet.load_model("ccnet-demo")
    print(f"    {model.meta.name}: {len(model.meta.classes)} classes, test scale "
          f"{model.meta.test_scale}, {model.meta.mode} mode")
    done(t0)
    # Photos only: the data folders also hold label PNGs, which are not inputs.
    photos = [p for p in iter_images(photos_dir)
              if os.path.basename(os.path.dirname(p)) == "images"]
    files = {k: os.path.join(out, f"ccnet_demo{k}.onnx") for k in ("", "_fp16", "_int8")}
    heldout = os.path.join(out, "heldout_scenes")

    t0 = step("2/6 export to ONNX (CrissCrossAttention custom node + local function), FP16")
    _export(model, files, photos[0] if photos else None)  # else a synthetic photo-like image
    done(t0)
    t0 = step("3/6 held-out synthetic scenes; INT8 (explicit Q/DQ) calibrated on other scenes")
    _quantize(out, files, heldout, num_scenes)
    done(t0)
    t0 = step("4/6 parity: PyTorch FP32 vs ONNX Runtime FP32 / FP16 / INT8")
    report = _parity(out, files, heldout)
    done(t0)
    t0 = step("5/6 overlays of the real photos (ONNX Runtime) and of the held-out scenes")
    _overlays(out, files[""], photos + list(iter_images(os.path.join(heldout, "images"))))
    done(t0)
    t0 = step("6/6 video: a sample clip through VideoSegmenter (pipelined, ONNX Runtime)")
    _video(out, files[""], heldout, video_frames)
    done(t0)
    print(f"\nAll outputs are in {out}/")
    return report


def _export(model, files: dict, verify_image) -> None:
    from export.to_fp16 import convert_to_fp16
    from export.to_onnx import export_onnx

    export_onnx(model, files[""], verify_image=verify_image)
    convert_to_fp16(files[""], files["_fp16"], verify_image=verify_image)


def _quantize(out: str, files: dict, heldout: str, num_scenes: int) -> None:
    from calib.quantize import quantize
    from ccnet.synthetic import write_dataset

    calib_dir = os.path.join(out, "calibration_scenes")
    # Seeds far from the training scenes' (see ccnet/weights/TRAINING.md).
    write_dataset(heldout, num_scenes, seed=700000)
    write_dataset(calib_dir, num_scenes, seed=600000)
    quantize(files[""], files["_int8"], images_dir=os.path.join(calib_dir, "images"),
             cache=os.path.join(out, "calibration_cache.json"))


def _parity(out: str, files: dict, heldout: str) -> dict:
    from runtime.parity import format_report, parity_report, plot_deltas, write_json

    report = parity_report("ccnet-demo", heldout, "folder", onnx=files[""],
                           onnx_fp16=files["_fp16"], onnx_int8=files["_int8"])
    print(format_report(report))
    write_json(report, os.path.join(out, "parity.json"))
    plot_deltas(report, os.path.join(out, "parity.png"))
    return report


def _overlays(out: str, model_path: str, images: list) -> None:
    from ccnet.files import write_image
    from ccnet.images import load_image
    from ccnet.visualize import overlay
    from runtime import Segmenter

    overlay_dir = os.path.join(out, "overlays")
    with Segmenter(model_path) as segmenter:
        for path in images:
            image = load_image(path)
            labels = segmenter.segment(image)
            name = os.path.splitext(os.path.basename(path))[0] + "_overlay.png"
            write_image(os.path.join(overlay_dir, name),
                        overlay(image, labels, segmenter.meta.palette), make_dirs=True)
    print(f"    {len(images)} overlays in {overlay_dir} (the real photos are not street scenes: "
          "the demo model only knows its synthetic classes)")


def _video(out: str, model_path: str, heldout: str, frames: int) -> None:
    from runtime.video_job import segment_video

    video_in = os.path.join(out, "sample_input.mp4")
    _write_sample_video(video_in, os.path.join(heldout, "images"), frames)
    video_out = os.path.join(out, "sample_segmented.mp4")
    stats = segment_video(model_path, video_in, video_out,
                          labels_dir=os.path.join(out, "video_labels"), show_fps=True)
    print(f"    {video_out}: {stats}")


def _write_sample_video(path: str, scenes_dir: str, frames: int) -> None:
    """A panning clip over the held-out scenes, so consecutive frames differ a little."""
    from ccnet.images import iter_images

    scenes = [cv2.imread(p) for p in iter_images(scenes_dir)]
    h, w = scenes[0].shape[:2]
    crop_w = w * 3 // 4
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 8, (crop_w, h))
    for i in range(frames):
        scene = scenes[(i // 8) % len(scenes)]
        x = (i % 8) * (w - crop_w) // 7
        writer.write(scene[:, x:x + crop_w])
    writer.release()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--photos", default=DEFAULT_PHOTOS, help="folder of real photos")
    args = parser.parse_args(argv)
    from ccnet.errors import CCNetError
    from cli.app import logging_configured

    try:
        with logging_configured("info"):  # as the ccnet command: no third-party warnings
            run_demo(args.out, args.photos)
    except CCNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ONNX Runtime CPU latency: INT8 (Q/DQ from ccnet-calibrate) vs FP32, same model, same input.

Models: the built-in ``ccnet-demo`` (or, while it is absent, the tiny depth-18 test config with
random weights) and R50-D8 (Cityscapes architecture, random weights: latency does not depend on
the weights).  Each is exported with ``export.to_onnx.export_onnx``, calibrated with
``calib.quantize.quantize`` (R50: 2 images, minmax, at 256×512 to stay quick) and timed on the
network pass only (``OrtRunner.infer`` on one preprocessed 1×3×H×W input), median of ``--runs``
after one warm-up.  Prints a table and writes JSON (default bench/int8_latency.json).

    .venv/bin/python bench/int8_latency.py [--runs 5] [--threads 2] [--json OUT]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile

import numpy as np

from ccnet.files import write_json
from runtime.machine import library_versions, machine_info, median_ms

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHARED = os.environ.get("CCNET_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
CALIB_IMAGES = os.path.join(SHARED, "voc_samples", "deeplabv3plus_pytorch", "images")


def bench_model(label: str, ckpt, config, size, folder: str, runs: int, threads: int,
                calib_images: int, method: str) -> dict:
    from calib.quantize import quantize
    from export.to_onnx import export_onnx
    from runtime.runners import OrtRunner

    height, width = size
    fp32 = os.path.join(folder, f"{label}.onnx")
    int8 = os.path.join(folder, f"{label}_int8.onnx")
    int8_ort = os.path.join(folder, f"{label}_int8_ort.onnx")
    cache = os.path.join(folder, f"{label}_calib.json")
    export_onnx(ckpt, fp32, config=config, verify=False, log=lambda *a, **k: None)
    # Calibration images are preprocessed at the model's test scale; the timing input is HxW.
    report = quantize(fp32, int8, images_dir=CALIB_IMAGES, num_images=calib_images,
                      method=method, cache=cache, progress=False)
    quantize(fp32, int8_ort, cache=cache, target="ort-cpu", progress=False)
    batch = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    row = {"model": label, "input": f"1x3x{height}x{width}", "calib_method": method,
           "calib_images": report["num_images"]}
    outputs = {}
    for precision, path in (("fp32", fp32), ("int8_trt_placement", int8),
                            ("int8_ort_placement", int8_ort)):
        runner = OrtRunner(path, device="cpu", threads=threads)
        row[f"{precision}_ms"] = round(median_ms(lambda: runner.infer(batch), runs), 1)
        outputs[precision] = runner.infer(batch)
        runner.close()
    for variant in ("int8_trt_placement", "int8_ort_placement"):
        row[f"{variant}_speedup"] = round(row["fp32_ms"] / row[f"{variant}_ms"], 2)
        row[f"{variant}_argmax_agreement_pct"] = round(100.0 * float(
            (outputs["fp32"].argmax(1) == outputs[variant].argmax(1)).mean()), 2)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=os.path.join(REPO, "bench", "int8_latency.json"))
    p.add_argument("--skip-r50", action="store_true")
    args = p.parse_args(argv)

    from ccnet.checkpoint import build_model, save_checkpoint
    from ccnet.zoo import get_config

    rows = []
    with tempfile.TemporaryDirectory(prefix="ccnet_bench_") as folder:
        # The committed trained model (its calibration ranges are realistic).
        rows.append(bench_model("ccnet-demo", "ccnet-demo", None, (256, 512), folder, args.runs,
                                args.threads, calib_images=3, method="entropy"))
        if not args.skip_r50:
            # R50-D8 with random weights: latency does not depend on the weights.
            config = get_config("ccnet_r50-d8_4xb2-80k_cityscapes-512x1024")
            config = dataclasses.replace(config, test_scale=(512, 256))
            path = os.path.join(folder, "r50.pth")
            save_checkpoint(build_model(config), path)
            rows.append(bench_model("r50-d8", path, None, (256, 512), folder, args.runs,
                                    args.threads, calib_images=2, method="minmax"))
            rows[-1]["model"] = "R50-D8 cityscapes arch (random weights)"
    result = {"machine": machine_info(), "versions": library_versions(),
              "threads": args.threads, "runs": args.runs, "rows": rows}
    header = (f"{'model':<44} {'input':<12} {'FP32 ms':>8} | {'INT8 tensorrt-placement':>30} | "
              f"{'INT8 ort-cpu-placement':>30}")
    print(f"ONNX Runtime {result['versions'].get('onnxruntime')} CPU, {result['machine']['cpu']}, "
          f"{args.threads} threads, median of {args.runs}")
    print(header)
    for r in rows:
        cells = [f"{r[v + '_ms']:>8} ms {r[v + '_speedup']:>5}x {r[v + '_argmax_agreement_pct']:>6}%"
                 for v in ("int8_trt_placement", "int8_ort_placement")]
        print(f"{r['model']:<44} {r['input']:<12} {r['fp32_ms']:>8} | {cells[0]:>30} | "
              f"{cells[1]:>30}")
    write_json(args.json, result, make_dirs=True)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU latency: PyTorch eager vs ONNX Runtime (FP32 and FP16), measured in one run.

    python bench/cpu_inference.py [--threads 2] [--reps 3] [--json bench/cpu_inference.json]

Models: R50-D8 Cityscapes at 1×3×512×1024 and the small depth-18 model at its test size
(1×3×256×512); random weights (latency does not depend on them).  Prints a table and writes
JSON.  Target: ONNX Runtime FP32 >= 1.3× faster than PyTorch eager.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from ccnet.files import write_json
from runtime.machine import library_versions, machine_info, median_ms

CASES = [  # (label, config, input shape)
    ("R50-D8 cityscapes", "ccnet_r50-d8_4xb2-80k_cityscapes-512x1024", (1, 3, 512, 1024)),
    ("R18-D8 small (64ch head)", None, (1, 3, 256, 512)),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__),
                                                       "cpu_inference.json"))
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from ccnet.checkpoint import build_model
    from ccnet.zoo import custom_config
    from export.to_onnx import export_onnx

    torch.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, config, shape in CASES:
            torch.manual_seed(0)
            cfg = config or custom_config("tiny-r18-voc", depth=18, num_classes=21, channels=64,
                                          aux_channels=32, dataset="voc", test_scale=(512, 256))
            model = build_model(cfg)
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            row = {"model": label, "input": list(shape)}
            with torch.inference_mode():
                xt = torch.from_numpy(x)
                row["torch_eager_ms"] = median_ms(lambda: model(xt), args.reps, args.warmup)
            for precision in ("fp32", "fp16"):
                path = os.path.join(tmp, f"{precision}.onnx")
                export_onnx(model, path, fp16=precision == "fp16", verify=False,
                            log=lambda *a: None)
                session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                row[f"ort_{precision}_ms"] = median_ms(
                    lambda: session.run(None, {"input": x}), args.reps, args.warmup)
            row["ort_fp32_speedup"] = row["torch_eager_ms"] / row["ort_fp32_ms"]
            rows.append(row)
            print(f"done: {label}", file=sys.stderr)

    result = {"machine": machine_info(), "versions": library_versions(),
              "threads": args.threads, "reps": args.reps, "warmup": args.warmup, "rows": rows}
    print(f"CPU: {result['machine']['cpu']}, {args.threads} threads, median of {args.reps} "
          f"(+{args.warmup} warm-up)")
    print(f"{'model':26} {'input':16} {'torch eager':>12} {'ORT fp32':>10} {'ORT fp16':>10} "
          f"{'fp32 speedup':>13}")
    for r in rows:
        print(f"{r['model']:26} {'x'.join(map(str, r['input'])):16} "
              f"{r['torch_eager_ms']:10.0f}ms {r['ort_fp32_ms']:8.0f}ms {r['ort_fp16_ms']:8.0f}ms"
              f" {r['ort_fp32_speedup']:12.2f}x")
    write_json(args.json, result, make_dirs=True)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

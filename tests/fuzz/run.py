"""Run the fuzz campaign outside pytest and print the counts table (docs/fuzz.md):

    python tests/fuzz/run.py --size full --workdir /tmp/ccnet-fuzz [--json counts.json]

Builds its own valid inputs (a tiny checkpoint and its ONNX export, ~1 minute) unless
``--tiny-ckpt``/``--tiny-onnx`` name existing ones.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [TESTS, os.path.dirname(TESTS)]

from fuzz.cases import SIZES, WORKER_ENV, all_cases  # noqa: E402
from fuzz.environment import build_environment  # noqa: E402
from fuzz.harness import run_cases, worker_env  # noqa: E402


def _tiny_model(workdir: str):
    from helpers import make_checkpoint

    from ccnet.zoo import custom_config
    from export.to_onnx import export_onnx

    ckpt, onnx_path = os.path.join(workdir, "tiny.pth"), os.path.join(workdir, "tiny.onnx")
    if not os.path.exists(onnx_path):
        make_checkpoint(ckpt, custom_config("tiny-r18-voc", depth=18, num_classes=21, channels=64,
                                            aux_channels=32, dataset="voc",
                                            test_scale=(512, 256)), seed=1)
        export_onnx(ckpt, onnx_path, verify=False, log=lambda *a: None)
    return ckpt, onnx_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--tiny-ckpt")
    parser.add_argument("--tiny-onnx")
    parser.add_argument("--json", help="write the counts here")
    parser.add_argument("--verbose", action="store_true", help="print every case's outcome")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    ckpt, onnx_path = (args.tiny_ckpt, args.tiny_onnx) if args.tiny_onnx else \
        _tiny_model(args.workdir)
    env = build_environment(os.path.join(args.workdir, "env"), ckpt, onnx_path)
    cases = all_cases(env, args.size)
    start = time.time()
    report = run_cases(cases, os.path.join(args.workdir, "cases"), worker_env(WORKER_ENV),
                       log=print if args.verbose else (lambda text: None))
    print(report.table())
    print(f"{len(cases)} cases in {time.time() - start:.0f} s")
    for outcome in report.failures():
        print(f"{outcome.case.id}: {outcome.category}: {outcome.detail}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"total": report.counts(), "families": report.by_family()}, f, indent=1)
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the fuzz campaign outside pytest and print the counts table (docs/fuzz.md):

    python tests/fuzz/run.py --size full --workdir /tmp/ccnet-fuzz [--json counts.json]

Builds its own valid inputs first (a small checkpoint and its ONNX export, under a minute).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--json", help="write the counts here")
    parser.add_argument("--verbose", action="store_true", help="print every case's outcome")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    env = build_environment(os.path.join(args.workdir, "env"))
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

"""Fuzz worker: runs ``ccnet`` commands in-process, one JSON request per stdin line, one JSON
result per line on the original stdout.

Running many cases in one process keeps the import cost (torch, onnxruntime) out of each case;
a native crash or a hang kills only this process, which the harness notices and restarts.
C-level output to fd 1 is sent to stderr so it cannot corrupt the result stream.
"""
from __future__ import annotations

import io
import json
import os
import sys
import time
import traceback


def run_case(argv, cwd):
    """(exit status, stdout, stderr, uncaught traceback or None) of ``ccnet <argv>``."""
    from cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    uncaught = None
    os.chdir(cwd)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:  # anything escaping the CLI's own handling is a finding
        rc, uncaught = None, traceback.format_exc()
    finally:
        sys.stdout, sys.stderr = old
    return rc, out.getvalue(), err.getvalue(), uncaught


def main() -> None:
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # native libraries writing to stdout go to stderr instead
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        rc, out, err, uncaught = run_case(request["argv"], request["cwd"])
        results.write(json.dumps({"rc": rc, "stdout": out[-4000:], "stderr": err[-4000:],
                                  "uncaught": uncaught,
                                  "seconds": time.perf_counter() - start}) + "\n")


if __name__ == "__main__":
    main()

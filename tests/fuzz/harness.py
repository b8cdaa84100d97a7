"""Fuzz harness: run cases through a worker process, classify each outcome, count them.

A case is a ``ccnet`` command line over inputs its ``setup`` writes into a fresh folder.  Its
outcome is one of:

- ``clean``: the expected result — the right output (checked against an independent
  reference where the input is valid), or a one-line ``error: ...`` with a non-zero exit;
- ``traceback``: a Python traceback, or the CLI's "internal error, a bug" line;
- ``crash``: the process died (signal, native crash) or hung past the case's time limit;
- ``wrong-accepted``: a bad input that exited 0, or a valid one whose output is wrong;
- ``wrong-rejected``: a valid input refused;
- ``misreported``: a one-line error that names the wrong reason (e.g. "truncated" for a
  malicious pickle);
- ``leftover``: a file the command left behind (temp files, partial outputs, or any output
  after a failure), or a pre-existing file it changed or removed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from helpers import REPO

FUZZ_DIR = os.path.dirname(os.path.abspath(__file__))
CATEGORIES = ("clean", "traceback", "crash", "wrong-accepted", "wrong-rejected", "misreported",
              "leftover")
BUG_LINE = "internal error, a bug"


@dataclass
class Case:
    """One fuzz case.  ``argv`` may use ``{in}`` and ``{out}`` for the case's input and output
    folders; ``expect``: "ok", "error" or "either"; ``check(case_dir, result)`` returns a
    problem with a successful run's outputs (None when right); ``outputs``: paths under
    ``out/`` a success leaves; ``message``: a regex the error line must match."""

    id: str
    family: str
    argv: List[str]
    expect: str
    setup: Callable[[str], None] = lambda case_dir: None
    check: Optional[Callable[[str, dict], Optional[str]]] = None
    outputs: tuple = ()
    message: Optional[str] = None
    timeout: float = 120.0
    runner: str = "worker"  # or "subprocess" (signal cases drive their own process)
    # drive(case_dir, argv, env, timeout) -> result dict, for runner "subprocess"
    drive: Optional[Callable[[str, List[str], dict, float], dict]] = None


@dataclass
class Outcome:
    case: Case
    category: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    outcomes: List[Outcome] = field(default_factory=list)

    def counts(self) -> Dict[str, int]:
        counter = Counter(o.category for o in self.outcomes)
        return {"cases": len(self.outcomes), **{c: counter.get(c, 0) for c in CATEGORIES}}

    def by_family(self) -> Dict[str, Dict[str, int]]:
        families = sorted({o.case.family for o in self.outcomes})
        return {f: Report([o for o in self.outcomes if o.case.family == f]).counts()
                for f in families}

    def failures(self) -> List[Outcome]:
        return [o for o in self.outcomes if o.category != "clean"]

    def table(self) -> str:
        """The counts as a Markdown table, one row per family plus the total."""
        head = ["family", "cases", *CATEGORIES]
        rows = [[f, *map(str, c.values())] for f, c in self.by_family().items()]
        rows.append(["**total**", *map(str, self.counts().values())])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


class Worker:
    """A ``tests/fuzz/worker.py`` process; restarted after a crash or a hang."""

    def __init__(self, env: Dict[str, str]):
        self.env = env
        self.proc: Optional[subprocess.Popen] = None

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(FUZZ_DIR, "worker.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO, env=self.env,
            text=True, bufsize=1)

    def run(self, argv: List[str], cwd: str, timeout: float) -> dict:
        """The worker's result dict, or {"crash": reason}."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": cwd}) + "\n")
        self.proc.stdin.flush()
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout)
        selector.close()
        line = self.proc.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        reason = "hung" if not ready else f"died with status {self.proc.poll()}"
        self.close()
        return {"crash": reason}

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None


# ----------------------------------------------------------------------------- classification
def _fingerprint(path: str) -> str:
    """Content hash of a small file; size + mtime + inode of a large one (shared weights)."""
    info = os.stat(path)
    if info.st_size > 1 << 20:
        return f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot(folder: str) -> Dict[str, str]:
    """relative path -> fingerprint of every file under ``folder`` (hidden ones too)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if os.path.isdir(path) and not os.path.islink(path):
                found[rel + "/"] = "dir"
            elif os.path.isfile(path):
                found[rel] = _fingerprint(path)
            else:
                found[rel] = "special"
    return found


def _error_line(stderr: str) -> Optional[str]:
    """The CLI's error line when stderr holds exactly one (warnings and argparse usage lines
    may precede it)."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^(error: |[\w .-]+: error: )", ln)]
    return errors[0] if len(errors) == 1 and lines[-1] == errors[0] else None


def classify(case: Case, result: dict, case_dir: str, before: Dict[str, str]) -> Outcome:
    """The outcome category of one finished case."""
    if "crash" in result:
        return Outcome(case, "crash", result["crash"])
    stderr = result.get("stderr", "")
    if result.get("uncaught") or "Traceback (most recent call last)" in stderr or \
            BUG_LINE in stderr:
        text = result.get("uncaught") or stderr
        return Outcome(case, "traceback", text.strip().splitlines()[-1][:300])
    leftover = _leftovers(case, result, case_dir, before)
    if leftover:
        return Outcome(case, "leftover", leftover)
    rc = result["rc"]
    if rc == 0:
        if case.expect == "error":
            return Outcome(case, "wrong-accepted", "exit 0 on a bad input")
        problem = case.check(case_dir, result) if case.check else None
        return Outcome(case, "wrong-accepted", problem) if problem else Outcome(case, "clean")
    line = _error_line(stderr)
    if line is None:
        return Outcome(case, "traceback", f"exit {rc} without one error line: {stderr[-300:]!r}")
    if case.expect == "ok":
        return Outcome(case, "wrong-rejected", line[:300])
    if case.message and not re.search(case.message, line):
        return Outcome(case, "misreported", line[:300])
    return Outcome(case, "clean", line[:200])


def _leftovers(case: Case, result: dict, case_dir: str, before: Dict[str, str]) -> str:
    """What the command left behind or damaged: anything new but the declared outputs of a
    success (``out/<file>`` or everything under ``out/<folder>/``), and any pre-existing file
    changed or removed unless a success replaced it as an output."""
    after = snapshot(case_dir)
    success = result.get("rc") == 0
    outputs = [f"out/{o}" for o in case.outputs] if success else []

    def is_output(path: str) -> bool:
        return any(path == o or (o.endswith("/") and path.startswith(o)) for o in outputs)

    changed = sorted(p for p, h in before.items() if after.get(p) != h and not is_output(p))
    if changed:
        return f"changed or removed: {changed[:3]}"
    allowed = set(before) | {p for p in after if is_output(p)}
    parents = {a[:i + 1] for a in allowed for i, ch in enumerate(a) if ch == "/"}
    extra = sorted(p for p in after if p not in allowed and p not in parents)
    return f"left behind: {extra[:3]}" if extra else ""


# ----------------------------------------------------------------------------- running
def worker_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    env.pop("CCNET_DEBUG", None)
    env.update(extra or {})
    return env


def run_cases(cases: List[Case], root: str, env: Dict[str, str],
              log: Callable[[str], None] = lambda text: None) -> Report:
    """Run every case in its own folder under ``root``; the report of all outcomes."""
    report = Report()
    worker = Worker(env)
    try:
        for index, case in enumerate(cases):
            case_dir = os.path.join(root, f"{index:05d}")
            start = time.perf_counter()
            for sub in ("in", "out"):
                os.makedirs(os.path.join(case_dir, sub), exist_ok=True)
            case.setup(case_dir)
            before = snapshot(case_dir)
            argv = [a.replace("{in}", os.path.join(case_dir, "in"))
                    .replace("{out}", os.path.join(case_dir, "out")) for a in case.argv]
            if case.runner == "subprocess":
                result = case.drive(case_dir, argv, env, case.timeout)
            else:
                result = worker.run(argv, case_dir, case.timeout)
            outcome = classify(case, result, case_dir, before)
            outcome.seconds = time.perf_counter() - start
            report.outcomes.append(outcome)
            if outcome.category == "clean":  # failures stay for inspection
                shutil.rmtree(case_dir, ignore_errors=True)
            log(f"{case.id}: {outcome.category} ({outcome.seconds:.2f} s) {outcome.detail[:120]}")
    finally:
        worker.close()
    return report

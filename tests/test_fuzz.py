"""The fuzz suite (tests/fuzz/, docs/fuzz.md): every case ends in the right output or a one-line
error with a non-zero exit, with no traceback, no crash, no bad input accepted and no file left
behind.  The fast slice runs in the default suite; the full campaign is marked slow."""
from __future__ import annotations

import json

import pytest

from fuzz.cases import WORKER_ENV, all_cases
from fuzz.environment import build_environment
from fuzz.harness import run_cases, worker_env


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    return build_environment(str(tmp_path_factory.mktemp("fuzz_env")))


def _campaign(env, size, folder):
    report = run_cases(all_cases(env, size), str(folder), worker_env(WORKER_ENV))
    (folder / "counts.json").write_text(json.dumps(
        {"total": report.counts(), "families": report.by_family()}, indent=1))
    print(report.table())
    failures = "\n".join(f"{o.case.id}: {o.category}: {o.detail}" for o in report.failures())
    assert not report.failures(), f"{len(report.failures())} fuzz finding(s):\n{failures}"
    return report


def test_fuzz_fast_slice(fuzz_env, tmp_path):
    report = _campaign(fuzz_env, "fast", tmp_path)
    assert report.counts()["cases"] >= 250
    families = report.by_family()
    assert set(families) == {"checkpoint", "onnx", "image", "path", "video", "signal"}


@pytest.mark.slow
def test_fuzz_full_campaign(fuzz_env, tmp_path):
    report = _campaign(fuzz_env, "full", tmp_path)
    assert report.counts()["cases"] >= 2500

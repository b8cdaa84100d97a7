"""ccnet bench (runtime/benchmark.py) on the tiny ONNX model, its one-line errors (missing file,
unsupported size, batch beyond an engine's profile: checked from the side file, before TensorRT
is needed), and the ms/image column of ccnet eval and ccnet parity."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ccnet.errors import CCNetError

from helpers import VOC_DIR, one_error_line


def test_bench_cli_report(tiny_onnx, photos, tmp_path, capsys):
    from cli.bench import main as bench_main

    out = tmp_path / "bench.json"
    assert bench_main(["--model", tiny_onnx, "--sizes", "160x120,320x240", "--batch", "2",
                       "--warmup", "0", "--reps", "2", "--threads", "2", "--image", photos[0],
                       "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "160x120" in printed and "320x240" in printed and "postprocess" in printed
    report = json.loads(out.read_text())
    assert report["backend"] == "onnxruntime" and report["batch"] == 2 and report["reps"] == 2
    assert {"numpy", "onnxruntime", "python"} <= set(report["versions"])
    assert report["machine"]["cpu_count"] >= 1 and "other_processes_cpu_share" in report["load"]
    for result, size in zip(report["results"], ([160, 120], [320, 240])):
        assert result["size"] == size and result["network_input"][:2] == [2, 3]
        latency = result["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
        stages = result["stages"]
        assert set(stages) == {"decode", "preprocess", "infer", "postprocess"}
        assert sum(s["share"] for s in stages.values()) == pytest.approx(1.0, abs=1e-3)
        assert all(s["images_per_s"] > 0 for s in stages.values())
        assert result["peak_rss_mb"] > 10


def test_bench_help_documents_every_flag(capsys):
    from cli.bench import add_arguments, main as bench_main

    with pytest.raises(SystemExit):
        bench_main(["--help"])
    text = capsys.readouterr().out
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"
        for flag in action.option_strings:
            assert flag in text


@pytest.mark.parametrize("args,message", [
    (["--model", "missing.onnx"], "ONNX model not found: missing.onnx"),
    (["--sizes", "640x"], "unsupported size '640x'"),
    (["--sizes", "0x480"], "unsupported size 0x480"),
    (["--warmup", "-1"], "--warmup must be >= 0"),
])
def test_bench_bad_input_is_one_line(tiny_onnx, args, message, capsys):
    from cli.bench import main as bench_main

    argv = ["--model", tiny_onnx] + args
    assert bench_main(argv) == 2
    assert message in one_error_line(capsys)


def test_bench_batch_beyond_engine_profile(tiny_onnx, tmp_path, capsys):
    """The engine's side file alone decides: batch 4 is outside max batch 2, and a 4000x300
    frame's network input (38 px high at the test scale) below the profile's minimum — one-line
    errors, without TensorRT."""
    from cli.bench import main as bench_main
    from runtime import OrtRunner
    from runtime.benchmark import check_engine_profile
    from runtime.engine_info import EngineInfo, read_engine_info, write_engine_info

    meta = OrtRunner(tiny_onnx).meta
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"not read: the profile check comes first")
    write_engine_info(str(engine), EngineInfo(
        tensorrt_version="10.8.0", meta=meta.to_dict(),
        profiles=[{"input": {"min": [1, 3, 64, 64], "opt": [1, 3, 256, 512],
                             "max": [2, 3, 256, 512]}}]))
    assert bench_main(["--model", str(engine), "--sizes", "640x480", "--batch", "4"]) == 2
    line = one_error_line(capsys)
    assert "batch 4" in line and "outside the engine's profile" in line and "2x3x256x512" in line
    info = read_engine_info(str(engine))
    check_engine_profile(info, [(640, 480)], 2)  # 2x3x256x341: inside
    with pytest.raises(CCNetError, match="size 4000x300, batch 1: input shape 1x3x38x512"):
        check_engine_profile(info, [(4000, 300)], 1)


def test_fixed_shape_file_refuses_other_batches(tiny_onnx):
    from runtime import OrtRunner
    from runtime.benchmark import check_contract, network_input_shape

    meta = OrtRunner(tiny_onnx).meta
    contract = dict(meta.extra["contract"], input={"shape": [1, 3, "height", "width"]})
    fixed = meta.replace(extra=dict(meta.extra, contract=contract))
    check_contract(fixed, [(640, 480)], 1)
    with pytest.raises(CCNetError, match="batch 2 needs network input 2x3x256x341 but the model "
                                         "was exported with a fixed batch of 1"):
        check_contract(fixed, [(640, 480)], 2)
    assert network_input_shape(meta, 640, 480, 2) == (2, 3, 256, 341)


def test_timed_and_ms_per_image_columns(tiny_ckpt, tiny_onnx, shared_data, capsys):
    from cli.eval import main as eval_main
    from runtime.machine import Timed
    from runtime.parity import format_report, parity_report

    timed = Timed(lambda x: np.sqrt(x))
    assert np.isnan(timed.ms_per_call)
    timed(np.ones(10))
    assert timed.calls == 1 and timed.ms_per_call >= 0
    assert eval_main(["--model", tiny_onnx, "--data", VOC_DIR, "--dataset", "voc",
                      "--max-images", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "ms/image" in printed and "onnxruntime" in printed
    report = parity_report(tiny_ckpt, VOC_DIR, "voc", onnx=tiny_onnx, max_images=1,
                           progress=False)
    assert all(b["ms_per_image"] > 0 for b in report["backends"])
    assert "ms/img" in format_report(report)

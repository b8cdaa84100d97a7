"""TrtRunner, engine loading and ccnet inspect, driven by the TensorRT and CUDA-runtime doubles
of tests/trt_doubles.py: contexts and threads, plugin registration, compatibility rules,
buffers, CUDA-graph replay, inspector context.  The doubles follow documented behaviour and
write no outputs (an enqueue checks its preconditions only): these prove our control flow."""
from __future__ import annotations

import json

import threading

import numpy as np
import pytest

from ccnet.errors import CCNetError
from runtime.engine_info import EngineInfo, with_engine_digest, write_engine_info

from trt_doubles import EngineSpec, install

PLUGIN = ("CrissCrossAttention", "1", "ccnet")
PROFILE = {"input": {"min": [1, 3, 64, 64], "opt": [1, 3, 64, 96], "max": [1, 3, 128, 128]}}
PLAN = b"serialized-engine"


@pytest.fixture
def doubles(monkeypatch, request):
    return install(monkeypatch, request, engines={PLAN: EngineSpec()})


def _write_engine(tmp_path, trt, monkeypatch) -> str:
    """An engine file (bytes the runtime double knows) with its side file and a plugin."""
    library = tmp_path / "libccnet_plugins.so"
    library.write_bytes(b"stands for the plugin library")
    trt.registry.libraries[str(library)] = [PLUGIN]
    monkeypatch.setenv("CCNET_PLUGIN_LIB", str(library))
    path = tmp_path / "tiny.engine"
    path.write_bytes(PLAN)
    write_engine_info(str(path), with_engine_digest(EngineInfo(
        tensorrt_version="10.16.0.1", profiles=[PROFILE], cca="plugin",
        plugin={"library": str(library), "name": PLUGIN[0], "version": PLUGIN[1],
                "namespace": PLUGIN[2]}), PLAN))
    return str(path)


@pytest.fixture
def engine(tmp_path, doubles, monkeypatch):
    return _write_engine(tmp_path, doubles[0], monkeypatch)


def _batch(shape=(1, 3, 64, 96)):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- defect 3
def test_runner_built_in_one_thread_runs_in_another_in_the_primary_context(
        tmp_path, monkeypatch, request):
    """Everything (deserialize, buffers, enqueue) in the device's primary context, also when
    infer runs on a worker thread as in the video pipeline -- even with pycuda installed,
    whose autoinit would make a context of its own current on the constructing thread only."""
    from runtime import TrtRunner

    trt, cudart = install(monkeypatch, request, engines={PLAN: EngineSpec()}, pycuda=True)
    engine = _write_engine(tmp_path, trt, monkeypatch)
    runner = TrtRunner(engine)
    results = [runner.infer(_batch())]  # a warm-up on the constructing thread
    worker = threading.Thread(target=lambda: results.append(runner.infer(_batch((1, 3, 96, 96)))))
    worker.start()
    worker.join()
    assert [r.shape for r in results] == [(1, 21, 64, 96), (1, 21, 96, 96)]
    assert results[0].dtype == np.float32
    assert [c for c in trt.calls if c[0] == "deserialize"] == [("deserialize", "primary")]
    assert {owner for owner, _ in cudart.device.values()} == {"primary"}
    assert [ctx for _, ctx in runner.context.enqueues] == ["primary", "primary"]
    assert runner.context.enqueues[1][0] != threading.get_ident()
    runner.close()


def test_runner_resources_are_released_and_a_caller_stream_is_kept(engine, doubles):
    from polygraphy import cuda

    from runtime import TrtRunner

    _, cudart = doubles
    stream = cuda.Stream()
    with TrtRunner(engine, stream=stream.ptr) as runner:
        runner.infer(_batch())
        assert cudart.host and cudart.device
    assert not cudart.host and not cudart.device
    assert stream.ptr in cudart.streams  # the caller's stream is the caller's to free
    stream.free()


# ----------------------------------------------------------------------------- defect 1
def test_two_runners_in_one_process(engine, doubles):
    from runtime import TrtRunner

    trt, _ = doubles
    first, second = TrtRunner(engine), TrtRunner(engine)
    assert first.infer(_batch()).shape == second.infer(_batch()).shape
    assert len(trt.registry.load_calls) == 1
    first.close()
    second.close()


# ----------------------------------------------------------------------------- defect 7
def test_version_compatible_engine_from_an_older_major_runs(engine, doubles):
    """Built version-compatible by 10.13, run by 11.1: TensorRT allows 10 -> 11."""
    from runtime import TrtRunner
    from runtime.engine_info import read_engine_info

    trt, _ = doubles
    trt.__version__ = "11.1.0.7"
    info = read_engine_info(engine)
    info.tensorrt_version, info.version_compatible = "10.13.0.35", True
    write_engine_info(engine, info)
    TrtRunner(engine).close()
    info.version_compatible = False
    write_engine_info(engine, info)
    with pytest.raises(CCNetError, match="built without --versionCompatible runs only on the "
                                         "TensorRT release that built it"):
        TrtRunner(engine)


# ----------------------------------------------------------------------------- graphs, shapes
def test_cuda_graph_is_captured_once_per_shape_and_replayed(engine, doubles):
    from runtime import TrtRunner

    _, cudart = doubles
    runner = TrtRunner(engine, cuda_graph=True)
    for _ in range(3):
        runner.infer(_batch())
    assert len(runner.context.enqueues) == 2  # one plain enqueue after the shape change + capture
    assert list(cudart.graphs.values()) == [["enqueueV3"]] and cudart.launches == 3
    runner.infer(_batch((1, 3, 64, 64)))  # new shape: new graph, the old one destroyed
    assert len(cudart.graphs) == 1 and cudart.launches == 4
    runner.close()
    assert not cudart.graphs


def test_shape_outside_the_profile_is_refused_before_enqueue(engine):
    from runtime import TrtRunner

    runner = TrtRunner(engine)
    with pytest.raises(CCNetError, match=r"outside the engine's profile .*1x3x64x64 \.\. "
                                         r"1x3x128x128"):
        runner.infer(_batch((1, 3, 256, 256)))
    assert not runner.context.enqueues
    runner.close()


def test_missing_plugin_library_and_corrupt_engine(engine, tmp_path, monkeypatch):
    from runtime import TrtRunner

    with pytest.raises(CCNetError, match="--plugins"):
        TrtRunner(engine, plugins=str(tmp_path / "libmissing.so"))
    with open(engine, "wb") as f:
        f.write(b"corrupt")
    with pytest.raises(CCNetError, match="does not match the digest in its side file"):
        TrtRunner(engine)  # the digest ccnet build recorded catches it before TensorRT
    side = engine + ".json"
    with open(side) as f:
        info = json.load(f)
    info.pop("engine_sha256")  # a side file written before the digest existed
    with open(side, "w") as f:
        json.dump(info, f)
    with pytest.raises(CCNetError, match="cannot deserialize .*corrupt, was built for another GPU"):
        TrtRunner(engine)


# ----------------------------------------------------------------------------- defect 5
def test_inspect_sets_the_context_shapes_so_precisions_show(engine):
    from runtime.inspect_engine import inspect_engine

    summary = inspect_engine(engine)
    assert [row["precision"] for row in summary["layers"]] == ["Row major linear FP32"] * 3
    assert summary["cca_plugin_layers"] == 2
    assert summary["info"]["profiles"] == [PROFILE]


def test_inspect_cli_json(engine, capsys):
    import json

    from cli.inspect import main

    assert main([engine, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cca_plugin_layers"] == 2 and out["info"]["cca"] == "plugin"

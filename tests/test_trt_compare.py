"""The --compare mode's parts that need no TensorRT: network inputs from real photos,
polygraphy's Comparator wiring and our summary (with two real ONNX Runtime runners on tiny
hand-made graphs), the runner composition for an engine (TensorRT doubles), and the polygraphy
command line."""
from __future__ import annotations

import numpy as np
import pytest

from ccnet.errors import CCNetError
from ccnet.meta import ModelMeta
from runtime.engine_info import EngineInfo, write_engine_info

from trt_doubles import EngineSpec, install

PROFILE = {"input": {"min": [1, 3, 16, 16], "opt": [1, 3, 32, 48], "max": [1, 3, 64, 64]}}
META = ModelMeta(name="scale", dataset="voc", classes=("a", "b", "c"),
                 palette=((0, 0, 0), (1, 1, 1), (2, 2, 2)), test_scale=(64, 32))


def _scale_model(path, factor: float) -> str:
    """input (1x3xHxW) * factor -> logits: a graph small enough to need no real inference."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "k"], ["logits"])], "scale",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [factor])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def _runner(path):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(path, providers=["cpu"]), name=str(path))


def test_network_inputs_are_the_preprocessed_photos(photos):
    from ccnet.images import load_image
    from ccnet.processing import preprocess
    from runtime.trt_compare import network_inputs

    info = EngineInfo(tensorrt_version="10.16.0", profiles=[PROFILE])
    feeds = network_inputs(photos[:2], META, info)
    assert len(feeds) == 2 and list(feeds[0]) == ["input"]
    np.testing.assert_array_equal(feeds[1]["input"], preprocess(load_image(photos[1]), META))
    small = EngineInfo(tensorrt_version="10.16.0", profiles=[
        {"input": {"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 16, 16]}}])
    with pytest.raises(CCNetError, match="outside the engine's profile"):
        network_inputs(photos[:1], META, small)


def test_comparator_passes_equal_and_flags_different_outputs(tmp_path, photos):
    from runtime.trt_compare import compare_runners, format_comparison, network_inputs

    feeds = network_inputs(photos[:2], META, EngineInfo("10.16.0", profiles=[PROFILE]))
    same = compare_runners([_runner(_scale_model(tmp_path / "a.onnx", 2.0)),
                            _runner(_scale_model(tmp_path / "b.onnx", 2.0))], feeds)
    assert same["passed"] and same["outputs"]["logits"]["max_absdiff"] == 0.0
    assert same["num_inputs"] == 2 and same["outputs"]["logits"]["inputs"] == 2
    off = compare_runners([_runner(_scale_model(tmp_path / "a.onnx", 2.0)),
                           _runner(_scale_model(tmp_path / "c.onnx", 2.002))], feeds,
                          atol=1e-4, rtol=1e-4)
    row = off["outputs"]["logits"]
    assert not off["passed"] and row["failed_inputs"] == 2
    largest = 0.002 * max(float(np.abs(f["input"]).max()) for f in feeds)
    assert row["max_absdiff"] == pytest.approx(largest, rel=1e-3)
    assert format_comparison(off).startswith("tensor comparison FAILED")


def test_engine_runners_register_the_plugin_and_use_the_side_files_onnx(
        tmp_path, monkeypatch, request):
    from polygraphy.backend.onnxrt import OnnxrtRunner
    from polygraphy.backend.trt import TrtRunner

    from runtime.trt_compare import engine_runners

    trt, _ = install(monkeypatch, request, engines={b"plan": EngineSpec()})
    library = tmp_path / "libccnet_plugins.so"
    library.write_bytes(b"")
    trt.registry.libraries[str(library)] = [("CrissCrossAttention", "1", "ccnet")]
    onnx_path = _scale_model(tmp_path / "model.onnx", 1.0)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    write_engine_info(str(engine), EngineInfo("10.16.0.1", profiles=[PROFILE], onnx=onnx_path,
                                              plugin={"library": str(library)}))
    runners, info, used = engine_runners(str(engine), plugins=str(library))
    assert [type(r) for r in runners] == [TrtRunner, OnnxrtRunner] and used == onnx_path
    assert trt.registry.get_creator("CrissCrossAttention", "1", "ccnet") is not None
    write_engine_info(str(engine), EngineInfo("10.16.0.1", profiles=[PROFILE],
                                              onnx=str(tmp_path / "moved.onnx")))
    with pytest.raises(CCNetError, match="ONNX model the engine was built from not found"):
        engine_runners(str(engine))


def test_polygraphy_command_line():
    from runtime.trt_compare import polygraphy_command

    cmd = polygraphy_command("model.onnx", PROFILE, "build/libccnet_plugins.so", 1e-3, 2e-3)
    assert cmd.startswith("polygraphy run model.onnx --trt --onnxrt --strongly-typed "
                          "--plugins build/libccnet_plugins.so")
    for part in ("--trt-min-shapes input:[1,3,16,16]", "--trt-opt-shapes input:[1,3,32,48]",
                 "--trt-max-shapes input:[1,3,64,64]", "--input-shapes input:[1,3,32,48]",
                 "--atol 0.001 --rtol 0.002"):
        assert part in cmd


def test_parity_compare_needs_an_engine(capsys):
    from cli.parity import main

    assert main(["--model", "x.pth", "--data", "d", "--dataset", "voc", "--compare"]) == 2
    assert "--compare compares TensorRT engines" in capsys.readouterr().err

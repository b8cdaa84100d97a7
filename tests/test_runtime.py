"""runtime/: Segmenter over ONNX Runtime and PyTorch, runner selection, bad inputs, engine side
file checks.  Real models only (the tiny CCNet exported by export_onnx); TensorRT is absent here,
its tests live in test_tensorrt.py."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from ccnet.errors import CCNetError
from ccnet.meta import METADATA_KEY

from runtime.engine_info import (EngineInfo, check_tensorrt_version, find_profile, parse_shapes,
                                 read_engine_info, side_file_path, write_engine_info)


def _tensorrt_installed() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- parity
def test_ort_and_torch_agree_through_segmenter(tiny_onnx, tiny_ckpt, photos):
    from ccnet.images import load_image
    from runtime import Segmenter

    ort_seg, torch_seg = Segmenter(tiny_onnx), Segmenter(tiny_ckpt)
    assert (ort_seg.backend, torch_seg.backend) == ("onnxruntime", "pytorch")
    assert ort_seg.meta.to_dict()["classes"] == torch_seg.meta.to_dict()["classes"]
    for path in photos:
        image = load_image(path)
        a, b = ort_seg.predict(image), torch_seg.predict(image)
        assert a.labels.shape == image.shape[:2]
        agreement = float((a.labels == b.labels).mean())
        assert agreement >= 0.999, f"{os.path.basename(path)}: argmax agreement {agreement:.5f}"
        scale = float(np.abs(b.logits).max())
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-3 * max(scale, 1.0), rtol=0)
        np.testing.assert_array_equal(ort_seg.segment(image), a.labels)


def test_segment_fast_path_equals_predict_labels(photos):
    """Segmenter.segment (reused buffers, host resize + argmax without full-size logits) gives
    predict()'s labels (exact full-size logits), as uint8; the trained ccnet-demo model has
    real class boundaries to get right."""
    from ccnet.images import load_image
    from runtime import Segmenter

    with Segmenter("ccnet-demo") as seg:
        assert not seg.label_head and seg.preprocessor(load_image(photos[0])) is \
            seg.preprocessor(load_image(photos[1]))  # same size class: one kept buffer
        for path in photos[::2]:
            image = load_image(path)
            labels, expected = seg.segment(image), seg.predict(image).labels
            assert labels.dtype == expected.dtype == np.uint8
            assert len(np.unique(expected)) > 1
            assert (labels == expected).mean() >= 0.9999


def test_slide_mode_metadata_agrees(tiny_onnx, tiny_ckpt, photos):
    """Slide windows (overlapping crops, averaged logits) through both runners."""
    from ccnet.images import load_image
    from runtime import Segmenter

    ort_seg = Segmenter(tiny_onnx)
    slide = ort_seg.meta.replace(mode="slide", crop_size=(128, 128), stride=(85, 85),
                                 test_scale=(320, 160))
    ort_seg = Segmenter(tiny_onnx, meta=slide)
    torch_seg = Segmenter(tiny_ckpt, meta=slide)
    image = load_image(photos[0])
    a, b = ort_seg.predict(image), torch_seg.predict(image)
    assert float((a.labels == b.labels).mean()) >= 0.999
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-3 * max(np.abs(b.logits).max(), 1))


def test_ort_runner_interface(tiny_onnx):
    from runtime import OrtRunner

    runner = OrtRunner(tiny_onnx, device="cpu", threads=1, graph_optimization="basic")
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 96)).astype(np.float32)
    out = runner.infer(batch)
    assert out.shape == (2, 21, 64, 96) and out.dtype == np.float32
    assert runner.output_kind == "logits" and runner.meta.name == "tiny-r18-voc"
    assert runner.meta.extra.get("cca") == "plugin"  # exported with CCA custom nodes + function


# ----------------------------------------------------------------------------- bad input
def test_unsupported_and_missing_model(tmp_path):
    from runtime import Segmenter

    odd = tmp_path / "model.txt"
    odd.write_text("hello")
    with pytest.raises(CCNetError, match="unsupported model file type '.txt'"):
        Segmenter(str(odd))
    with pytest.raises(CCNetError, match="not found"):
        Segmenter(str(tmp_path / "missing.onnx"))
    with pytest.raises(CCNetError, match="unknown backend"):
        Segmenter(str(odd), backend="tflite")


def test_corrupt_onnx(tmp_path):
    from runtime import Segmenter

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(CCNetError, match="cannot load ONNX model") as e:
        Segmenter(str(bad))
    assert "\n" not in str(e.value)


def test_plugin_form_onnx_is_explained(tiny_onnx, tmp_path):
    import onnx

    from runtime import Segmenter

    model = onnx.load(tiny_onnx)
    del model.functions[:]  # the plugin form: only TensorRT + our plugin can run it
    path = tmp_path / "plugin_form.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CCNetError, match="plugin form"):
        Segmenter(str(path))


def test_onnx_without_metadata(tiny_onnx, tmp_path):
    import onnx

    from runtime import Segmenter

    model = onnx.load(tiny_onnx)
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    path = tmp_path / "nometa.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CCNetError, match="carries no ccnet metadata"):
        Segmenter(str(path))


def test_labels_output_model_is_refused(tiny_onnx, tmp_path):
    """A hand-made labels-output model (ArgMax) carrying real metadata."""
    import onnx
    from onnx import TensorProto, helper

    from runtime import OrtRunner, Segmenter

    from export.metadata import set_metadata

    meta = OrtRunner(tiny_onnx).meta
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["input"], ["labels"], axis=1, keepdims=0)], "labels",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    set_metadata(model, meta)  # with the checksum of this model
    path = tmp_path / "labels.onnx"
    onnx.save(model, str(path))
    runner = OrtRunner(str(path))
    assert runner.output_kind == "labels"
    assert runner.infer(np.ones((1, 3, 8, 8), np.float32)).shape == (1, 8, 8)
    with pytest.raises(CCNetError, match="outputs labels at the network resolution, but Segmenter needs logits"):
        Segmenter(str(path))


def test_bad_image_is_one_line(tiny_onnx):
    from runtime import Segmenter

    seg = Segmenter(tiny_onnx)
    with pytest.raises(CCNetError, match="expected a BGR uint8"):
        seg.segment(np.zeros((10, 10), np.uint8))


def test_torch_free_error_for_checkpoints_names_fix(tmp_path):
    from runtime.segmenter import backend_for

    assert backend_for("model.pth") == "torch"
    assert backend_for("model.engine") == "trt" and backend_for("m.plan") == "trt"
    assert backend_for("ccnet_r50-d8_4xb4-80k_ade20k-512x512") == "torch"


# ----------------------------------------------------------------------------- engines (no TRT)
def _info(**changes) -> EngineInfo:
    base = EngineInfo(tensorrt_version="10.14.1",
                      profiles=[{"input": {"min": [1, 3, 256, 256], "opt": [1, 3, 512, 512],
                                           "max": [1, 3, 512, 1024]}}])
    return dataclasses.replace(base, **changes)


def test_engine_version_check_follows_tensorrt_rules():
    check_tensorrt_version(_info(), "10.14.1")
    check_tensorrt_version(_info(tensorrt_version="10.14.1.48"), "10.14.1.48")
    with pytest.raises(CCNetError, match="built with TensorRT 10.13.0 but TensorRT 10.14.1 is "
                                         "installed, and an engine built without "
                                         "--versionCompatible runs only on the TensorRT release"):
        check_tensorrt_version(_info(tensorrt_version="10.13.0"), "10.14.1", "model.engine")
    # version-compatible: later releases of the same major, and 8 -> 9/10, 10 -> 11
    for built, installed in (("10.13.0", "10.14.1"), ("10.13.0", "11.1.0"), ("8.6.1", "10.3.0"),
                             ("11.0.0", "11.1.0")):
        check_tensorrt_version(_info(tensorrt_version=built, version_compatible=True), installed)
    refused = {("10.14.1", "10.13.0"): "no TensorRT release runs an engine built by a later one",
               ("11.0.0", "10.16.0"): "no TensorRT release runs an engine built by a later one",
               ("8.5.3", "8.6.1"): "version compatibility starts with engines built by "
                                   "TensorRT 8.6",
               ("8.6.1", "11.1.0"): "cross major versions only from 8 to 9 or 10 and from 10 to"}
    for (built, installed), rule in refused.items():
        with pytest.raises(CCNetError, match=rule):
            check_tensorrt_version(_info(tensorrt_version=built, version_compatible=True),
                                   installed)


def test_profile_check_gives_the_range():
    info = _info()
    assert find_profile((1, 3, 256, 512), info) == 0
    with pytest.raises(CCNetError, match=r"input shape 1x3x600x600 is outside the engine's "
                                         r"profile for 'input' \(min \.\. max: 1x3x256x256 \.\. "
                                         r"1x3x512x1024\)"):
        find_profile((1, 3, 600, 600), info)
    two = _info(profiles=info.profiles + [{"input": {"min": [1, 3, 512, 512],
                                                     "opt": [1, 3, 1024, 1024],
                                                     "max": [2, 3, 1024, 2048]}}])
    assert find_profile((2, 3, 1024, 1024), two) == 1


def test_parse_shapes_trtexec_syntax():
    assert parse_shapes("input:1x3x512x512") == {"input": (1, 3, 512, 512)}
    assert parse_shapes("1x3x64x64") == {"input": (1, 3, 64, 64)}
    assert parse_shapes("a:1x2,b:3x4") == {"a": (1, 2), "b": (3, 4)}
    with pytest.raises(CCNetError, match="bad shape"):
        parse_shapes("input:1xAx3")
    with pytest.raises(CCNetError, match="positive"):
        parse_shapes("input:0x3x8x8")


def test_engine_side_file_round_trip_and_errors(tiny_onnx, tmp_path):
    from runtime import OrtRunner

    engine = str(tmp_path / "model.engine")
    with pytest.raises(CCNetError, match="model.engine.json not found"):
        read_engine_info(engine)
    meta = OrtRunner(tiny_onnx).meta
    info = _info(meta=meta.to_dict(), precision="fp16", cca="plugin")
    write_engine_info(engine, info)
    back = read_engine_info(engine)
    assert back.to_json() == info.to_json() and back.model_meta() == meta
    with open(side_file_path(engine), "w") as f:
        f.write("{not json")
    with pytest.raises(CCNetError, match="cannot read engine side file"):
        read_engine_info(engine)
    assert os.listdir(tmp_path) == ["model.engine.json"]  # no temp files left


@pytest.mark.skipif(_tensorrt_installed(), reason="checks the TensorRT-missing path")
def test_engine_without_tensorrt_is_one_line(tiny_onnx, tmp_path):
    """An engine path with a valid side file: the runner stops at `import tensorrt` (before the
    engine bytes are ever read) with the install hint."""
    from runtime import OrtRunner, Segmenter

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not read without TensorRT")
    write_engine_info(str(engine), _info(meta=OrtRunner(tiny_onnx).meta.to_dict()))
    with pytest.raises(CCNetError, match="TensorRT is not installed: pip install"):
        Segmenter(str(engine))


@pytest.mark.skipif(_tensorrt_installed(), reason="checks the TensorRT-missing path")
def test_build_and_inspect_clis_without_tensorrt(tiny_onnx, tmp_path, capsys):
    from cli.build import main as build_main
    from cli.inspect import main as inspect_main

    engine = tmp_path / "model.engine"
    rc = build_main(["--onnx", tiny_onnx, "--saveEngine", str(engine),
                         "--optShapes", "input:1x3x256x256"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: TensorRT is not installed") and err.count("\n") == 1
    assert not os.listdir(tmp_path)  # nothing half-written
    assert build_main(["--onnx", str(tmp_path / "nope.onnx"), "--saveEngine",
                           str(engine)]) == 2
    assert "ONNX model not found" in capsys.readouterr().err
    assert inspect_main([str(engine)]) == 2
    assert "engine not found" in capsys.readouterr().err


def test_inspector_summary_counts_plugin_layers():
    from runtime.inspect_engine import summarize_layers

    detailed = {"Layers": [
        {"Name": "/backbone/conv1/Conv", "LayerType": "CaskConvolution",
         "Outputs": [{"Name": "a", "Format/Datatype": "Half"}]},
        {"Name": "/decode_head/cca/CrissCrossAttention", "LayerType": "PluginV3",
         "Outputs": [{"Name": "b", "Format/Datatype": "Half"}]},
        {"Name": "/decode_head/cca_1/CrissCrossAttention", "LayerType": "PluginV3",
         "Outputs": [{"Name": "c", "Format/Datatype": "Half"}]}]}
    s = summarize_layers(detailed, "CrissCrossAttention")
    assert s["cca_plugin_layers"] == 2 and s["layers"][0]["precision"] == "Half"
    inlined = {"Layers": [{"Name": "/decode_head/cca/MatMul", "LayerType": "MatrixMultiply"}]}
    assert summarize_layers(inlined, "CrissCrossAttention")["cca_plugin_layers"] == 0
    assert summarize_layers({"Layers": ["a", "b"]}, "CrissCrossAttention")["layers"][1][
        "type"] == "?"


def test_trtexec_command_line():
    from runtime.trt_build import trtexec_command

    ranges = {"input": {"min": [1, 3, 256, 256], "opt": [1, 3, 512, 512],
                        "max": [1, 3, 512, 1024]}}
    cmd = trtexec_command("m.onnx", "m.engine", ranges, plugins="build/libccnet_plugins.so",
                          memory_pools={"workspace": 2048 << 20}, version_compatible=True)
    assert cmd.startswith("trtexec --onnx=m.onnx --saveEngine=m.engine")
    for part in ("--dynamicPlugins=build/libccnet_plugins.so",
                 "--setPluginsToSerialize=build/libccnet_plugins.so",
                 "--minShapes=input:1x3x256x256", "--optShapes=input:1x3x512x512",
                 "--maxShapes=input:1x3x512x1024", "--memPoolSize=workspace:2G",
                 "--versionCompatible"):
        assert part in cmd


def test_ort_runner_never_claims_the_plugin(tiny_onnx):
    """ONNX Runtime's TensorRT provider cannot load our IPluginV3: no plugin option, and a
    plugin library given anyway is refused with the reason."""
    import types

    from runtime import OrtRunner

    with pytest.raises(CCNetError, match="--plugins applies to TensorRT engines: ONNX Runtime "
                                         "runs the CrissCrossAttention nodes' ONNX function"):
        OrtRunner(tiny_onnx, plugins="build/libccnet_plugins.so")
    ort = types.SimpleNamespace(get_available_providers=lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert OrtRunner._providers(ort, "tensorrt") == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

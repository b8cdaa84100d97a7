"""Real TensorRT tests: build an engine from the exported ONNX with our plugin, run it through
TrtRunner/Segmenter and compare with ONNX Runtime.  Marked ``tensorrt`` (deselected by default;
run with ``pytest -m tensorrt``) and skipped when ``import tensorrt`` fails — which is the case on
every machine this project has been developed on (README, "What was verified where")."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ccnet.errors import CCNetError

from helpers import export_tiny_onnx

pytestmark = pytest.mark.tensorrt
trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt, "
                          "needs an NVIDIA GPU); see the README")

SHAPES = dict(min_shapes="input:1x3x128x128", opt_shapes="input:1x3x256x352",
              max_shapes="input:1x3x512x512")


@pytest.fixture(scope="module")
def plugin_library():
    import plugins

    try:
        return plugins.library_path()
    except Exception as e:
        pytest.skip(f"plugin library not built ({e})")


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_onnx, plugin_library):
    from runtime import build_engine

    path = str(tmp_path_factory.mktemp("trt") / "tiny.engine")
    info = build_engine(tiny_onnx, path, plugins=plugin_library, workspace_mib=1024, **SHAPES)
    assert info.cca == "plugin", f"CCA nodes were {info.cca}, not mapped to the plugin"
    return path


def test_side_file_and_inspector(engine):
    from runtime import read_engine_info
    from runtime.inspect_engine import inspect_engine

    info = read_engine_info(engine)
    assert info.tensorrt_version == trt.__version__ and info.precision == "fp32"
    assert info.plugin["name"] == "CrissCrossAttention" and info.meta["name"] == "tiny-r18-voc"
    assert info.profiles[0]["input"]["max"] == [1, 3, 512, 512]
    summary = inspect_engine(engine)
    assert summary["cca_plugin_layers"] == 2  # recurrence 2: two CCA plugin layers


def test_trt_matches_onnxruntime_on_photos(engine, tiny_onnx, photos):
    from ccnet.images import load_image
    from runtime import Segmenter

    trt_seg, ort_seg = Segmenter(engine), Segmenter(tiny_onnx, device="cpu")
    assert trt_seg.backend == "tensorrt"
    for path in photos:
        image = load_image(path)
        a, b = trt_seg.predict(image), ort_seg.predict(image)
        agreement = float((a.labels == b.labels).mean())
        assert agreement >= 0.999, f"{os.path.basename(path)}: {agreement:.5f}"
        scale = max(float(np.abs(b.logits).max()), 1.0)
        np.testing.assert_allclose(a.logits, b.logits, atol=2e-3 * scale, rtol=0)


def test_cuda_graph_replay_matches(engine):
    from runtime import TrtRunner

    batch = np.random.default_rng(0).standard_normal((1, 3, 256, 352)).astype(np.float32)
    plain = TrtRunner(engine).infer(batch)
    graphed = TrtRunner(engine, cuda_graph=True)
    for _ in range(3):
        np.testing.assert_allclose(graphed.infer(batch), plain, atol=1e-4, rtol=0)


def test_shape_outside_profile_gives_range(engine):
    from runtime import TrtRunner

    with pytest.raises(CCNetError, match=r"outside the engine's profile .*1x3x128x128 \.\. "
                                         r"1x3x512x512"):
        TrtRunner(engine).infer(np.zeros((1, 3, 640, 640), np.float32))


def test_missing_plugin_library_names_the_flag(engine, tmp_path):
    from runtime import TrtRunner

    with pytest.raises(CCNetError, match="--plugins"):
        TrtRunner(engine, plugins=str(tmp_path / "libmissing.so"))


def test_fp16_engine_agrees(tmp_path_factory, tiny_ckpt, plugin_library, photos):
    from ccnet.images import load_image
    from runtime import Segmenter, build_engine

    onnx_fp16 = export_tiny_onnx(tmp_path_factory, tiny_ckpt, "tiny_fp16.onnx", fp16=True)
    path = str(tmp_path_factory.mktemp("trt16") / "tiny_fp16.engine")
    info = build_engine(onnx_fp16, path, plugins=plugin_library, **SHAPES)
    assert info.precision == "fp16" and info.cca == "plugin"
    image = load_image(photos[0])
    a, b = Segmenter(path).segment(image), Segmenter(onnx_fp16, device="cpu").segment(image)
    assert float((a == b).mean()) >= 0.99

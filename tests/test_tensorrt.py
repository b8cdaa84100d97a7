"""Real TensorRT tests: build engines from the exported ONNX with our plugin (polygraphy's
loaders), run them through TrtRunner/Segmenter, inspect them, and compare them with ONNX Runtime
(polygraphy's comparator).  Marked ``tensorrt`` (deselected by default; run with ``pytest -m
tensorrt``) and skipped when ``import tensorrt`` fails — which is the case on every machine this
project has been developed on (docs/tensorrt.md, "What was verified where").  The same control
flow runs without TensorRT in tests/test_trt_*.py against documented-behaviour doubles."""
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
def plugin_onnx(tmp_path_factory, tiny_ckpt):
    """The plugin form: no ONNX function, so the CCA nodes can only become plugin layers."""
    return export_tiny_onnx(tmp_path_factory, tiny_ckpt, "tiny_plugin.onnx", function=False)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, plugin_onnx, plugin_library):
    from runtime import build_engine

    path = str(tmp_path_factory.mktemp("trt") / "tiny.engine")
    info = build_engine(plugin_onnx, path, plugins=plugin_library, workspace_mib=1024, **SHAPES)
    assert info.cca == "plugin", f"CCA nodes were {info.cca}, not mapped to the plugin"
    return path


def test_side_file_and_inspector(engine):
    from runtime import read_engine_info
    from runtime.inspect_engine import inspect_engine

    info = read_engine_info(engine)
    assert info.tensorrt_version == trt.__version__ and info.precision == "fp32"
    assert info.plugin["name"] == "CrissCrossAttention" and info.meta["name"] == "tiny-r18-voc"
    assert info.profiles[0]["input"]["max"] == [1, 3, 512, 512]
    summary = inspect_engine(engine, report=True)
    assert summary["cca_plugin_layers"] == 2  # recurrence 2: two CCA plugin layers
    assert all(row["precision"] != "?" for row in summary["layers"])  # context shapes set
    assert "Profile" in summary["report"]  # polygraphy's engine report

def test_trt_matches_onnxruntime_on_photos(engine, plugin_onnx, tiny_onnx, photos):
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


def test_cuda_graph_replay_matches_on_a_worker_thread(engine):
    """Two runners of one engine in one process (the plugin library registered once), the
    graphed one used from another thread as the video pipeline does."""
    import threading

    from runtime import TrtRunner

    batch = np.random.default_rng(0).standard_normal((1, 3, 256, 352)).astype(np.float32)
    with TrtRunner(engine) as plain_runner:
        plain = plain_runner.infer(batch)
    graphed = TrtRunner(engine, cuda_graph=True)
    results = []
    worker = threading.Thread(target=lambda: results.extend(graphed.infer(batch)
                                                            for _ in range(3)))
    worker.start()
    worker.join()
    assert len(results) == 3
    for out in results:
        np.testing.assert_allclose(out, plain, atol=1e-4, rtol=0)
    graphed.close()


def test_fixed_shape_build_of_the_dynamic_export(tmp_path, plugin_onnx, plugin_library):
    from runtime import TrtRunner, build_engine

    path = str(tmp_path / "fixed.engine")
    build_engine(plugin_onnx, path, plugins=plugin_library, opt_shapes="input:1x3x256x352")
    with TrtRunner(path, cuda_graph=True) as runner:
        assert runner.infer(np.zeros((1, 3, 256, 352), np.float32)).shape == (1, 21, 256, 352)


def test_tensor_comparison_with_onnxruntime(engine, plugin_onnx, tiny_onnx, photos):
    """The engine (plugin form) against ONNX Runtime on the function form of the same model."""
    from runtime.trt_compare import compare_engine

    summary = compare_engine(engine, photos[:2], onnx_path=tiny_onnx, atol=2e-3, rtol=2e-3)
    assert summary["passed"], summary["outputs"]


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
    plugin_fp16 = export_tiny_onnx(tmp_path_factory, tiny_ckpt, "tiny_fp16_plugin.onnx",
                                   fp16=True, function=False)
    path = str(tmp_path_factory.mktemp("trt16") / "tiny_fp16.engine")
    info = build_engine(plugin_fp16, path, plugins=plugin_library, **SHAPES)
    assert info.precision == "fp16" and info.cca == "plugin"
    image = load_image(photos[0])
    a, b = Segmenter(path).segment(image), Segmenter(onnx_fp16, device="cpu").segment(image)
    assert float((a == b).mean()) >= 0.99

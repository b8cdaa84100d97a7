"""The label head (export --label-head): resize back + argmax in the graph, the output size as
an empty 0×H×W input.  Checked on ONNX Runtime FP32 against the exact numpy reference on the real
photos, through Segmenter, and through ccnet fp16 / ccnet calibrate.  Model: the trained
ccnet-demo (real class boundaries), exported once."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from ccnet.errors import CCNetError
from ccnet.images import load_image
from ccnet.labels import LABEL_HEAD_INPUT, label_head_feed
from ccnet.processing import network_logits, preprocess, resize_logits

from helpers import VOC_DIR, one_error_line, with_label_head

MIN_AGREEMENT = 0.9999


def test_export_flag_writes_a_verified_head(tiny_ckpt, tmp_path, capsys):
    from cli.export import main as export_main

    out = tmp_path / "tiny_head.onnx"
    assert export_main(["--model", tiny_ckpt, "--out", str(out), "--label-head", "--batch", "2",
                        "--height", "64", "--width", "96"]) == 0
    log = capsys.readouterr().out
    assert "verify label head" in log and "100.0000%" in log
    from runtime import OrtRunner

    runner = OrtRunner(str(out))
    assert runner.output_kind == "label_map"
    assert [i.name for i in runner.session.get_inputs()] == ["input", LABEL_HEAD_INPUT]
    assert runner.session.get_outputs()[0].type == "tensor(uint8)"
    head = runner.meta.extra["label_head"]
    assert head["dtype"] == "uint8" and head["align_corners"] is False
    assert runner.meta.extra["contract"]["output"]["name"] == "labels"
    batch = np.zeros((2, 3, 64, 96), np.float32)
    assert runner.infer_labels(batch, (121, 77)).shape == (2, 121, 77)
    with pytest.raises(CCNetError, match="label head: call infer_labels"):
        runner.infer(batch)


@pytest.mark.parametrize("align_corners", [False, True])
def test_head_labels_equal_exact_reference_on_photos(demo_onnx, photos, tmp_path,
                                                     align_corners):
    """ONNX Runtime FP32: in-graph resize + argmax vs the exact numpy resize of the same file's
    logits, at each photo's own size and at 1080p."""
    from runtime import OrtRunner

    head = OrtRunner(with_label_head(demo_onnx, str(tmp_path / "h.onnx"), align_corners))
    plain = OrtRunner(demo_onnx)
    for i, path in enumerate(photos):
        image = load_image(path)
        batch = preprocess(image, plain.meta)
        logits = network_logits(batch, plain.meta, plain.infer)[0]
        for size in [image.shape[:2]] + ([(1080, 1920)] if i == 0 else []):
            labels = head.infer_labels(batch, size)[0]
            exact = resize_logits(logits, size, align_corners).argmax(0)
            assert labels.dtype == np.uint8 and len(np.unique(exact)) > 1
            agreement = (labels == exact).mean()
            assert agreement >= MIN_AGREEMENT, f"{os.path.basename(path)} {size}: {agreement}"


def test_segmenter_uses_the_head_automatically(demo_head_onnx, demo_onnx, photos):
    from runtime import Segmenter

    with Segmenter(demo_head_onnx) as head, Segmenter(demo_onnx) as plain:
        assert head.label_head and not plain.label_head
        for path in photos:
            image = load_image(path)
            labels = head.segment(image)
            assert labels.dtype == np.uint8 and labels.shape == image.shape[:2]
            assert (labels == plain.segment(image)).mean() >= MIN_AGREEMENT
        with pytest.raises(CCNetError, match="returns label maps .label head., not logits"):
            head.predict(image)
    slide = plain.meta.replace(mode="slide", crop_size=(128, 128), stride=(85, 85))
    with pytest.raises(CCNetError, match="whole-image inference only"):
        Segmenter(demo_head_onnx, meta=slide)
    with pytest.raises(CCNetError, match="align_corners=False"):
        Segmenter(demo_head_onnx, meta=plain.meta.replace(align_corners=True))


def test_strip_gives_back_the_logits_graph(demo_head_onnx, demo_onnx):
    import onnxruntime as ort

    from export.label_head import strip_label_head

    stripped, had = strip_label_head(onnx.load(demo_head_onnx))
    assert had and [i.name for i in stripped.graph.input] == ["input"]
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 80)).astype(np.float32)
    providers = ["CPUExecutionProvider"]
    a = ort.InferenceSession(stripped.SerializeToString(), providers=providers).run(
        None, {"input": x})[0]
    b = ort.InferenceSession(demo_onnx, providers=providers).run(None, {"input": x})[0]
    np.testing.assert_array_equal(a, b)
    assert strip_label_head(onnx.load(demo_onnx))[1] is False


def test_head_refusals(demo_head_onnx, demo_onnx, tiny_ckpt, capsys):
    from cli.export import main as export_main
    from export.label_head import add_label_head
    from export.metadata import read_metadata

    meta = read_metadata(demo_onnx)
    with pytest.raises(CCNetError, match="already has a label head"):
        add_label_head(onnx.load(demo_head_onnx), meta)
    slide = meta.replace(mode="slide", crop_size=(64, 64), stride=(32, 32))
    with pytest.raises(CCNetError, match="slide mode"):
        add_label_head(onnx.load(demo_onnx), slide)
    assert export_main(["--model", tiny_ckpt, "--out", "x.onnx", "--label-head",
                        "--output", "labels"]) == 2
    assert "drop --output labels" in one_error_line(capsys)
    assert label_head_feed((5, 7)).shape == (0, 5, 7)


def test_fp16_conversion_keeps_the_head(demo_head_onnx, tmp_path, photos):
    from export.to_fp16 import convert_to_fp16
    from runtime import Segmenter

    out = str(tmp_path / "head_fp16.onnx")
    convert_to_fp16(demo_head_onnx, out, log=lambda *a: None, verify_image=photos[0])
    with Segmenter(out) as fp16, Segmenter(demo_head_onnx) as fp32:
        assert fp16.label_head and fp16.meta.extra["precision"] == "fp16"
        image = load_image(photos[0])
        assert (fp16.segment(image) == fp32.segment(image)).mean() >= 0.99


def test_calibration_keeps_the_head(demo_head_onnx, tmp_path, photos):
    from calib.quantize import quantize
    from runtime import Segmenter

    out = str(tmp_path / "head_int8.onnx")
    report = quantize(demo_head_onnx, out, images_dir=os.path.join(VOC_DIR, "images"),
                      num_images=1, method="minmax", progress=False, target="ort-cpu")
    assert report["quantized_convs"] > 0
    with Segmenter(out) as int8, Segmenter(demo_head_onnx) as fp32:
        assert int8.label_head and int8.meta.extra["precision"] == "int8"
        image = load_image(photos[0])
        assert (int8.segment(image) == fp32.segment(image)).mean() >= 0.95


def test_trt_runner_binds_the_empty_size_input(demo_head_onnx, tmp_path, monkeypatch, request):
    """TrtRunner + Segmenter on a label-head engine, driven by the TensorRT/CUDA doubles of
    tests/trt_doubles.py with the context extended to a second input as TensorRT documents it:
    IExecutionContext::setInputShape returns false outside the profile, output shapes are known
    once every input shape is set, and enqueueV3 refuses an unbound (nullptr) tensor unless it is
    an empty input — we bind 1 byte anyway.  The doubles write no outputs: this proves our
    control flow (shapes, buffers, profile errors), not TensorRT's results."""
    import trt_doubles
    from runtime import OrtRunner, Segmenter, TrtRunner
    from runtime.engine_info import EngineInfo, write_engine_info

    profile = ((1, 3, 64, 64), (1, 3, 256, 341), (1, 3, 512, 1024))
    sizes = ((0, 16, 16), (0, 480, 640), (0, 2160, 3840))
    spec = trt_doubles.EngineSpec(output_name="labels", profile=profile, needs_plugin=False)
    _, cudart = trt_doubles.install(monkeypatch, request, engines={b"plan": spec})

    class HeadContext(trt_doubles._Context):
        """IExecutionContext with the label head's second input, following NvInferRuntime.h:
        setInputShape returns false for a shape outside the profile; getTensorShape gives -1
        for a runtime dimension of an input whose shape is not set yet, and for every runtime
        dimension of an output until all input shapes are set."""

        def set_input_shape(self, name, shape):
            if name != LABEL_HEAD_INPUT:
                return super().set_input_shape(name, shape)
            if not all(a <= s <= b for a, s, b in zip(sizes[0], shape, sizes[2])):
                return False
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            if name == LABEL_HEAD_INPUT:
                return self.shapes.get(name, (0, -1, -1))  # dim 0 is fixed by the profile
            if name != "labels":
                return super().get_tensor_shape(name)
            if "input" not in self.shapes or LABEL_HEAD_INPUT not in self.shapes:
                return (-1, -1, -1)
            return (self.shapes["input"][0],) + self.shapes[LABEL_HEAD_INPUT][1:]

        def execute_async_v3(self, stream):
            owner = cudart.device.get(self.addresses.get(LABEL_HEAD_INPUT), (None,))[0]
            return owner == cudart.current_context() and super().execute_async_v3(stream)

    monkeypatch.setattr(trt_doubles._Engine, "create_execution_context",
                        lambda engine: HeadContext(engine._trt, engine._cudart, engine))
    monkeypatch.setattr(trt_doubles._Engine, "get_tensor_dtype", lambda engine, name: (
        engine._trt.DataType.INT32 if name == "labels" else engine._trt.DataType.FLOAT))
    engine = tmp_path / "head.engine"
    engine.write_bytes(b"plan")
    meta = OrtRunner(demo_head_onnx).meta
    write_engine_info(str(engine), EngineInfo(
        tensorrt_version="10.16.0.1", meta=meta.to_dict(), output_name="labels",
        output_kind="labels", cca="none", profiles=[{
            "input": dict(zip(("min", "opt", "max"), map(list, profile))),
            LABEL_HEAD_INPUT: dict(zip(("min", "opt", "max"), map(list, sizes)))}]))
    runner = TrtRunner(str(engine))
    assert runner.output_kind == "label_map"
    batch = np.zeros((1, 3, 256, 341), np.float32)
    labels = runner.infer_labels(batch, (480, 640))
    assert labels.shape == (1, 480, 640) and labels.dtype == np.int32
    ptr = runner.context.addresses[LABEL_HEAD_INPUT]
    assert len(cudart.device[ptr][1]) == 1  # the empty input's 1-byte binding
    with pytest.raises(CCNetError, match="outside the engine's profile for 'output_size'"):
        runner.infer_labels(batch, (4320, 7680))
    with pytest.raises(CCNetError, match="label head: call infer_labels"):
        runner.infer(batch)
    runner.close()
    with Segmenter(str(engine)) as seg:
        assert seg.label_head and seg.backend == "tensorrt"
        out = seg.segment(np.zeros((480, 640, 3), np.uint8))
        assert out.shape == (480, 640) and out.dtype == np.uint8  # label_dtype(8 classes)

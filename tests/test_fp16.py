"""FP16 export (export_onnx(fp16=True), ccnet fp16): strongly typed FP16 with float32
I/O, CCA node + function kept, runs on ORT CPU, >= 99.5% argmax agreement with PyTorch FP32 on
the real photos."""
from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxconverter_common")

from ccnet.checkpoint import load_model  # noqa: E402
from ccnet.images import load_image  # noqa: E402
from ccnet.processing import preprocess  # noqa: E402
from cli.fp16 import main as fp16_main  # noqa: E402
from export import cca_functions, cca_nodes, read_metadata  # noqa: E402
from export.to_onnx import export_onnx  # noqa: E402
from export.verify import FP16_MIN_AGREEMENT  # noqa: E402
from helpers import first_photo  # noqa: E402

QUIET = dict(log=lambda *a: None)


def content_sensitive(model, inputs, logit_scale: float = 10.0):
    """Make a randomly initialised CCNet's labels depend on the image.

    Random deep ReLU nets give nearly constant features, so the argmax is one class
    everywhere and an agreement test could not fail.  Centring the classifier on the mean
    feature of the photos (bias = -W·mean), per channel on the feature's spread (dead channels
    dropped), and scaling the logits to a trained net's range makes several classes win in
    different places, with small margins: a harsh FP16 test.  (Centring without the per-channel
    scaling amplifies the FP16 rounding of the near-constant random features further: ~98.8%.)
    """
    feats = []
    hook = model.decode_head.conv_seg.register_forward_hook(
        lambda mod, inp, out: feats.append(inp[0]))
    with torch.inference_mode():
        for x in inputs:
            model(torch.from_numpy(x))
    hook.remove()
    f = torch.cat([t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]) for t in feats])
    mean, spread = f.mean(0), f.std(0)
    live = spread > 1e-3 * spread.max()
    conv = model.decode_head.conv_seg
    with torch.no_grad():
        w = torch.where(live, conv.weight[:, :, 0, 0] / spread.clamp_min(1e-12), 0.0)
        scale = logit_scale / float(((f - mean) @ w.T).abs().max())
        conv.weight[:, :, 0, 0] = w * scale
        conv.bias.copy_(-(w * scale) @ mean)
    return model


@pytest.fixture(scope="module")
def photo_inputs(photos, tiny_ckpt):
    meta = load_model(tiny_ckpt).meta
    return [preprocess(load_image(p), meta) for p in photos]  # at the model's test scale


@pytest.fixture(scope="module")
def diverse_model(tiny_ckpt, photo_inputs):
    return content_sensitive(load_model(tiny_ckpt), photo_inputs)


@pytest.fixture(scope="module")
def fp16_export(tmp_path_factory, diverse_model):
    path = str(tmp_path_factory.mktemp("fp16") / "tiny_fp16.onnx")
    report = export_onnx(diverse_model, path, fp16=True, verify_image=first_photo(), **QUIET)
    return path, report


def test_fp16_graph(fp16_export, diverse_model):
    path, report = fp16_export
    model = onnx.load(path)
    assert report["precision"] == "fp16" and read_metadata(model).extra["precision"] == "fp16"
    # float32 input and output around an fp16 body
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    inits = {t.name: t.data_type for t in model.graph.initializer}
    assert {inits[w] for w in conv_weights} == {onnx.TensorProto.FLOAT16}
    # the CCA nodes and one function survive; its softmax runs in float32
    assert len(cca_nodes(model)) == diverse_model.config.recurrence
    (func,) = cca_functions(model)
    softmax = next(n for n in func.node if n.op_type == "Softmax")
    casts = {n.output[0]: n for n in func.node if n.op_type == "Cast"}
    assert all(c.attribute[0].i == onnx.TensorProto.FLOAT for c in casts.values())
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    for node in cca_nodes(model):
        assert {types[i] for i in node.input} == {onnx.TensorProto.FLOAT16}
    # the final resize stays float32
    resize = [n for n in model.graph.node if n.op_type == "Resize"]
    assert resize and all(types.get(n.input[0]) == onnx.TensorProto.FLOAT for n in resize)
    assert softmax is not None


def test_fp16_agrees_with_torch_on_real_photos(fp16_export, diverse_model, photo_inputs):
    path, _ = fp16_export
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    agree = total = 0
    classes = set()
    for x in photo_inputs:
        with torch.inference_mode():
            expected = diverse_model(torch.from_numpy(x)).numpy().argmax(1)
        got = session.run(None, {"input": x})[0]
        assert got.dtype == np.float32
        agree += int((got.argmax(1) == expected).sum())
        total += expected.size
        values, counts = np.unique(expected, return_counts=True)
        classes.update(values[counts >= 0.01 * expected.size].tolist())
    assert len(classes) >= 3, "the test model must predict several classes to mean anything"
    assert agree / total >= FP16_MIN_AGREEMENT, agree / total


def test_to_fp16_cli(tmp_path, tiny_ckpt, capsys):
    fp32 = str(tmp_path / "fp32.onnx")
    export_onnx(tiny_ckpt, fp32, verify=False, **QUIET)
    out = str(tmp_path / "fp16.onnx")
    assert fp16_main(["--onnx", fp32, "--out", out]) == 0
    model = onnx.load(out)
    assert read_metadata(model).extra["precision"] == "fp16"
    assert len(cca_nodes(model)) == 2 and len(cca_functions(model)) == 1
    # converting an fp16 file again is refused, and nothing is written
    again = str(tmp_path / "again.onnx")
    assert fp16_main(["--onnx", out, "--out", again]) == 2
    assert "error:" in capsys.readouterr().err and not os.path.exists(again)


def test_fp16_trained_model_agrees_on_real_photos(tmp_path, photos):
    """The trained ccnet-demo model, FP16 file through the runtime vs PyTorch FP32, end to end
    (mmseg processing, labels at the photos' original size)."""
    from ccnet.demo import DEMO_CHECKPOINT
    if not os.path.exists(DEMO_CHECKPOINT):
        pytest.skip("ccnet-demo checkpoint missing")
    from ccnet.inference import predict
    from runtime import Segmenter

    model = load_model("ccnet-demo")
    path = str(tmp_path / "demo_fp16.onnx")
    export_onnx(model, path, fp16=True, verify_image=photos[0], **QUIET)
    segmenter = Segmenter(path)
    agree = total = 0
    for photo in photos:
        image = load_image(photo)
        expected = predict(model, image).labels
        agree += int((segmenter.segment(image) == expected).sum())
        total += expected.size
    assert agree / total >= 0.995, agree / total

"""The ONNX export: custom CCA node + function, plugin-only and native forms, ORT vs PyTorch,
metadata, bad input.  Each model is exported once per module (exports take ~10-30 s)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from ccnet.checkpoint import load_model  # noqa: E402
from ccnet.meta import METADATA_KEY  # noqa: E402
from cli.export import main  # noqa: E402
from export import cca_functions, cca_nodes, read_metadata  # noqa: E402
from export.graph import DEFAULT_OPSET  # noqa: E402
from export.to_onnx import export_onnx  # noqa: E402
from export.verify import MIN_AGREEMENT, photo_input, write_verified  # noqa: E402
from helpers import first_photo  # noqa: E402

CONTRACT_JSON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "plugins", "cca_op.json")
QUIET = dict(log=lambda *a: None)
# Small models match PyTorch far more tightly than the export's default tolerance.
MAX_REL_LOGIT_ERROR = 1e-4
PHOTO = first_photo()


def _run(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _torch(model, x):
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def _assert_close(model, path, x):
    expected, got = _torch(model, x), _run(path, x)
    assert got.shape == expected.shape
    err = np.abs(got - expected).max()
    assert err <= MAX_REL_LOGIT_ERROR * np.abs(expected).max(), err
    assert (got.argmax(1) == expected.argmax(1)).mean() >= MIN_AGREEMENT


def _inputs(meta, sizes):
    """Real-photo inputs of the given (N, H, W): copies alternate with flips."""
    out = []
    for n, h, w in sizes:
        x = photo_input(meta, PHOTO, (h, w))
        out.append(np.concatenate([x if i % 2 == 0 else x[..., ::-1] for i in range(n)]).copy())
    return out


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_model(tiny_ckpt):
    return load_model(tiny_ckpt)


@pytest.fixture(scope="module")
def tiny_plugin(tmp_path_factory, tiny_ckpt):
    path = str(tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    report = export_onnx(tiny_ckpt, path, verify_image=PHOTO, **QUIET)  # verification on
    return path, report


@pytest.fixture(scope="module")
def tiny_no_function(tmp_path_factory, tiny_model):
    path = str(tmp_path_factory.mktemp("onnx") / "tiny_plugin_only.onnx")
    export_onnx(tiny_model, path, function=False, verify=False, **QUIET)
    return path


@pytest.fixture(scope="module")
def tiny_native(tmp_path_factory, tiny_model):
    path = str(tmp_path_factory.mktemp("onnx") / "tiny_native.onnx")
    export_onnx(tiny_model, path, cca="native", verify=False, **QUIET)
    return path


@pytest.fixture(scope="module")
def r50_export(tmp_path_factory, r50_ckpt):
    path = str(tmp_path_factory.mktemp("onnx") / "r50.onnx")
    report = export_onnx(r50_ckpt, path, verify_sizes=[(1, 64, 128), (2, 96, 80)],
                         verify_image=PHOTO, **QUIET)
    return path, report, load_model(r50_ckpt)


# ----------------------------------------------------------------------------- node contract
def _check_cca_nodes(model, recurrence):
    spec = json.load(open(CONTRACT_JSON))
    nodes = cca_nodes(model)
    assert len(nodes) == recurrence
    for node in nodes:
        assert node.op_type == spec["op_type"] and node.domain == spec["domain"]
        assert len(node.input) == len(spec["inputs"]) == 3
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {f["name"]: f["value"].encode() for f in spec["fields"]}
    assert any(o.domain == spec["domain"] for o in model.opset_import)
    return nodes


def test_tiny_plugin_nodes_and_function(tiny_plugin, tiny_model):
    path, report = tiny_plugin
    model = onnx.load(path)
    _check_cca_nodes(model, tiny_model.config.recurrence)
    funcs = cca_functions(model)
    assert len(funcs) == 1 and len(model.functions) == 1
    opset = next(o.version for o in model.opset_import if o.domain == "")
    assert opset == DEFAULT_OPSET
    assert {o.version for o in funcs[0].opset_import if o.domain == ""} == {DEFAULT_OPSET}
    assert {n.op_type for n in funcs[0].node} >= {"MatMul", "Softmax", "Range", "Equal", "Where"}
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    # The exporter's own verification ran on a real photo and a second size with batch 2.
    shapes = [r["shape"] for r in report["verification"]]
    assert len(shapes) == 2 and shapes[1][0] == 2 and shapes[0][2:] != shapes[1][2:]
    onnx.checker.check_model(path, full_check=True)


def test_tiny_plugin_matches_torch_dynamic(tiny_plugin, tiny_model):
    path, _ = tiny_plugin
    for x in _inputs(tiny_model.meta, [(1, 256, 342), (2, 97, 130), (1, 64, 48)]):
        _assert_close(tiny_model, path, x)


def test_no_function_form(tiny_no_function, tiny_plugin, tiny_model):
    plugin_only, with_function = onnx.load(tiny_no_function), onnx.load(tiny_plugin[0])
    assert len(plugin_only.functions) == 0
    nodes = _check_cca_nodes(plugin_only, tiny_model.config.recurrence)
    assert [(n.input, n.output) for n in nodes] == \
        [(n.input, n.output) for n in cca_nodes(with_function)]
    assert read_metadata(plugin_only).extra["function"] is False
    with pytest.raises(Exception):  # only TensorRT with the plugin can run it
        ort.InferenceSession(tiny_no_function, providers=["CPUExecutionProvider"])


def test_native_form(tiny_native, tiny_model):
    model = onnx.load(tiny_native)
    assert not cca_nodes(model) and not model.functions
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    assert read_metadata(model).extra["cca"] == "native"
    for x in _inputs(tiny_model.meta, [(1, 256, 342), (2, 97, 130)]):
        _assert_close(tiny_model, tiny_native, x)


def test_r50_export(r50_export):
    path, report, model = r50_export
    onnx_model = onnx.load(path, load_external_data=False)
    _check_cca_nodes(onnx_model, model.config.recurrence)
    assert len(cca_functions(onnx_model)) == 1
    assert [r["shape"] for r in report["verification"]] == [[1, 3, 64, 128], [2, 3, 96, 80]]
    for x in _inputs(model.meta, [(1, 64, 128), (2, 96, 80)]):
        _assert_close(model, path, x)


def test_labels_output_fixed_dims(tmp_path, tiny_model):
    path = str(tmp_path / "labels.onnx")
    export_onnx(tiny_model, path, output="labels", batch=1, height=64, width=96,
                verify_image=PHOTO, **QUIET)
    model = onnx.load(path)
    out = model.graph.output[0]
    assert out.name == "labels" and out.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 64, 96]
    (x,) = _inputs(tiny_model.meta, [(1, 64, 96)])
    labels = _run(path, x)
    assert labels.dtype == np.int64
    assert (labels == _torch(tiny_model, x).argmax(1)).mean() >= MIN_AGREEMENT
    contract_ = read_metadata(model).extra["contract"]
    assert contract_["input"]["shape"] == [1, 3, 64, 96]
    assert contract_["output"] == {"name": "labels", "dtype": "int64", "shape": [1, 64, 96]}


# ----------------------------------------------------------------------------- metadata
def test_metadata_round_trip(tiny_plugin, tiny_model):
    import ccnet

    path, _ = tiny_plugin
    meta = read_metadata(path)
    assert meta.replace(extra={}) == tiny_model.meta.replace(extra={})
    extra = meta.extra
    assert extra["toolkit_version"] == ccnet.__version__
    assert extra["cca"] == "plugin" and extra["function"] is True and extra["precision"] == "fp32"
    assert extra["contract"]["input"] == {"name": "input", "dtype": "float32", "layout": "NCHW",
                                          "normalized_rgb": True,
                                          "shape": ["batch", 3, "height", "width"]}
    assert extra["contract"]["output"]["shape"] == ["batch", 21, "height", "width"]
    # The runtime reads the same key through onnxruntime alone.
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    text = session.get_modelmeta().custom_metadata_map[METADATA_KEY]
    assert json.loads(text)["classes"] == list(tiny_model.meta.classes)


def test_read_metadata_without_ours(tmp_path):
    from ccnet.errors import CCNetError

    g = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", 1, [1])],
                               [onnx.helper.make_tensor_value_info("y", 1, [1])])
    path = str(tmp_path / "plain.onnx")
    onnx.save(onnx.helper.make_model(g, ir_version=10), path)
    with pytest.raises(CCNetError, match="no ccnet metadata"):
        read_metadata(path)


# ----------------------------------------------------------------------------- bad input
def _cli_fails(capsys, tmp_path, argv, expect):
    before = set(os.listdir(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and expect in err, err
    assert set(os.listdir(tmp_path)) == before  # no file (and no temp file) left


def test_bad_checkpoint(capsys, tmp_path):
    out = str(tmp_path / "m.onnx")
    _cli_fails(capsys, tmp_path, ["--ckpt", str(tmp_path / "missing.pth"), "--out", out],
               "checkpoint not found")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    _cli_fails(capsys, tmp_path, ["--ckpt", str(corrupt), "--out", out], "corrupt.pth")


@pytest.mark.parametrize("extra, expect", [
    (["--opset", "13"], "opset 13 is too low"),
    (["--height", "8"], "smaller than the network accepts"),
    (["--width", "0"], "smaller than the network accepts"),
    (["--batch", "0"], "--batch 0"),
    (["--no-function", "--cca", "native"], "--no-function"),
])
def test_bad_options(capsys, tmp_path, tiny_ckpt, extra, expect):
    _cli_fails(capsys, tmp_path, ["--ckpt", tiny_ckpt, "--out", str(tmp_path / "m.onnx")] + extra,
               expect)


def test_unwritable_output(capsys, tmp_path, tiny_ckpt):
    _cli_fails(capsys, tmp_path, ["--ckpt", tiny_ckpt, "--out",
                                  str(tmp_path / "no_such_dir" / "m.onnx")], "does not exist")
    _cli_fails(capsys, tmp_path, ["--ckpt", tiny_ckpt, "--out", str(tmp_path)], "is a folder")


def test_failed_verification_leaves_no_file(tmp_path):
    from ccnet.errors import CCNetError

    g = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", 1, [1])],
                               [onnx.helper.make_tensor_value_info("y", 1, [1])])
    model = onnx.helper.make_model(g, ir_version=10)

    def failing(_path):
        raise CCNetError("verification failed: argmax agreement 1% < 99.99%")

    with pytest.raises(CCNetError, match="verification failed"):
        write_verified(model, str(tmp_path / "m.onnx"), failing, log=lambda *a: None)
    assert os.listdir(tmp_path) == []


def test_script_form_runs_the_export_command(tmp_path):
    """``python export/to_onnx.py --ckpt ...`` (the README's script form) is the same command:
    here its one-line error and exit status for a missing checkpoint, from another folder."""
    import subprocess
    import sys

    from helpers import REPO

    proc = subprocess.run([sys.executable, os.path.join(REPO, "export", "to_onnx.py"), "--ckpt",
                           str(tmp_path / "missing.pth"), "--out", str(tmp_path / "m.onnx")],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: checkpoint not found: {tmp_path / 'missing.pth'} (give a file, URL or zoo name)"]
    assert not (tmp_path / "m.onnx").exists()

"""`ccnet triton-repo`: every written config.pbtxt parses with Triton's own ModelConfig schema
(tritonclient's model_config_pb2); refusals are one line and leave nothing behind; the
repository's Python-backend model runs in a real Triton server and answers like Segmenter."""
from __future__ import annotations

import glob
import os
import shutil

import cv2
import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="pip install -e '.[serve]'")

from ccnet.errors import CCNetError  # noqa: E402
from serving_helpers import LOOPBACK, free_ports  # noqa: E402

from runtime.engine_info import EngineInfo, write_engine_info  # noqa: E402
from runtime.triton_repo import model_config_pb2, parse_config, write_triton_repo  # noqa: E402


@pytest.fixture(scope="module")
def demo_meta(demo_onnx):
    from export.metadata import read_metadata

    return read_metadata(demo_onnx)


def _configs(repo):
    """Every config.pbtxt of a repository, parsed with Triton's schema: {model: ModelConfig}."""
    configs = {}
    for path in glob.glob(os.path.join(repo, "*", "config.pbtxt")):
        with open(path, encoding="utf-8") as f:
            config = parse_config(f.read(), path)
        assert config.name == os.path.basename(os.path.dirname(path))
        configs[config.name] = config
    return configs


def _engine(tmp_path, meta, profile_batch=(1, 4), cca="plugin", output_kind="logits"):
    """An engine file with the side file ccnet-build writes.  The engine bytes are never
    opened by the repository writer (only TensorRT could), so any bytes stand in for them."""
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized TensorRT engine")
    low, high = profile_batch
    write_engine_info(str(engine), EngineInfo(
        tensorrt_version="10.13.0", meta=meta.to_dict(), precision="fp16", cca=cca,
        output_kind=output_kind, plugin={"library": "libccnet_plugins.so"},
        profiles=[{"input": {"min": [low, 3, 128, 128], "opt": [1, 3, 256, 512],
                             "max": [high, 3, 512, 1024]}}]))
    return str(engine)


def test_onnx_repository_follows_triton_schema(demo_onnx, demo_meta, tmp_path):
    repo = tmp_path / "repo"
    report = write_triton_repo(demo_onnx, str(repo), name="seg", max_batch_size=8, instances=2)
    configs = _configs(str(repo))
    assert sorted(configs) == ["seg", "seg_network"] == sorted(report.models)
    pb2 = model_config_pb2()
    network, pipeline = configs["seg_network"], configs["seg"]
    assert network.platform == "onnxruntime_onnx" and network.max_batch_size == 8
    assert [(t.name, pb2.DataType.Name(t.data_type), list(t.dims)) for t in network.input] == \
        [("input", "TYPE_FP32", [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in network.output] == [("logits", [8, -1, -1])]
    assert pipeline.backend == "python" and pipeline.max_batch_size == 8
    assert [(t.name, pb2.DataType.Name(t.data_type), list(t.dims), t.optional)
            for t in pipeline.input] == [("image", "TYPE_UINT8", [-1, -1, 3], True),
                                         ("encoded", "TYPE_STRING", [1], True)]
    assert [(t.name, pb2.DataType.Name(t.data_type)) for t in pipeline.output] == \
        [("labels", "TYPE_UINT8")]
    assert pipeline.instance_group[0].count == 2 and pipeline.HasField("dynamic_batching")
    params = {k: v.string_value for k, v in pipeline.parameters.items()}
    assert params["network_model"] == "seg_network" and params["ccnet_meta"] == demo_meta.to_json()
    with open(demo_onnx, "rb") as a, open(repo / "seg_network" / "1" / "model.onnx", "rb") as b:
        assert a.read() == b.read()
    assert "runtime.triton_python_model import TritonPythonModel" in \
        (repo / "seg" / "1" / "model.py").read_text()
    assert not [p for p in os.listdir(repo) if p.startswith(".tmp")]


def test_engine_repository_loads_the_plugin(demo_meta, tmp_path):
    plugin = tmp_path / "libccnet_plugins.so"
    plugin.write_bytes(b"\x7fELF plugin")
    engine = _engine(tmp_path, demo_meta, profile_batch=(1, 2))
    repo = tmp_path / "repo"
    report = write_triton_repo(engine, str(repo), max_batch_size=4, plugin=str(plugin))
    configs = _configs(str(repo))
    network = configs["ccnet_network"]
    assert network.platform == "tensorrt_plan" and network.default_model_filename == "model.plan"
    assert network.max_batch_size == 2 and report.network_batch == 2  # the profile's max batch
    assert list(network.input[0].dims) == [3, -1, -1]
    assert network.instance_group[0].kind == model_config_pb2().ModelInstanceGroup.Kind.KIND_GPU
    assert configs["ccnet"].max_batch_size == 4
    text = (repo / "ccnet_network" / "config.pbtxt").read_text()
    assert text.startswith("# ") and "--backend-config=tensorrt,plugins=" in text
    readme = (repo / "ccnet" / "README.md").read_text()
    assert "--backend-config=tensorrt,plugins=/models/ccnet_network/libccnet_plugins.so" in readme
    assert "LD_PRELOAD=/models/ccnet_network/libccnet_plugins.so" in readme
    assert (repo / "ccnet_network" / "libccnet_plugins.so").read_bytes() == plugin.read_bytes()
    assert (repo / "ccnet_network" / "1" / "model.plan").is_file()
    assert any("lowered from 4 to 2" in note for note in report.notes)


def test_fixed_batch_one_engine_has_no_batch_dimension(demo_meta, tmp_path):
    engine = _engine(tmp_path, demo_meta, profile_batch=(1, 1))
    write_triton_repo(engine, str(tmp_path / "repo"), max_batch_size=4)
    network = _configs(str(tmp_path / "repo"))["ccnet_network"]
    assert network.max_batch_size == 0 and list(network.input[0].dims) == [1, 3, -1, -1]
    assert list(network.output[0].dims) == [1, 8, -1, -1]


def test_models_that_cannot_be_expressed_are_refused(demo_onnx, demo_meta, tmp_path):
    import onnx

    fixed = onnx.load(demo_onnx)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    onnx.save(fixed, str(tmp_path / "batch4.onnx"))
    bare = onnx.load(demo_onnx)
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    (tmp_path / "model.pth").write_bytes(b"")
    profile_from_two = tmp_path / "two"
    profile_from_two.mkdir()
    labels_out = tmp_path / "labels"
    labels_out.mkdir()
    cases = [
        (str(tmp_path / "batch4.onnx"), {}, "takes a fixed batch of 4"),
        (str(tmp_path / "bare.onnx"), {}, "carries no ccnet metadata"),
        (str(tmp_path / "model.pth"), {}, "needs an .onnx (onnxruntime_onnx) or .engine"),
        (_engine(profile_from_two, demo_meta, profile_batch=(2, 4)), {}, "starts at batch 2"),
        (_engine(labels_out, demo_meta, output_kind="labels"), {}, "outputs labels"),
        (demo_onnx, {"name": "bad name"}, "is not usable by Triton"),
        (demo_onnx, {"plugin": str(tmp_path / "model.pth")}, "--plugin is for TensorRT engines"),
        (str(tmp_path / "missing.onnx"), {}, "model file not found"),
    ]
    repo = tmp_path / "repo"
    for model, options, reason in cases:
        with pytest.raises(CCNetError) as info:
            write_triton_repo(model, str(repo), **options)
        assert reason in str(info.value) and "\n" not in str(info.value), str(info.value)
        assert not repo.exists() or not os.listdir(repo), f"{reason}: left {os.listdir(repo)}"


def test_missing_packages_get_their_install_hint(demo_onnx, tmp_path, monkeypatch):
    import sys

    # A module set to None in sys.modules fails to import, as a package never installed does.
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    monkeypatch.setitem(sys.modules, "google.protobuf", None)
    with pytest.raises(CCNetError, match=r"ccnet-deploy\[serve\]"):
        parse_config("")
    monkeypatch.setitem(sys.modules, "onnx", None)
    for name in [n for n in sys.modules if n == "export" or n.startswith("export.")]:
        monkeypatch.delitem(sys.modules, name)  # imported again, without onnx
    with pytest.raises(CCNetError, match=r"needs the onnx package.*ccnet-deploy\[export\]"):
        write_triton_repo(demo_onnx, str(tmp_path / "repo"))
    assert not (tmp_path / "repo").exists() or not os.listdir(tmp_path / "repo")


def test_existing_models_are_kept(demo_onnx, tmp_path, capsys):
    from cli.main import main

    repo = tmp_path / "repo"
    (repo / "ccnet_network").mkdir(parents=True)
    (repo / "ccnet_network" / "keep.txt").write_text("mine")
    assert main(["triton-repo", "--model", demo_onnx, "--repo", str(repo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "already has model folder(s) ccnet_network" in err
    assert sorted(os.listdir(repo)) == ["ccnet_network"]
    assert (repo / "ccnet_network" / "keep.txt").read_text() == "mine"
    assert main(["triton-repo", "--model", demo_onnx, "--repo", str(repo), "--name", "b"]) == 0
    assert sorted(os.listdir(repo)) == ["b", "b_network", "ccnet_network"]
    assert "wrote Triton repository" in capsys.readouterr().out


@pytest.fixture
def repository_in_triton(demo_onnx, tmp_path):
    """Triton (PyTriton's server binary) with the repository's Python-backend model, loaded
    from the written folder as the NGC server would.  PyTriton's server has only the Python
    backend, so ``ccnet_network`` is bound through PyTriton to ONNX Runtime with the tensors of
    the written network config, in place of Triton's onnxruntime backend."""
    pytest.importorskip("pytriton", reason="pip install -e '.[serve]'")
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from runtime.runners import OrtRunner
    from runtime.serving import interpreter_libpython_first

    written = tmp_path / "written"
    write_triton_repo(demo_onnx, str(written), max_batch_size=4)
    network = _configs(str(written))["ccnet_network"]
    served = tmp_path / "served"
    served.mkdir()
    shutil.copytree(written / "ccnet", served / "ccnet")
    runner = OrtRunner(demo_onnx, device="cpu")
    http_port, grpc_port, metrics_port = free_ports(3)
    triton = Triton(config=TritonConfig(
        model_repository=served, http_address=LOOPBACK, http_port=http_port,
        grpc_address=LOOPBACK, grpc_port=grpc_port, metrics_address=LOOPBACK,
        metrics_port=metrics_port, exit_timeout_secs=10))
    try:
        triton.bind("ccnet_network", lambda requests: [{"logits": runner.infer(r.data["input"])}
                                                      for r in requests],
                    inputs=[Tensor(name="input", dtype=np.float32,
                                   shape=tuple(network.input[0].dims))],
                    outputs=[Tensor(name="logits", dtype=np.float32,
                                    shape=tuple(network.output[0].dims))],
                    config=ModelConfig(max_batch_size=network.max_batch_size,
                                       batcher=DynamicBatcher()))
        with interpreter_libpython_first():
            triton.run()
        yield f"{LOOPBACK}:{http_port}"
    finally:
        triton.stop()
        runner.close()


def test_repository_python_model_answers_like_segmenter(repository_in_triton, demo_onnx,
                                                        photos):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    from runtime import Segmenter

    client = http.InferenceServerClient(repository_in_triton)
    try:
        with Segmenter(demo_onnx, device="cpu") as segmenter:
            for path in (photos[0], photos[-1]):
                image = cv2.imread(path)
                pixels = http.InferInput("image", [1, *image.shape], "UINT8")
                pixels.set_data_from_numpy(image[None])
                with open(path, "rb") as f:
                    data = f.read()
                encoded = http.InferInput("encoded", [1, 1], "BYTES")
                encoded.set_data_from_numpy(np.array([[data]], dtype=object))
                for tensor in (pixels, encoded):
                    labels = client.infer("ccnet", [tensor]).as_numpy("labels")
                    assert labels.dtype == np.uint8
                    np.testing.assert_array_equal(labels[0], segmenter.segment(image))
        empty = http.InferInput("encoded", [1, 1], "BYTES")
        empty.set_data_from_numpy(np.array([[b""]], dtype=object))
        with pytest.raises(InferenceServerException) as info:
            client.infer("ccnet", [empty])
        assert info.value.message() == "'encoded' is empty: send the bytes of a JPEG or PNG file"
        assert client.is_model_ready("ccnet")
    finally:
        client.close()

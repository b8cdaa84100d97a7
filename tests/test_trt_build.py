"""ccnet build's control flow on polygraphy's loaders, driven by the TensorRT doubles of
tests/trt_doubles.py (each follows documented TensorRT behaviour; none computes outputs).
These prove our logic, not TensorRT's: tests/test_tensorrt.py runs the real thing."""
from __future__ import annotations

import json
import os

import pytest

from ccnet.errors import CCNetError

from trt_doubles import install

PLUGIN = ("CrissCrossAttention", "1", "ccnet")
RANGE = dict(min_shapes="input:1x3x64x64", opt_shapes="input:1x3x64x96",
             max_shapes="input:1x3x128x128")


@pytest.fixture
def doubles(monkeypatch, request):
    return install(monkeypatch, request)


@pytest.fixture
def library(tmp_path, doubles):
    """A file standing for libccnet_plugins.so; the registry double knows what it registers."""
    trt, _ = doubles
    path = tmp_path / "libccnet_plugins.so"
    path.write_bytes(b"stands for the plugin library")
    trt.registry.libraries[str(path)] = [PLUGIN]
    return str(path)


@pytest.fixture(scope="module")
def plugin_form_onnx(tiny_onnx, tmp_path_factory):
    """The tiny model without its CCA function (only the plugin runs it), CCA nodes renamed:
    ONNX node names, hence TensorRT layer names, are whatever the exporter chose."""
    import onnx

    model = onnx.load(tiny_onnx)
    del model.functions[:]
    for i, node in enumerate(n for n in model.graph.node if n.domain == "ccnet"):
        node.name = f"node_{i}"
    path = tmp_path_factory.mktemp("plugin_form") / "tiny_plugin.onnx"
    onnx.save(model, str(path))
    return str(path)


def _build(onnx_path, tmp_path, **options):
    from runtime.trt_build import build_engine

    lines = []
    info = build_engine(onnx_path, str(tmp_path / "tiny.engine"), log=lines.append, **options)
    return info, lines


# ----------------------------------------------------------------------------- defect 1
def test_second_plugin_library_load_in_a_process_succeeds(plugin_form_onnx, tmp_path, library,
                                                           doubles):
    """load_library returns None once the plugin is registered; two builds in one process."""
    trt, _ = doubles
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        _build(plugin_form_onnx, folder, plugins=library, **RANGE)
        assert (folder / "tiny.engine").exists()
    assert trt.registry.load_calls == [library]  # loaded once, then found by get_creator


def test_plugin_library_that_registers_nothing_is_an_error(doubles, tmp_path):
    from runtime.trt_common import load_plugin_library

    trt, _ = doubles
    other = tmp_path / "libother.so"
    other.write_bytes(b"")
    trt.registry.libraries[str(other)] = [("SomethingElse", "1", "")]
    with pytest.raises(CCNetError, match="could not load plugin library"):
        load_plugin_library(trt.registry, str(other))
    trt.registry.libraries.clear()  # a library TensorRT cannot load at all
    with pytest.raises(CCNetError, match="could not load plugin library"):
        load_plugin_library(trt.registry, str(other))


# ----------------------------------------------------------------------------- defect 2
def test_fixed_shape_build_of_dynamic_onnx_has_a_profile(plugin_form_onnx, tmp_path, library,
                                                         doubles):
    """--optShapes alone on the dynamic N/H/W export: min = opt = max, and still a profile."""
    trt, _ = doubles
    info, lines = _build(plugin_form_onnx, tmp_path, plugins=library,
                         opt_shapes="input:1x3x64x96")
    (_, network, config), = [c for c in trt.calls if c[0] == "build"]
    assert [p.shapes for p in config.profiles] == [{"input": ((1, 3, 64, 96),) * 3}]
    assert network.get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert info.profiles == [{"input": {"min": [1, 3, 64, 96], "opt": [1, 3, 64, 96],
                                        "max": [1, 3, 64, 96]}}]
    assert (tmp_path / "tiny.engine").read_bytes() == b"serialized-engine"
    side = json.loads((tmp_path / "tiny.engine.json").read_text())
    assert side["plugin"]["library"] == library and side["meta"]["name"] == "tiny-r18-voc"
    trtexec = next(line for line in lines if line.startswith("the same engine with trtexec"))
    for flag in ("--minShapes=input:1x3x64x96", "--optShapes=input:1x3x64x96",
                 "--maxShapes=input:1x3x64x96", f"--dynamicPlugins={library}"):
        assert flag in trtexec


def test_trtexec_line_carries_shapes_when_min_equals_max():
    from runtime.trt_build import trtexec_command

    fixed = {"input": {"min": [1, 3, 512, 512], "opt": [1, 3, 512, 512], "max": [1, 3, 512, 512]}}
    cmd = trtexec_command("m.onnx", "m.engine", fixed, memory_pools={"workspace": 4096 << 20})
    assert "--optShapes=input:1x3x512x512" in cmd and "--minShapes=input:1x3x512x512" in cmd
    assert "--memPoolSize=workspace:4G" in cmd and "--stronglyTyped" in cmd
    assert "Shapes" not in trtexec_command("m.onnx", "m.engine", {})  # static ONNX: no flags


def test_dynamic_input_without_shapes_names_the_flags(plugin_form_onnx, tmp_path, library):
    with pytest.raises(CCNetError, match=r"dynamic dims \?x3x\?x\?: give --minShapes"):
        _build(plugin_form_onnx, tmp_path, plugins=library)
    assert os.listdir(tmp_path) == ["libccnet_plugins.so"]  # nothing written


# ----------------------------------------------------------------------------- defect 4
def test_plugin_layers_are_found_by_their_plugin_not_their_name(plugin_form_onnx, tmp_path,
                                                                library):
    """Layers named node_0/node_1: only the downcast + CORE capability interface finds them."""
    info, lines = _build(plugin_form_onnx, tmp_path, plugins=library, **RANGE)
    assert info.cca == "plugin" and info.plugin["namespace"] == "ccnet"
    assert "CCA: 2 CrissCrossAttention node(s) run as the TensorRT plugin" in lines


def test_classify_ignores_other_plugins_and_names(doubles):
    from runtime.trt_network import classify_cca
    from trt_doubles import _ILayer, _Network, _PluginV3

    trt, _ = doubles
    network = _Network(0)
    plugin_v3 = trt.LayerType.PLUGIN_V3
    network.layers = [
        _ILayer("/cca/CrissCrossAttention", plugin_v3, [], _PluginV3(trt, ("Other", "1", ""))),
        _ILayer("x", plugin_v3, [], _PluginV3(trt, ("CrissCrossAttention", "1", "elsewhere"))),
        _ILayer("/cca/CrissCrossAttention/MatMul", trt.LayerType.MATRIX_MULTIPLY, []),
        _ILayer("y", plugin_v3, [], _PluginV3(trt, PLUGIN))]
    assert classify_cca(trt, network, 2, PLUGIN) == ("partial", 1)
    assert classify_cca(trt, network, 1, PLUGIN) == ("plugin", 1)


# ----------------------------------------------------------------------------- defect 8
def test_function_form_build_sets_no_plugin_override(tiny_onnx, tmp_path, library, doubles):
    """Nodes carry plugin_namespace: ENABLE_PLUGIN_OVERRIDE stays off.  This parser double
    dispatches like onnx-tensorrt (local function before plugin), so the nodes are inlined,
    and the build says why."""
    trt, _ = doubles
    info, lines = _build(tiny_onnx, tmp_path, plugins=library, **RANGE)
    assert all(parser.flags == 0 for parser in trt.parsers)
    assert info.cca == "inlined" and info.plugin is None
    assert any("prefers the model-local function" in line for line in lines)


def test_plugin_form_without_library_is_refused_before_parsing(plugin_form_onnx, tmp_path,
                                                               monkeypatch, doubles):
    trt, _ = doubles
    monkeypatch.setenv("CCNET_PLUGIN_LIB", str(tmp_path / "missing.so"))
    with pytest.raises(CCNetError, match="CCNET_PLUGIN_LIB"):
        _build(plugin_form_onnx, tmp_path, opt_shapes="input:1x3x64x96")
    assert not trt.parsers


# ----------------------------------------------------------------------------- options
def test_config_carries_pools_level_and_version_compatibility(plugin_form_onnx, tmp_path,
                                                              library, doubles):
    trt, _ = doubles
    _build(plugin_form_onnx, tmp_path, plugins=library, **RANGE,
           memory_pools={"workspace": 4096 << 20}, optimization_level=2, version_compatible=True)
    (_, _, config), = [c for c in trt.calls if c[0] == "build"]
    assert config.pools == {"WORKSPACE": 4096 << 20}
    assert config.builder_optimization_level == 2
    assert {"VERSION_COMPATIBLE", "TF32"} <= config.flags
    assert config.plugins_to_serialize == [library]
    assert config.profiling_verbosity is trt.ProfilingVerbosity.DETAILED
    assert config.profiles[0].shapes["input"] == ((1, 3, 64, 64), (1, 3, 64, 96), (1, 3, 128, 128))
    side = json.loads((tmp_path / "tiny.engine.json").read_text())
    assert side["version_compatible"] is True


def test_mem_pool_size_and_workspace_alias():
    from cli.build import parse_pool_sizes
    from runtime.trt_build import BuildOptions

    assert parse_pool_sizes("workspace:4096M") == {"workspace": 4096 << 20}
    assert parse_pool_sizes("workspace:4G,tacticSharedMem:512K") == {
        "workspace": 4 << 30, "tacticSharedMem": 512 << 10}
    assert parse_pool_sizes("workspace:0.5") == {"workspace": 1 << 19}  # MiB by default
    with pytest.raises(CCNetError, match="--memPoolSize=workspace:4096M"):
        parse_pool_sizes("workspace")
    assert BuildOptions(workspace_mib=4096).pools() == {"workspace": 4096 << 20}
    with pytest.raises(CCNetError, match="unknown memory pool 'vram'"):
        BuildOptions(memory_pools={"vram": 1}).check()
    with pytest.raises(CCNetError, match="must be 0..5, got 7"):
        BuildOptions(optimization_level=7).check()


@pytest.mark.parametrize("flag", ["--fp16", "--int8"])
def test_precision_flags_get_the_one_line_answer(flag, tiny_onnx, tmp_path, capsys):
    from cli.build import main

    rc = main(["--onnx", tiny_onnx, "--saveEngine", str(tmp_path / "m.engine"), flag])
    err = capsys.readouterr().err
    assert rc == 2 and err == ("error: precision comes from the ONNX: use ccnet fp16 / "
                               "ccnet calibrate\n")
    assert not os.listdir(tmp_path)


def test_cli_build_with_trtexec_flags(plugin_form_onnx, tmp_path, library, doubles, capsys):
    from cli.build import main

    trt, _ = doubles
    engine = tmp_path / "m.engine"
    rc = main(["--onnx", plugin_form_onnx, "--saveEngine", str(engine), "--stronglyTyped",
               "--optShapes=input:1x3x64x96", "--memPoolSize=workspace:2048M",
               "--dynamicPlugins", library, "--builderOptimizationLevel", "3"])
    assert rc == 0, capsys.readouterr().err
    assert f"wrote {engine}" in capsys.readouterr().out
    (_, _, config), = [c for c in trt.calls if c[0] == "build"]
    assert config.pools == {"WORKSPACE": 2048 << 20}


def test_info_only_build_over_a_stale_engine_records_no_digest(tiny_onnx, tmp_path, library):
    """ccnet build --infoOnly next to an old engine: the side file describes the engine still to
    be built, so it must not carry the old engine's digest (which would refuse the new one)."""
    from runtime.engine_info import read_engine_info
    from runtime.trt_build import build_engine

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"an engine built earlier")
    build_engine(tiny_onnx, str(engine), info_only=True, log=lambda line: None,
                 plugins=library, opt_shapes="input:1x3x64x96")
    assert engine.read_bytes() == b"an engine built earlier"
    assert read_engine_info(str(engine), check_digest=False).engine_sha256 is None
    engine.write_bytes(b"built later by trtexec")
    assert read_engine_info(str(engine)).engine_sha256 is None

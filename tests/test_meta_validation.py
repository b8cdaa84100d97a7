"""One ModelMeta validation wherever metadata enters (checkpoint config, ONNX metadata, engine
side file, a user's ``meta=``), and the resource limits on classes, recurrence, slide windows
and widths: every bad value is a one-line CCNetError before any work."""
from __future__ import annotations

import dataclasses
import json

import pytest

from ccnet.errors import CCNetError
from ccnet.meta import LIMITS, Limits, ModelMeta
from ccnet.zoo import ZOO, custom_config, get_config, validate_config


def _good() -> dict:
    return get_config("ccnet_r50-d8_4xb2-40k_cityscapes-769x769").meta().to_dict()


def _one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text and text
    return text


def test_every_zoo_config_and_its_meta_validate():
    for config in ZOO.values():
        validate_config(config)
        meta = config.meta()
        assert ModelMeta.from_json(meta.to_json()) == meta


BAD_META = [
    ("classes", 42, "classes"), ("classes", [], "classes"), ("classes", [1, 2], "strings"),
    ("palette", "red", "palette"), ("palette", [[0, 0, 0]], "palette"),
    ("test_scale", [0, 0], "test_scale"), ("test_scale", ["a", "b"], "test_scale"),
    ("test_scale", [10 ** 9, 10 ** 9], "test_scale"), ("test_scale", None, "test_scale"),
    ("mode", "tile", "mode"), ("stride", [0, 0], "stride"), ("stride", [-1, 513], "stride"),
    ("stride", [800, 800], "at most the crop"), ("stride", [1, 1], "slide windows"),
    ("crop_size", [4, 4], "crop_size"), ("crop_size", None, "crop_size and stride"),
    ("align_corners", "yes", "align_corners"), ("mean", [float("nan"), 0, 0], "mean"),
    ("mean", "imagenet", "mean"), ("std", [0, 1, 1], "std"), ("std", [1, 1], "std"),
    ("bgr_to_rgb", 1, "bgr_to_rgb"), ("ignore_index", -1, "ignore_index"),
    ("name", 42, "name"), ("extra", [1], "extra"), ("num_classes", 18, "num_classes"),
]


@pytest.mark.parametrize("key,value,match", BAD_META)
def test_bad_metadata_values_are_one_line_errors(key, value, match):
    d = _good()
    d[key] = value
    with pytest.raises(CCNetError, match=match) as e:
        ModelMeta.from_dict(d)
    _one_line(e)


@pytest.mark.parametrize("text,match", [
    ("42", "not an object"), ("[1]", "not an object"), ("null", "not an object"),
    ("{", "not valid JSON"), ("[" * 100000 + "]" * 100000, "not valid JSON"),
    ('{"name": "x"}', "lacks"),
])
def test_metadata_documents_that_are_not_metadata(text, match):
    with pytest.raises(CCNetError, match=match) as e:
        ModelMeta.from_json(text)
    _one_line(e)


@pytest.mark.parametrize("extra,match", [
    ({"precision": "fp8"}, "precision"), ({"contract": [1]}, "contract"),
    ({"contract": {"input": {"shape": [1, 3]}}}, "shape"),
    ({"contract": {"output": {"shape": [1, 0, 4, 4]}}}, "shape"),
    ({"sha256": "abc"}, "sha256"),
])
def test_bad_extra_fields(extra, match):
    d = _good()
    d["extra"] = extra
    with pytest.raises(CCNetError, match=match):
        ModelMeta.from_dict(d)


def test_replace_and_user_meta_are_validated_too():
    meta = ModelMeta.from_dict(_good())
    with pytest.raises(CCNetError, match="stride"):
        meta.replace(stride=(0, 0))
    meta.stride = (0, 0)  # changed after construction: validate() catches it again
    with pytest.raises(CCNetError, match="stride"):
        meta.validate()


def test_slide_window_count_is_bounded():
    d = _good()
    d.update(crop_size=[16, 16], stride=[16, 16])  # 129 × 129 windows at 2049×1025
    with pytest.raises(CCNetError, match=r"slide windows.*CCNET_MAX_SLIDE_WINDOWS"):
        ModelMeta.from_dict(d)


@pytest.mark.parametrize("changes,match", [
    (dict(num_classes=10 ** 7), "CCNET_MAX_CLASSES"), (dict(num_classes=0), "num_classes"),
    (dict(recurrence=0), "without attention"), (dict(recurrence=10 ** 9), "recurrence"),
    (dict(recurrence="2"), "recurrence"), (dict(depth=7), "depth"), (dict(depth=[50]), "depth"),
    (dict(channels=4), "channels"), (dict(channels=10 ** 9), "CCNET_MAX_CHANNELS"),
    (dict(base_channels=10 ** 5), "channels"), (dict(aux_channels=-1), "aux_channels"),
    (dict(classes=42), "classes"), (dict(classes=("a", "b")), "classes"),
    (dict(test_scale=(0, 0)), "test_scale"), (dict(name=None), "name"),
])
def test_config_limits(changes, match):
    config = dataclasses.replace(get_config("ccnet_r50-d8_4xb4-80k_ade20k-512x512"), **changes)
    with pytest.raises(CCNetError, match=match) as e:
        validate_config(config)
    _one_line(e)


def test_custom_config_refuses_recurrence_zero():
    with pytest.raises(CCNetError, match="recurrence"):
        custom_config("x", depth=18, recurrence=0)


def test_limits_are_configurable(monkeypatch):
    assert Limits.from_env({"CCNET_MAX_CLASSES": "20"}).max_classes == 20
    with pytest.raises(CCNetError, match="CCNET_MAX_CLASSES"):
        Limits.from_env({"CCNET_MAX_CLASSES": "many"})
    monkeypatch.setattr(LIMITS, "max_classes", 100)
    with pytest.raises(CCNetError, match=r"150 classes .*limit 100"):
        get_config("ccnet_r50-d8_4xb4-80k_ade20k-512x512").meta()
    monkeypatch.setattr(LIMITS, "max_classes", 4096)
    get_config("ccnet_r50-d8_4xb4-80k_ade20k-512x512").meta()


def test_engine_side_file_metadata_is_validated(tmp_path):
    from runtime.engine_info import EngineInfo, read_engine_info

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    bad = _good()
    bad["stride"] = [0, 0]
    (tmp_path / "m.engine.json").write_text(json.dumps(
        {"tensorrt_version": "10.14.1", "meta": bad}))
    info = read_engine_info(str(engine))
    with pytest.raises(CCNetError, match="stride"):
        info.model_meta()
    assert EngineInfo(tensorrt_version="10", meta=_good()).model_meta().num_classes == 19
    with pytest.raises(CCNetError, match="not an object"):
        EngineInfo(tensorrt_version="10", meta=42).model_meta()


def test_segmenter_refuses_bad_user_meta(tiny_onnx):
    from runtime import Segmenter

    with pytest.raises(CCNetError, match="ModelMeta"):
        Segmenter(tiny_onnx, meta={"classes": []})
    meta = ModelMeta.from_dict(_good())
    meta.test_scale = (0, 0)
    with pytest.raises(CCNetError, match="test_scale"):
        Segmenter(tiny_onnx, meta=meta)


def test_checkpoint_meta_config_is_validated(tmp_path, tiny_ckpt):
    """The config a checkpoint carries (meta['ccnet_config']) goes through validate_config
    before any model is built; slide stride 0 would divide by zero at inference."""
    import torch

    from ccnet.checkpoint import load_model

    for changes, match in [(dict(num_classes=10 ** 7), "CCNET_MAX_CLASSES"),
                           (dict(recurrence=10 ** 9), "recurrence"),
                           (dict(mode="slide", crop_size=[32, 32], stride=[0, 0]), "stride"),
                           (dict(test_scale="big"), "test_scale")]:
        raw = torch.load(tiny_ckpt, weights_only=True)
        raw["meta"]["ccnet_config"].update(changes)
        path = tmp_path / "m.pth"
        torch.save(raw, path)
        with pytest.raises(CCNetError, match=match):
            load_model(str(path))


"""Checksums written with every file so a damaged copy is refused before it runs: the ONNX
content checksum in the metadata (checked by the ONNX Runtime runner and the FP16 converter) and
the engine digest in the engine side file (checked before TensorRT deserialises)."""
from __future__ import annotations

import json

import onnx
import pytest

from ccnet.errors import CCNetError
from ccnet.meta import METADATA_KEY
from export.metadata import CHECKSUM_KEY, check_checksum, read_metadata, verify_file


@pytest.fixture(scope="module")
def tiny_model(tiny_onnx):
    return onnx.load(tiny_onnx)


def _copy(model):
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def test_exported_files_carry_a_valid_checksum(tiny_onnx, tiny_model):
    meta = read_metadata(tiny_model)
    assert len(meta.extra[CHECKSUM_KEY]) == 64
    check_checksum(tiny_model, tiny_onnx)
    assert verify_file(tiny_onnx).name == meta.name


def test_flipped_weight_byte_is_refused(tmp_path, tiny_model):
    from runtime import OrtRunner

    model = _copy(tiny_model)
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    data = bytearray(weight.raw_data)
    data[len(data) // 2] ^= 0x01  # one bit of one float
    weight.raw_data = bytes(data)
    path = tmp_path / "flipped.onnx"
    onnx.save(model, path)
    with pytest.raises(CCNetError, match="is corrupt") as e:
        OrtRunner(str(path))
    assert "\n" not in str(e.value)
    OrtRunner(str(path), check_checksum=False).close()  # the check can be skipped


@pytest.mark.parametrize("what", ["metadata", "attribute"])
def test_edits_outside_our_tools_are_refused(tmp_path, tiny_model, what):
    model = _copy(tiny_model)
    if what == "metadata":
        prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
        d = json.loads(prop.value)
        d["mean"][0] += 0.2  # silently different preprocessing
        prop.value = json.dumps(d)
    else:
        node = next(n for n in model.graph.node if n.op_type == "Conv")
        node.doc_string = "edited"
    with pytest.raises(CCNetError, match="is corrupt"):
        check_checksum(model, "m.onnx")


def test_checksum_is_independent_of_external_data(tmp_path, tiny_model):
    path = tmp_path / "external.onnx"
    onnx.save(_copy(tiny_model), path, save_as_external_data=True, location="external.data",
              size_threshold=0)
    assert verify_file(str(path)).num_classes == 21


def test_files_without_a_checksum_still_run(tmp_path, tiny_model):
    model = _copy(tiny_model)
    prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    d = json.loads(prop.value)
    del d["extra"][CHECKSUM_KEY]
    prop.value = json.dumps(d)
    check_checksum(model, "old.onnx")


# ----------------------------------------------------------------------------- engines
def test_engine_digest_checked_before_deserialising(tmp_path):
    from runtime.engine_info import (EngineInfo, read_engine_info, with_engine_digest,
                                     write_engine_info)

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine bytes" * 100)
    write_engine_info(str(engine), with_engine_digest(EngineInfo(tensorrt_version="10.14.1"),
                                                      engine.read_bytes()))
    info = read_engine_info(str(engine))
    assert info.engine_sha256 and len(info.engine_sha256) == 64
    data = bytearray(engine.read_bytes())
    data[100] ^= 0x40
    engine.write_bytes(bytes(data))
    with pytest.raises(CCNetError, match="does not match the digest in its side file") as e:
        read_engine_info(str(engine))
    assert "\n" not in str(e.value)
    # Side files written before the digest existed carry none: nothing to check.
    side = tmp_path / "m.engine.json"
    d = json.loads(side.read_text())
    d.pop("engine_sha256")
    side.write_text(json.dumps(d))
    assert read_engine_info(str(engine)).engine_sha256 is None


def test_info_only_side_file_without_engine_has_no_digest(tmp_path):
    from runtime.engine_info import EngineInfo, read_engine_info, write_engine_info

    engine = tmp_path / "later.engine"
    write_engine_info(str(engine), EngineInfo(tensorrt_version="10.14.1"))
    engine.write_bytes(b"built later by trtexec")
    assert read_engine_info(str(engine)).engine_sha256 is None

"""ONNX cases: ``ccnet predict`` / ``ccnet fp16`` / ``ccnet video`` on mutated base.onnx files.

Families: metadata values of the wrong type, range or shape (with the checksum removed, as in a
file from another producer, so the metadata validation is what must answer); metadata changed
under a kept checksum (must be reported as corrupt); graph changes (no inputs, two inputs, a
dropped node, plugin-only form ...); truncation and seeded byte flips of the graph file and of
the weights.
"""
from __future__ import annotations

import copy
import json
import os
import random
from typing import Callable, List

import onnx

from ccnet.meta import METADATA_KEY

from . import checks
from .environment import NUM_CLASSES, write_onnx
from .harness import Case

MODEL = "{in}/model.onnx"
CORRUPT = r"corrupt"


def _base(env) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.CopyFrom(env.base_proto)
    return model


def _meta_dict(model: onnx.ModelProto) -> dict:
    return json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))


def _set_text(model: onnx.ModelProto, text: str) -> None:
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = text


def _predict(env, name: str, expect: str, setup, message=None, check="match") -> Case:
    def check_fn(case_dir, result):
        out = os.path.join(case_dir, "out", "labels.png")
        if check == "match":
            return checks.labels_match(env, env.photo, out)
        return checks.labels_wellformed(env.photo, out, env.num_classes)

    return Case(id=f"onnx/{name}", family="onnx",
                argv=["predict", "--model", MODEL, "--input", env.photo, "--out",
                      "{out}/labels.png"],
                expect=expect, setup=setup, check=check_fn, outputs=("labels.png",),
                message=message)


def _mutated(env, mutate: Callable[[onnx.ModelProto], None]):
    def setup(case_dir):
        model = _base(env)
        mutate(model)
        write_onnx(env, case_dir, model)
    return setup


def _meta_setter(change: Callable[[dict], object], keep_checksum: bool = False):
    """Change the metadata dict (``change`` edits it in place or returns a replacement)."""
    def mutate(model):
        d = _meta_dict(model)
        if not keep_checksum:
            d["extra"].pop("sha256", None)
        replaced = change(d)
        _set_text(model, replaced if isinstance(replaced, str) else json.dumps(
            d if replaced is None else replaced))
    return mutate


def _field(name: str, value):
    def change(d):
        d[name] = value
    return change


# ----------------------------------------------------------------------------- metadata
BAD_FIELDS = {
    "classes_int": ("classes", 42), "classes_empty": ("classes", []),
    "classes_ints": ("classes", list(range(NUM_CLASSES))), "classes_1e6": ("classes", ["c"] * 10 ** 6),
    "palette_short": ("palette", [[1, 2, 3]]), "palette_300": ("palette", [[300, 0, 0]] * NUM_CLASSES),
    "palette_negative": ("palette", [[-1, 0, 0]] * NUM_CLASSES), "palette_str": ("palette", "red"),
    "palette_pairs": ("palette", [[1, 2]] * NUM_CLASSES), "scale_zero": ("test_scale", [0, 0]),
    "scale_negative": ("test_scale", [-64, 48]), "scale_str": ("test_scale", ["a", "b"]),
    "scale_huge": ("test_scale", [10 ** 9, 10 ** 9]), "scale_float": ("test_scale", [64.5, 48]),
    "scale_one": ("test_scale", [64]), "scale_null": ("test_scale", None),
    "scale_tiny": ("test_scale", [4, 4]), "mode_tile": ("mode", "tile"), "mode_int": ("mode", 1),
    "align_str": ("align_corners", "yes"), "align_int": ("align_corners", 1),
    "mean_nan": ("mean", [float("nan"), 0, 0]), "mean_str": ("mean", "imagenet"),
    "mean_two": ("mean", [1, 2]), "std_zero": ("std", [0, 1, 1]),
    "std_negative": ("std", [-1, 1, 1]), "std_inf": ("std", [float("inf"), 1, 1]),
    "bgr_str": ("bgr_to_rgb", "true"), "reduce_int": ("reduce_zero_label", 0),
    "ignore_negative": ("ignore_index", -1), "ignore_str": ("ignore_index", "255"),
    "name_int": ("name", 42), "dataset_list": ("dataset", ["voc"]),
    "extra_list": ("extra", [1]), "num_classes_wrong": ("num_classes", NUM_CLASSES + 1),
}
SLIDE_BAD = {
    "slide_no_crop": dict(mode="slide"),
    "slide_stride0": dict(mode="slide", crop_size=[32, 32], stride=[0, 0]),
    "slide_stride_neg": dict(mode="slide", crop_size=[32, 32], stride=[-16, 16]),
    "slide_stride1": dict(mode="slide", crop_size=[16, 16], stride=[1, 1]),
    "slide_gap": dict(mode="slide", crop_size=[32, 32], stride=[64, 64]),
    "slide_crop_small": dict(mode="slide", crop_size=[4, 4], stride=[4, 4]),
    "slide_crop_huge": dict(mode="slide", crop_size=[10 ** 6, 10 ** 6], stride=[10, 10]),
    "slide_crop_str": dict(mode="slide", crop_size="32", stride=[16, 16]),
}
EXTRA_BAD = {
    "precision_fp8": {"precision": "fp8"}, "contract_list": {"contract": [1]},
    "contract_input_str": {"contract": {"input": "x"}},
    "contract_shape_str": {"contract": {"input": {"shape": "NCHW"}}},
    "contract_shape_rank2": {"contract": {"input": {"shape": [1, 3]}}},
    "contract_shape_zero": {"contract": {"input": {"shape": [0, 3, 48, 64]}}},
}


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def metadata_cases(env) -> List[Case]:
    invalid = r"metadata"
    cases = []
    for name, (key, value) in BAD_FIELDS.items():
        cases.append(_predict(env, f"meta/{name}", "error",
                              _mutated(env, _meta_setter(_field(key, value))), invalid))
    for name, fields in SLIDE_BAD.items():
        cases.append(_predict(env, f"meta/{name}", "error",
                              _mutated(env, _meta_setter(lambda d, f=fields: d.update(f))),
                              invalid))
    for name, fields in EXTRA_BAD.items():
        cases.append(_predict(env, f"meta/extra/{name}", "error", _mutated(
            env, _meta_setter(lambda d, f=fields: d["extra"].update(f))), invalid))
    texts = {"not_json": "{classes: ", "json_42": "42", "json_list": "[1, 2]",
             "json_null": "null", "json_str": '"meta"', "nested_1e5": _deep(100000),
             "missing_classes": None}
    for name, text in texts.items():
        change = (lambda d: d.pop("classes") and None) if text is None else (
            lambda d, t=text: t)
        cases.append(_predict(env, f"meta/text/{name}", "error",
                              _mutated(env, _meta_setter(change)), invalid))
    def remove(model):
        kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)

    cases.append(_predict(env, "meta/removed", "error", _mutated(env, remove), "metadata"))
    # Valid but unusual metadata (no checksum): accepted, output well-formed.
    fine = {"renamed": _field("name", "other"), "unknown_key": _field("future_key", {"a": 1}),
            "ignore_0": _field("ignore_index", 0),
            "slide_ok": lambda d: d.update(mode="slide", crop_size=[32, 32], stride=[21, 21]),
            "scale_128": _field("test_scale", [128, 96])}
    for name, change in fine.items():
        cases.append(_predict(env, f"meta/valid/{name}", "ok",
                              _mutated(env, _meta_setter(change)), check="wellformed"))
    return cases


def checksum_cases(env) -> List[Case]:
    """Metadata or graph changed under the recorded checksum, and checksum values."""
    def keep(change):
        return _mutated(env, _meta_setter(change, keep_checksum=True))

    def digest(value):
        return keep(lambda d: d["extra"].__setitem__("sha256", value))

    def renamed_node(model):
        model.graph.node[3].name += "_x"

    def attribute(model):
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        conv.doc_string = "edited"

    cases = [_predict(env, "checksum/valid", "ok", lambda d: write_onnx(env, d)),
             _predict(env, "checksum/meta_scale", "error",
                      keep(_field("test_scale", [128, 96])), CORRUPT),
             _predict(env, "checksum/meta_mean", "error",
                      keep(_field("mean", [123.5, 116.28, 103.53])), CORRUPT),
             _predict(env, "checksum/meta_classes", "error",
                      keep(lambda d: d["classes"].__setitem__(0, "x")), CORRUPT),
             _predict(env, "checksum/node_name", "error", _mutated(env, renamed_node), CORRUPT),
             _predict(env, "checksum/doc_string", "error", _mutated(env, attribute), CORRUPT),
             _predict(env, "checksum/digest_zeros", "error", digest("0" * 64), CORRUPT),
             _predict(env, "checksum/digest_short", "error", digest("abc"), CORRUPT),
             _predict(env, "checksum/digest_int", "error", digest(7), CORRUPT),
             _predict(env, "checksum/weights_flipped", "error", _flipped_weights(env, 0.5),
                      CORRUPT),
             # Protobuf strings are UTF-8: one bad byte in the metadata text.
             _predict(env, "checksum/metadata_not_utf8", "error", _raw_graph(
                 env, lambda b: b.replace(b'"dataset"', b'"d\x98taset"', 1)), CORRUPT)]
    return cases


def _flip_initializer(model: onnx.ModelProto, fraction: float, mask: int) -> None:
    """Flip bits of one byte of one initializer's data (the file still parses)."""
    tensors = [t for t in model.graph.initializer if len(t.raw_data) > 16]
    tensor = tensors[int(fraction * len(tensors)) % len(tensors)]
    data = bytearray(tensor.raw_data)
    data[int(fraction * 7919 * len(data)) % len(data)] ^= mask
    tensor.raw_data = bytes(data)


def _flipped_weights(env, fraction: float, mask: int = 0x10):
    return _mutated(env, lambda model: _flip_initializer(model, fraction, mask))


# ----------------------------------------------------------------------------- graph
def _strip(change: Callable[[onnx.ModelProto], None]):
    """A graph change in a file without a checksum (another producer's file)."""
    def mutate(model):
        change(model)
        _meta_setter(lambda d: None)(model)
    return mutate


def graph_cases(env) -> List[Case]:
    def no_inputs(m):
        del m.graph.input[:]

    def two_inputs(m):
        m.graph.input.append(copy.deepcopy(m.graph.input[0]))
        m.graph.input[1].name = "second"

    def rank3(m):
        m.graph.input[0].type.tensor_type.shape.dim.pop()

    def no_outputs(m):
        del m.graph.output[:]

    def drop_node(m):
        del m.graph.node[len(m.graph.node) // 2]

    def plugin_only(m):
        del m.functions[:]

    def no_opset(m):
        del m.opset_import[:]

    def rename_input(m):
        old = m.graph.input[0].name
        m.graph.input[0].name = "image"
        for node in m.graph.node:
            node.input[:] = ["image" if name == old else name for name in node.input]

    def conv_kernel(m):
        conv = next(n for n in m.graph.node if n.op_type == "Conv")
        for a in conv.attribute:
            if a.name == "strides":
                a.ints[:] = [3, 3]

    mutations = {"no_inputs": no_inputs, "two_inputs": two_inputs, "input_rank3": rank3,
                 "no_outputs": no_outputs, "drop_node": drop_node, "plugin_only": plugin_only,
                 "no_opset": no_opset}
    cases = [_predict(env, f"graph/{n}", "error", _mutated(env, _strip(f)))
             for n, f in mutations.items()]
    # Another producer's different but valid model (no checksum to tell): it runs.
    cases.append(_predict(env, "graph/conv_strides", "either", _mutated(env, _strip(conv_kernel)),
                          check="wellformed"))
    # A renamed input is still one image input: it runs.
    cases.append(_predict(env, "graph/renamed_input", "ok",
                          _mutated(env, _strip(rename_input)), check="match"))
    return cases


def fp16_cases(env, size: str) -> List[Case]:
    def fp16(name, expect, setup, message=None, out="{out}/half.onnx"):
        check = (lambda d, r: checks.onnx_runs(os.path.join(d, "out", "half.onnx"), "fp16"))
        return Case(id=f"onnx/fp16/{name}", family="onnx",
                    argv=["fp16", "--model", MODEL, "--out", out], expect=expect, setup=setup,
                    check=check, outputs=("half.onnx",), message=message, timeout=300)

    cases = [fp16("valid", "ok", lambda d: write_onnx(env, d)),
             fp16("no_inputs", "error", _mutated(env, _strip(lambda m: m.graph.input.pop()))),
             fp16("out_folder", "error", lambda d: (write_onnx(env, d), os.mkdir(
                 os.path.join(d, "out", "half.onnx"))), "folder")]
    if size != "fast":
        cases += [
            fp16("precision_fp16", "error", _mutated(env, _meta_setter(
                lambda d: d["extra"].update(precision="fp16"))), "fp16"),
            fp16("meta_list", "error", _mutated(env, _meta_setter(lambda d: "[1]")), "metadata"),
            fp16("two_inputs", "error", _mutated(env, _strip(lambda m: m.graph.input.append(
                copy.deepcopy(m.graph.input[0]))))),
            fp16("drop_node", "error", _mutated(env, _strip(
                lambda m: m.graph.node.__delitem__(len(m.graph.node) // 2)))),
            fp16("plugin_only", "error", _mutated(env, _strip(lambda m: m.functions.__delitem__(
                slice(None))))),
            fp16("corrupt", "error", _flipped_weights(env, 0.25), CORRUPT),
            fp16("out_txt", "error", lambda d: write_onnx(env, d), ".onnx", out="{out}/half.txt"),
        ]
    return cases


# ----------------------------------------------------------------------------- seeded
def random_cases(env, count: int, seed: int) -> List[Case]:
    """Seeded truncations and byte flips of the graph file, flips of the weights, and random
    metadata values."""
    rng = random.Random(seed)
    graph_size = os.path.getsize(env.base_onnx)
    junk = [None, True, -1, 0, 1.5, "x", [], {}, [1, 2], [[1, 2, 3]], 10 ** 12, float("nan")]
    keys = ["classes", "palette", "test_scale", "mode", "crop_size", "stride", "align_corners",
            "mean", "std", "bgr_to_rgb", "reduce_zero_label", "ignore_index", "name", "extra"]
    cases = []
    for i in range(count):
        kind = ("truncate", "flip", "weights", "field")[i % 4]
        if kind == "truncate":
            cut = rng.randrange(1, graph_size)
            cases.append(_predict(env, f"random/truncate/{i}", "error",
                                  _raw_graph(env, lambda b, cut=cut: b[:cut])))
        elif kind == "flip":
            flips = [(rng.randrange(graph_size), rng.randrange(1, 256))
                     for _ in range(rng.choice([1, 3, 16]))]
            cases.append(_predict(env, f"random/flip/{i}", "error",
                                  _raw_graph(env, lambda b, f=flips: _flip(b, f))))
        elif kind == "weights":
            cases.append(_predict(env, f"random/weights/{i}", "error",
                                  _flipped_weights(env, rng.random(), rng.randrange(1, 256)),
                                  CORRUPT))
        else:
            # Some junk values are valid for some fields: either outcome, never a traceback.
            key, value = rng.choice(keys), rng.choice(junk)
            cases.append(_predict(env, f"random/field/{i}/{key}", "either", _mutated(
                env, _meta_setter(_field(key, value))), "metadata", check="wellformed"))
    return cases


def _flip(data: bytes, flips) -> bytes:
    out = bytearray(data)
    for pos, mask in flips:
        out[pos] ^= mask
    return bytes(out)


def _raw_graph(env, transform: Callable[[bytes], bytes]):
    def setup(case_dir):
        path = write_onnx(env, case_dir)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(transform(data))
    return setup


def eval_cases(env, size: str) -> List[Case]:
    """``ccnet eval`` on a folder dataset: slide stride 0 would divide by zero."""
    def case(name, expect, setup, message=None):
        return Case(id=f"onnx/eval/{name}", family="onnx",
                    argv=["eval", "--model", MODEL, "--data", env.dataset, "--dataset", "folder",
                          "--no-progress"], expect=expect, setup=setup, message=message,
                    check=lambda d, r: None if "mIoU" in r["stdout"] else "no mIoU printed")

    cases = [case("valid", "ok", lambda d: write_onnx(env, d)),
             case("slide_stride0", "error", _mutated(env, _meta_setter(lambda d: d.update(
                 mode="slide", crop_size=[32, 32], stride=[0, 0]))), "stride")]
    if size != "fast":
        for name in ("scale_tiny", "mean_nan", "palette_short", "num_classes_wrong"):
            key, value = BAD_FIELDS[name]
            cases.append(case(name, "error", _mutated(env, _meta_setter(_field(key, value))),
                              "metadata"))
        cases.append(case("json_42", "error", _mutated(env, _meta_setter(lambda d: "42")),
                          "metadata"))
        cases.append(case("corrupt", "error", _flipped_weights(env, 0.7), CORRUPT))
    return cases


def _label_head(env, change: Callable[[onnx.ModelProto], None] = lambda model: None):
    """base.onnx with the label head (resize back + argmax in the graph), metadata rewritten
    with its checksum, then ``change`` applied."""
    def setup(case_dir):
        from export.label_head import add_label_head, with_head_metadata
        from export.metadata import read_metadata, set_metadata

        model = _base(env)
        meta = read_metadata(model)
        head = add_label_head(model, meta)
        set_metadata(head, with_head_metadata(meta))
        change(head)
        write_onnx(env, case_dir, head)
    return setup


def label_head_cases(env, size: str) -> List[Case]:
    cases = [_predict(env, "label_head/valid", "ok", _label_head(env)),
             _predict(env, "label_head/meta_stride0", "error", _label_head(env, _meta_setter(
                 lambda d: d.update(mode="slide", crop_size=[32, 32], stride=[0, 0]))),
                 "metadata"),
             _predict(env, "label_head/weights_flipped", "error", _label_head(
                 env, lambda m: _flip_initializer(m, 0.3, 0x20)), CORRUPT)]
    if size != "fast":
        cases.append(Case(
            id="onnx/label_head/fp16", family="onnx",
            argv=["fp16", "--model", MODEL, "--out", "{out}/half.onnx"], expect="ok",
            setup=_label_head(env), outputs=("half.onnx",), timeout=300,
            check=lambda d, r: checks.onnx_runs(os.path.join(d, "out", "half.onnx"), "fp16")))
    return cases


def onnx_cases(env, size: str) -> List[Case]:
    cases = (metadata_cases(env) + checksum_cases(env) + graph_cases(env)
             + fp16_cases(env, size) + eval_cases(env, size) + label_head_cases(env, size))
    return cases + random_cases(env, 20 if size == "fast" else 900, seed=34)


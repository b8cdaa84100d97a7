"""The criss-cross attention custom node in ONNX: contract, schema, function body, helpers.

The node's op_type, domain and attributes come from ``plugins/cca_op.json`` (the one definition
the TensorRT plugin is generated from too); nothing here repeats those values.
"""
from __future__ import annotations

from typing import List

import onnx
from onnx import TensorProto, defs, helper

import plugins

CCA_OPSET_VERSION = 1  # version of the custom domain in opset_import
# CastLike (opset 15) makes the function body dtype-generic (fp32 and fp16 files); model-local
# functions need IR 8, i.e. the opset-15 era too.
MIN_OPSET = 15
# PyTorch's exporter implements opset 18 and newer; asking it for less adds a down-conversion
# pass after the export (and its warnings), so 18 is the default.  TensorRT 10 parses it.
DEFAULT_OPSET = 18


def contract() -> dict:
    """The custom-op contract ``plugins/cca_op.json`` (op type, domain, plugin fields)."""
    return plugins.contract()


def node_attributes() -> dict:
    """name -> value of the attributes every CCA node carries (the plugin's fields)."""
    return {f["name"]: f["value"] for f in contract()["fields"]}


def register_schema() -> None:
    """Register an OpSchema for the custom op in this process; the exporter refuses it without."""
    c = contract()
    if defs.has(c["op_type"], c["domain"]):
        return
    attr_types = {"string": defs.OpSchema.AttrType.STRING, "int": defs.OpSchema.AttrType.INT,
                  "float": defs.OpSchema.AttrType.FLOAT}
    schema = defs.OpSchema(
        c["op_type"], c["domain"], CCA_OPSET_VERSION,
        doc="Criss-cross attention core (query, key, value) -> output; see plugins/cca_op.json.",
        inputs=[defs.OpSchema.FormalParameter(n, "T") for n in c["inputs"]],
        outputs=[defs.OpSchema.FormalParameter(n, "T") for n in c["outputs"]],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors")],
        attributes=[defs.OpSchema.Attribute(f["name"], attr_types[f.get("type", "string")],
                                            f"plugin field {f['name']}", )
                    for f in c["fields"]])
    defs.register_schema(schema)


def cca_nodes(model: onnx.ModelProto) -> List[onnx.NodeProto]:
    """The criss-cross attention nodes of a model's main graph."""
    c = contract()
    return [n for n in model.graph.node if n.op_type == c["op_type"] and n.domain == c["domain"]]


def cca_functions(model: onnx.ModelProto) -> List[onnx.FunctionProto]:
    c = contract()
    return [f for f in model.functions if f.name == c["op_type"] and f.domain == c["domain"]]


def _const_ints(name: str, values) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name, TensorProto.INT64, [len(values)], list(values)))


def cca_function(opset: int) -> onnx.FunctionProto:
    """Model-local function with a standard-op body of the reference formulation.

    Same maths as ``ccnet.ops.criss_cross_reference``: column energies with the self term
    masked to -inf (an arange/Equal mask, no diag), row energies, ONE softmax over H+W, two
    matmuls with value.  Energies and softmax run in float32 whatever the input dtype (an fp16
    file keeps them accurate); the value aggregation runs in the input dtype.  N, H, W dynamic.
    """
    c = contract()
    q_in, k_in, v_in = c["inputs"]
    (out,) = c["outputs"]
    nodes = _topological(_energy_nodes(q_in, k_in) + _aggregation_nodes(v_in, out),
                         [q_in, k_in, v_in])
    return helper.make_function(
        c["domain"], c["op_type"], [q_in, k_in, v_in], [out], nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=[f["name"] for f in c["fields"]],
        doc_string="criss-cross attention core, reference formulation (ccnet.ops)")


def _energy_nodes(q_in: str, k_in: str) -> List[onnx.NodeProto]:
    """Column energies (self masked to -inf), row energies, one float32 softmax over H+W →
    ``attention_f32`` N,H,W,H+W; also ``h_1d``/``w_1d``/``axis_w``/``zero`` for the split."""
    mk = helper.make_node
    return [
        mk("Cast", [q_in], ["q"], to=TensorProto.FLOAT),
        mk("Cast", [k_in], ["k"], to=TensorProto.FLOAT),
        # Column branch: per column w, energies between rows h (query) and i (key): N,W,H,H.
        mk("Transpose", ["q"], ["q_col"], perm=[0, 3, 2, 1]),   # N,W,H,C
        mk("Transpose", ["k"], ["k_col"], perm=[0, 3, 1, 2]),   # N,W,C,H
        mk("MatMul", ["q_col", "k_col"], ["energy_col_whh"]),
        # Self mask: arange(H) == arange(H)^T.
        mk("Shape", [q_in], ["shape"]),
        _const_ints("axis_h", [2]), _const_ints("axis_w", [3]),
        mk("Gather", ["shape", "axis_h"], ["h_1d"], axis=0),
        mk("Gather", ["shape", "axis_w"], ["w_1d"], axis=0),
        mk("Squeeze", ["h_1d"], ["h"]),
        mk("Constant", [], ["zero"], value=helper.make_tensor("zero", TensorProto.INT64, [], [0])),
        mk("Constant", [], ["one"], value=helper.make_tensor("one", TensorProto.INT64, [], [1])),
        mk("Range", ["zero", "h", "one"], ["rows"]),
        _const_ints("ax1", [1]), _const_ints("ax0", [0]),
        mk("Unsqueeze", ["rows", "ax1"], ["rows_col"]),
        mk("Unsqueeze", ["rows", "ax0"], ["rows_row"]),
        mk("Equal", ["rows_col", "rows_row"], ["self_mask"]),
        mk("Constant", [], ["neg_inf"], value=helper.make_tensor(
            "neg_inf", TensorProto.FLOAT, [], [float("-inf")])),
        mk("Where", ["self_mask", "neg_inf", "energy_col_whh"], ["energy_col_masked"]),
        mk("Transpose", ["energy_col_masked"], ["energy_col"], perm=[0, 2, 1, 3]),  # N,H,W,H
        # Row branch: per row h, energies between columns w and j: N,H,W,W.
        mk("Transpose", ["q"], ["q_row"], perm=[0, 2, 3, 1]),   # N,H,W,C
        mk("Transpose", ["k"], ["k_row"], perm=[0, 2, 1, 3]),   # N,H,C,W
        mk("MatMul", ["q_row", "k_row"], ["energy_row"]),
        mk("Concat", ["energy_col", "energy_row"], ["energy"], axis=3),
        mk("Softmax", ["energy"], ["attention_f32"], axis=3),
    ]


def _aggregation_nodes(v_in: str, out: str) -> List[onnx.NodeProto]:
    """The attention (in the value's dtype) split back into its column and row parts, each
    multiplied with the value, summed → ``out`` N,C,H,W."""
    mk = helper.make_node
    return [
        mk("CastLike", ["attention_f32", v_in], ["attention"]),
        # Split the H+W axis back into the column and row parts.
        mk("Slice", ["attention", "zero_1d", "h_1d", "axis_w"], ["attn_col_hwh"]),
        mk("Add", ["h_1d", "w_1d"], ["hw_1d"]),
        mk("Slice", ["attention", "h_1d", "hw_1d", "axis_w"], ["attn_row"]),
        _const_ints("zero_1d", [0]),
        mk("Transpose", ["attn_col_hwh"], ["attn_col"], perm=[0, 2, 1, 3]),  # N,W,H,H
        mk("Transpose", [v_in], ["v_col"], perm=[0, 3, 2, 1]),   # N,W,H,C
        mk("MatMul", ["attn_col", "v_col"], ["out_col"]),        # N,W,H,C
        mk("Transpose", [v_in], ["v_row"], perm=[0, 2, 3, 1]),   # N,H,W,C
        mk("MatMul", ["attn_row", "v_row"], ["out_row"]),        # N,H,W,C
        mk("Transpose", ["out_col"], ["out_col_nchw"], perm=[0, 3, 2, 1]),
        mk("Transpose", ["out_row"], ["out_row_nchw"], perm=[0, 3, 1, 2]),
        mk("Add", ["out_col_nchw", "out_row_nchw"], [out]),
    ]


def _topological(nodes, inputs) -> List[onnx.NodeProto]:
    """Order nodes so each one follows its producers (lets the body be written readably)."""
    available, ordered, pending = set(inputs), [], list(nodes)
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input if i)]
        if not ready:
            raise RuntimeError("CCA function body has a cycle or an undefined input")
        for n in ready:
            ordered.append(n)
            available.update(n.output)
            pending.remove(n)
    return ordered


def attach_cca_function(model: onnx.ModelProto) -> None:
    """Attach (or replace) the model-local CCA function at the model's default-domain opset."""
    c = contract()
    keep = [f for f in model.functions if not (f.name == c["op_type"] and f.domain == c["domain"])]
    del model.functions[:]
    model.functions.extend(keep + [cca_function(model_opset(model))])
    ensure_domain(model)


def model_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def ensure_domain(model: onnx.ModelProto) -> None:
    """The custom domain must appear in the model's opset_import."""
    domain = contract()["domain"]
    if not any(o.domain == domain for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(domain, CCA_OPSET_VERSION))

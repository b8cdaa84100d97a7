"""Graph edits on a Q/DQ model: residual shortcuts through Q/DQ, float criss-cross inputs.

Placement rules (which edit a target gets) live in ``calib.placement``; this module only knows
how to make each edit on an ``onnx.ModelProto`` in place.
"""
from __future__ import annotations

from typing import Collection, Dict, List, Optional, Tuple

import numpy as np
import onnx

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "QLinearMatMul",
           "MatMulInteger", "DynamicQuantizeLinear"}


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def symmetric_int8_scale(low: float, high: float) -> np.float32:
    """ONNX Runtime's symmetric int8 scale for the range [low, high] (its zero point is 0)."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    qmin, qmax = get_qmin_qmax_for_qType(onnx.TensorProto.INT8, symmetric=True)
    _, scale = compute_scale_zp(np.float32(low), np.float32(high), qmin, qmax, symmetric=True)
    return np.float32(scale)


def producers(model: onnx.ModelProto) -> Dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def conv_names(model: onnx.ModelProto) -> List[str]:
    """Names of the graph's Conv nodes, in graph order."""
    return [n.name for n in model.graph.node if n.op_type == "Conv"]


def int8_conv_names(model: onnx.ModelProto) -> List[str]:
    """Convs whose weight is read through a DequantizeLinear (they run in INT8)."""
    producer = producers(model)
    return [n.name for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1
            and getattr(producer.get(n.input[1]), "op_type", None) == "DequantizeLinear"]


def conv_float_input(conv: onnx.NodeProto, producer: dict) -> str:
    """The float tensor a Conv reads (through its input DequantizeLinear, if any)."""
    src = producer.get(conv.input[0])
    if src is not None and src.op_type == "DequantizeLinear":
        q = producer.get(src.input[0])
        return q.input[0] if q is not None else conv.input[0]
    return conv.input[0]


# ----------------------------------------------------------------------------- residual shortcuts
def quantize_residual_shortcuts(model: onnx.ModelProto, ranges: Dict[str, Tuple[float, float]],
                                float_convs: Collection[str] = ()) -> Tuple[int, int]:
    """Make every Conv-branch residual ``Add`` read its shortcut through Q/DQ (TensorRT fusion).

    NVIDIA's Q/DQ placement for ResNets quantizes the residual input of the Add so TensorRT
    fuses the Add (+ ReLU) into the Conv's epilogue in INT8.  ONNX Runtime's QDQ quantizer
    already gives identity shortcuts their DQ (the block input is quantized for the block's
    first Conv and every consumer reads the DQ).  Projection shortcuts end in a downsample Conv
    whose output has no Q/DQ (Conv outputs stay float): give it one, with the range calibrated
    for that tensor and ONNX Runtime's symmetric int8 scale rule.  An Add next to a Conv kept
    in float (``float_convs``) is left alone: there is no INT8 epilogue to fuse into.
    Returns (identity, projection) counts.
    """
    producer = producers(model)
    conv_readers: Dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Conv":
            source = conv_float_input(node, producer)
            conv_readers[source] = conv_readers.get(source, 0) + 1
    identity = projection = 0
    for add in model.graph.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        feeding = [producer.get(t) for t in add.input]
        ops = [getattr(n, "op_type", None) for n in feeding]
        if any(n is not None and n.name in float_convs for n in feeding):
            continue
        if ops.count("Conv") == 1 and "DequantizeLinear" in ops:
            identity += 1  # shortcut already read through the Q/DQ of the block input
        elif ops == ["Conv", "Conv"]:
            shortcut = _projection_shortcut(add, producer, conv_readers, ranges)
            if shortcut is not None:
                _read_through_qdq(model, add, shortcut, ranges[shortcut])
                projection += 1
    return identity, projection


def _projection_shortcut(add, producer, conv_readers, ranges) -> Optional[str]:
    """The Add input made by the downsample Conv: it reads the block input, which the main
    branch's first Conv reads too; the branch's last Conv reads a tensor nothing else reads."""
    return next((t for t in add.input if t in ranges
                 and conv_readers.get(conv_float_input(producer[t], producer), 0) > 1), None)


def _read_through_qdq(model: onnx.ModelProto, reader: onnx.NodeProto, tensor: str,
                      value_range: Tuple[float, float]) -> None:
    """Insert Q/DQ (symmetric int8 from ``value_range``) after ``tensor``'s producer and make
    ``reader`` read the DQ output."""
    from onnx import helper, numpy_helper

    scale = symmetric_int8_scale(*value_range)
    base = f"{tensor}_shortcut"
    model.graph.initializer.extend([
        numpy_helper.from_array(np.asarray(scale, dtype=np.float32).reshape(()), f"{base}_scale"),
        numpy_helper.from_array(np.zeros((), dtype=np.int8), f"{base}_zero_point")])
    q = helper.make_node("QuantizeLinear", [tensor, f"{base}_scale", f"{base}_zero_point"],
                         [f"{base}_q"], name=f"{base}_QuantizeLinear")
    dq = helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zero_point"],
                          [f"{base}_dq"], name=f"{base}_DequantizeLinear")
    reader.input[list(reader.input).index(tensor)] = f"{base}_dq"
    nodes = list(model.graph.node)
    at = next(i for i, n in enumerate(nodes) if tensor in n.output) + 1
    nodes[at:at] = [q, dq]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


# ----------------------------------------------------------------------------- criss-cross inputs
def float_cca_inputs_from_qdq(model: onnx.ModelProto) -> int:
    """Read the CCA node inputs from the float tensors in front of their Q/DQ pairs, then drop
    the Q/DQ nodes nothing reads any more.  Returns the number of inputs rewired."""
    from export.graph import cca_nodes

    producer = producers(model)
    rewired = 0
    for node in cca_nodes(model):
        for i, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" \
                else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
                rewired += 1
    drop_unread_qdq(model)
    return rewired


def drop_unread_qdq(model: onnx.ModelProto) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads, then initializers nothing reads."""
    while True:
        used = {t for n in model.graph.node for t in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {t for n in model.graph.node for t in n.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def cca_inputs_through_dq(model: onnx.ModelProto) -> List[str]:
    """CCA node inputs that come out of a DequantizeLinear (our placements allow none)."""
    from export.graph import cca_nodes

    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [t for n in cca_nodes(model) for t in n.input if t in dq_outputs]

"""Per-tensor activation clip search: for every Conv input, the symmetric int8 range that
minimises the error of the Conv outputs it feeds, on calibration data (``--clip-search mse``).

The range methods (entropy, percentile, minmax) choose one threshold per tensor from the
tensor's own histogram, by one global rule.  What matters downstream is the error of the layer
that reads the tensor: a tighter clip saturates a few large values but rounds every other value
on a finer grid.  The search tries thresholds ``c`` = ``GRID`` × max|x| (and the calibrated
threshold) and keeps, per tensor, the one with the smallest squared error

    Σ_conv Σ_inputs ‖ Conv(Q_c(x); W_int8) − Conv(x; W) ‖²

over the Convs reading ``x`` (``W_int8``: the per-channel int8 weights read back from the Q/DQ
model, so the weight error the layer will have is part of the objective; ``Q_c``: symmetric
int8 with scale c/127, ONNX Runtime's rule, saturating like QuantizeLinear).  Ties keep the
calibrated threshold.  This is what the "MSE" calibrators of TensorRT's and ModelOpt's
toolchains search, per layer instead of per network.

The result is a plain ``{tensor: (-c, c)}`` ranges dict: the cache records these ranges (and
``clip_search``), so a cache alone reproduces the scales bit-exactly.  Each threshold needs one
pass of the layer per candidate over ``MAX_INPUTS`` calibration inputs (a deterministic subset:
the first inputs in calibration order).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import onnx

from ccnet.errors import CCNetError, first_line

from .calibrate import Ranges

GRID = tuple(round(0.30 + 0.025 * i, 3) for i in range(29))  # 0.30 … 1.00 of max |x|
MAX_INPUTS = 16


def search_clips(fp32_path: str, qdq_model: onnx.ModelProto, ranges: Ranges, input_name: str,
                 batches: Sequence[np.ndarray], progress: bool = True) -> Ranges:
    """``ranges`` with every Conv input of ``fp32_path`` replaced by its searched symmetric
    range (see the module docstring); ``qdq_model``: the all-INT8 model of ``fp32_path``."""
    from ccnet.progress import progress_bar

    fp32 = onnx.load(fp32_path)
    convs = [n for n in fp32.graph.node if n.op_type == "Conv"]
    weights = dequantized_conv_weights(qdq_model)
    tensors = sorted({c.input[0] for c in convs if c.name in weights and c.input[0] in ranges})
    readers = {t: [c for c in convs if c.input[0] == t and c.name in weights] for t in tensors}
    captured = capture(fp32, input_name, batches[:MAX_INPUTS],
                       tensors + [c.output[0] for t in tensors for c in readers[t]])
    searched = dict(ranges)
    bar = progress_bar(total=len(tensors), desc="clip search", unit="tensor", enabled=progress,
                       leave=False)
    for tensor in tensors:
        layers = [(conv_session(conv, *weights[conv.name]), captured[conv.output[0]])
                  for conv in readers[tensor]]
        clip = best_clip(captured[tensor], layers, ranges[tensor])
        searched[tensor] = (-clip, clip)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return searched


def best_clip(inputs: List[np.ndarray], layers: list, calibrated: Tuple[float, float]) -> float:
    """The threshold with the smallest output error of ``layers`` ((session, reference outputs)
    pairs) on ``inputs``; the calibrated threshold first, so it wins ties."""
    start = float(np.float32(max(abs(calibrated[0]), abs(calibrated[1]))))
    largest = max(float(np.abs(x).max()) for x in inputs)
    candidates = [start] + [float(np.float32(f * largest)) for f in GRID]
    best, best_error = start, None
    for clip in candidates:
        if clip <= 0:
            continue
        error = 0.0
        for session, references in layers:
            for x, reference in zip(inputs, references):
                out = session.run(None, {"x": quantize_dequantize(x, clip)})[0]
                error += float(np.square(out - reference, dtype=np.float64).sum())
        if best_error is None or error < best_error:
            best, best_error = clip, error
    return best


def quantize_dequantize(x: np.ndarray, clip: float) -> np.ndarray:
    """Symmetric int8 Q/DQ with scale clip/127 (ONNX Runtime's symmetric scale; QuantizeLinear
    rounds half to even and saturates to [-128, 127])."""
    scale = np.float32(clip) / np.float32(127)
    return (np.clip(np.rint(x / scale), -128, 127) * scale).astype(np.float32)


def capture(model: onnx.ModelProto, input_name: str, batches: Sequence[np.ndarray],
            names: Sequence[str]) -> Dict[str, List[np.ndarray]]:
    """Values of the float tensors ``names`` for every batch (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    names = list(dict.fromkeys(names))
    model = onnx.ModelProto.FromString(model.SerializeToString())
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in known)
    try:
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        values = [session.run(names, {input_name: b}) for b in batches]
    except Exception as e:
        raise CCNetError(f"ONNX Runtime cannot run the model to search clipping ranges "
                         f"({type(e).__name__}: {first_line(e)}): quantize the FP32 file "
                         "written by ccnet export") from e
    return {n: [v[i] for v in values] for i, n in enumerate(names)}


def dequantized_conv_weights(model: onnx.ModelProto) -> Dict[str, tuple]:
    """{Conv name: (weight, bias or None)} of the INT8 Convs of a Q/DQ model, as the float
    values their DequantizeLinear nodes produce."""
    from onnx import numpy_helper

    from .qdq_graph import int8_conv_names, producers

    producer = producers(model)
    inits = {i.name: i for i in model.graph.initializer}

    def value(tensor: str) -> np.ndarray:
        node = producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear":
            return numpy_helper.to_array(inits[tensor]).astype(np.float32)
        q, scale = (numpy_helper.to_array(inits[t]) for t in node.input[:2])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and q.ndim > 1:
            scale = scale.reshape([-1 if d == axis % q.ndim else 1 for d in range(q.ndim)])
        return (q.astype(np.float32) * scale).astype(np.float32)

    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
    return {name: (value(convs[name].input[1]),
                   value(convs[name].input[2]) if len(convs[name].input) > 2 else None)
            for name in int8_conv_names(model)}


def conv_session(conv: onnx.NodeProto, weight: np.ndarray, bias):
    """An ONNX Runtime session of ``conv`` alone (input ``x``) with float ``weight``/``bias``."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(weight, "w")]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "b"))
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias is not None else []), ["y"])
    node.attribute.extend(conv.attribute)
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

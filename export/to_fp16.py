"""Convert an exported CCNet ONNX file to a strongly typed FP16 model (float32 input/output).

The CCA node and its function survive; what accuracy needs stays float32: the attention
energies and softmax (inside the function body), Resize (the final upsampling) and any layer
whose activations get near the FP16 range on a real input.  Runs on ONNX Runtime CPU.

    ccnet fp16 --model model.onnx --out model_fp16.onnx
"""
from __future__ import annotations

import copy
import warnings
from typing import Iterable, List, Optional

import numpy as np
import onnx

from ccnet.errors import CCNetError, first_line
from ccnet.files import check_output_file
from ccnet.labels import LABEL_HEAD_INPUT, label_head_feed
from ccnet.meta import LIMITS

from .graph import attach_cca_function, cca_functions, cca_nodes
from .label_head import add_label_head, strip_label_head
from .metadata import check_checksum, read_metadata, set_metadata
from .onnx_file import image_input, load_onnx
from .verify import (FP16_VERIFY_MIN_AGREEMENT, ImageLike, check_finite, head_check_size,
                     photo_input,
                     write_verified)

# Activations above this stay float32: FP16 tops out at 65504 and the next op (Add/Conv) must
# not overflow either, so leave a margin.
OVERFLOW_LIMIT = 8192.0
# Ops kept float32 whatever the data: Resize is the final logits upsampling.
FP32_OPS = ["Resize", "Upsample", "Range"]


def overflow_nodes(model: onnx.ModelProto, feed: dict, limit: float = OVERFLOW_LIMIT) -> List[str]:
    """Names of main-graph float nodes whose output reaches ``limit`` on ``feed`` (ORT CPU).

    The model may be any file a user passes: whatever onnx or ONNX Runtime reject on the way
    is a one-line CCNetError."""
    try:
        return _probe(model, feed, limit)
    except CCNetError:
        raise
    except Exception as e:  # InferenceError, ORT's Fail/InvalidGraph/..., bad shapes
        raise CCNetError(f"ONNX Runtime cannot run the model to find layers that overflow FP16 "
                         f"({type(e).__name__}: {first_line(e, 200)}): pass an unmodified "
                         "ccnet-export FP32 file") from None


def _probe(model: onnx.ModelProto, feed: dict, limit: float) -> List[str]:
    import onnxruntime as ort

    probe = copy.deepcopy(model)
    inferred = onnx.shape_inference.infer_shapes(probe)
    float_values = {vi.name for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
                    if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    existing = {o.name for o in probe.graph.output}
    producers = {}
    for node in probe.graph.node:
        for out in node.output:
            if out in float_values:
                producers[out] = node.name
                if out not in existing:
                    probe.graph.output.append(onnx.helper.make_tensor_value_info(
                        out, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    hot = []
    for name, value in zip(names, session.run(names, feed)):
        if name in producers and value.size and float(np.abs(value).max()) >= limit:
            hot.append(producers[name])
    return hot


def convert_model(model: onnx.ModelProto, keep_fp32_nodes: Iterable[str] = (),
                  calibration_feed: Optional[dict] = None, log=print) -> onnx.ModelProto:
    """FP16 copy of an in-memory FP32 model; returns a new ModelProto.

    ``calibration_feed`` ({"input": array}) finds layers whose activations would overflow
    FP16 so they stay float32; ``keep_fp32_nodes`` names more nodes to keep.
    """
    from onnxconverter_common import float16

    if _is_fp16(model):
        raise CCNetError("the model is already FP16: convert the FP32 export instead")
    if not cca_functions(model) and cca_nodes(model):
        raise CCNetError("the model has CCA nodes but no function (plugin-only form): export with "
                         "a function (drop --no-function), convert, then strip the function")
    blocked = set(keep_fp32_nodes)
    if calibration_feed is not None:
        hot = overflow_nodes(model, calibration_feed)
        if hot:
            log(f"keeping {len(hot)} node(s) in float32 (activations near the FP16 range): "
                f"{', '.join(hot[:6])}{' ...' if len(hot) > 6 else ''}")
        blocked.update(hot)
    had_function = bool(cca_functions(model))
    try:
        with warnings.catch_warnings():  # one warning per tiny weight clipped to 1e-7: noise
            warnings.simplefilter("ignore", UserWarning)
            converted = float16.convert_float_to_float16(
                copy.deepcopy(model), keep_io_types=True,
                op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + FP32_OPS,
                node_block_list=sorted(blocked))
    except Exception as e:  # the converter assumes a well-formed graph
        raise CCNetError(f"onnxconverter-common cannot convert the model to FP16 "
                         f"({type(e).__name__}: {first_line(e, 200)}): pass an unmodified "
                         "ccnet-export FP32 file") from None
    _restore_float_outputs(model, converted)
    # The converter ignores model-local functions; ours is dtype-generic (CastLike) with the
    # energies and softmax in float32, so put a fresh copy back.
    if had_function:
        attach_cca_function(converted)
    return converted


def _restore_float_outputs(original: onnx.ModelProto, converted: onnx.ModelProto) -> None:
    """keep_io_types misses outputs produced by a blocked op (our final Resize): the converter
    casts them back to FP16.  Drop that Cast (or add one to float32) so I/O stays float32."""
    graph = converted.graph
    want = {o.name: o.type.tensor_type.elem_type for o in original.graph.output}
    for out in graph.output:
        if want.get(out.name) != onnx.TensorProto.FLOAT or \
                out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            continue
        producer = next((n for n in graph.node if out.name in n.output), None)
        if producer is None:
            raise CCNetError(f"output {out.name!r} is produced by no node: pass an unmodified "
                             "ccnet-export FP32 file")
        upstream = next((n for n in graph.node if producer.op_type == "Cast"
                         and producer.input[0] in n.output), None)
        if upstream is not None and upstream.op_type in FP32_OPS:
            upstream.output[list(upstream.output).index(producer.input[0])] = out.name
            graph.node.remove(producer)
        else:
            fp16_name = out.name + "_fp16"
            producer.output[list(producer.output).index(out.name)] = fp16_name
            graph.node.append(onnx.helper.make_node("Cast", [fp16_name], [out.name],
                                                    to=onnx.TensorProto.FLOAT,
                                                    name=out.name + "_to_float32"))
        out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def _is_fp16(model: onnx.ModelProto) -> bool:
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def convert_to_fp16(in_path: str, out_path: str, verify: bool = True, log=print,
                    verify_image: ImageLike = None) -> dict:
    """Convert an exported FP32 file to FP16 (metadata precision set to "fp16"); returns a report.

    ``verify_image`` (a path or BGR array; default a synthetic photo) finds the layers that must
    stay float32 and, with ``verify``, checks the result: onnx full check, then ONNX Runtime FP16
    vs FP32 argmax agreement >= 99% with finite outputs.  A label-head file keeps its head
    (float32 resize).  The output is written atomically; nothing is left on failure.
    """
    check_output_file(out_path, (".onnx",), what="FP16 output")
    model = load_onnx(in_path)
    check_checksum(model, in_path)
    meta = read_metadata(model)
    model, label_head = strip_label_head(model)  # convert the logits part, re-attach the head
    if meta.extra.get("precision", "fp32") != "fp32":
        raise CCNetError(f"{in_path} is {meta.extra.get('precision')}: convert an FP32 export")
    if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        raise CCNetError(f"{in_path} imports no standard ONNX opset: pass a ccnet-export file")
    input_name, dims = image_input(model, in_path)
    fixed = (dims[0] or 1) * (dims[2] or 1) * (dims[3] or 1)
    if fixed > LIMITS.max_image_pixels:
        raise CCNetError(f"{in_path}: fixed input {dims} is larger than the probe can feed "
                         f"({LIMITS.hint('max_image_pixels')})")
    feed_input = photo_input(meta, verify_image, fixed_hw=(dims[2], dims[3]))
    if dims[0] is not None:
        feed_input = np.repeat(feed_input, dims[0], axis=0)
    feed = {input_name: feed_input}
    fp16 = convert_model(model, calibration_feed=dict(feed), log=log)
    if label_head:
        fp16 = add_label_head(fp16, meta)
        feed[LABEL_HEAD_INPUT] = label_head_feed(head_check_size(*feed_input.shape[2:]))
    set_metadata(fp16, meta.replace(extra={**meta.extra, "precision": "fp16"}))

    def verify_fn(path):
        if not verify:
            return {}
        a = _run_file(in_path, feed, "the FP32 file")
        b = _run_file(path, feed, "the FP16 file")
        check_finite(a, "the FP32 file's output", feed_input.shape)
        check_finite(b, "the FP16 file's output", feed_input.shape)
        labels_a = a if a.ndim == 3 else a.argmax(1)
        labels_b = b if b.ndim == 3 else b.argmax(1)
        agreement = float((labels_a == labels_b).mean())
        log(f"verify fp16 vs fp32 (ORT) {tuple(feed_input.shape)}: argmax agreement "
            f"{agreement * 100:.3f}%")
        if agreement < FP16_VERIFY_MIN_AGREEMENT:
            raise CCNetError(f"verification failed: FP16 argmax agreement {agreement * 100:.3f}%"
                             f" < {FP16_VERIFY_MIN_AGREEMENT * 100:.1f}% against the FP32 file")
        return {"agreement": agreement}

    result = write_verified(fp16, out_path, verify_fn, full_check=verify, log=log)
    return {"out": out_path, "verification": result}


def _run_file(path: str, feed: dict, what: str) -> np.ndarray:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(None, feed)[0]
    except Exception as e:  # ORT's own error types
        raise CCNetError(f"verification failed: ONNX Runtime cannot run {what} "
                         f"({first_line(e, 200)})") from None

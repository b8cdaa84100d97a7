"""INT8 post-training quantization of an exported CCNet ONNX into explicit Q/DQ form.

TensorRT 10/11 builds INT8 only from explicit QuantizeLinear/DequantizeLinear nodes (strongly
typed networks; deployment notes §1), so the INT8 artefact is an ONNX file, calibrated here with
ONNX Runtime's ``quantize_static``.  Placement, chosen for TensorRT's fusions:

- every Conv input and weight is quantized (symmetric int8; weights per output channel; the bias
  becomes int32 at input_scale × weight_scale) and Conv outputs are NOT (Q/DQ only in front of a
  Conv, so TensorRT fuses Conv+bias+ReLU and keeps the next layer's Q as the output);
- the shortcut input of every ResNet residual ``Add`` is read through Q/DQ: NVIDIA's Q/DQ
  guide (TensorFlow quantization toolkit, ``ResNetV1QDQCase``) quantizes the residual input of
  the Add so TensorRT fuses the Add (and ReLU) into the Conv's epilogue in INT8 instead of
  running it in float.  Identity shortcuts get it from ORT (the block input is quantized for the
  block's first Conv); projection shortcuts get a Q/DQ on the downsample Conv's output with its
  calibrated range (``quantize_residual_shortcuts``);
- the criss-cross attention node, its inputs (query/key/value Conv outputs), its softmax and the
  ``gamma * out + x`` residual stay float.

Calibration images go through exactly the inference pre-processing (``ccnet.processing`` with
the ONNX's ModelMeta: test-scale keep-ratio resize, normalization; slide-mode models calibrate on
the slide windows).  The tensor ranges can be saved to a JSON cache and reused to re-quantize
bit-exactly without images.

CLI: ``ccnet-calibrate --onnx model.onnx --images DIR --out model_int8.onnx``
(also ``python calib/quantize.py ...``).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os

import tempfile
import time
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx

from ccnet.errors import CCNetError, first_line
from ccnet.files import atomic_write
from ccnet.meta import ModelMeta
from export.onnx_file import load_onnx

METHODS = ("entropy", "percentile", "minmax")
TARGETS = ("tensorrt", "ort-cpu")
DEFAULT_NUM_IMAGES = 16
CACHE_FORMAT = "ccnet-calibration-cache"
CACHE_VERSION = 1
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "QLinearMatMul",
           "MatMulInteger", "DynamicQuantizeLinear"}


class CalibrationWarning(UserWarning):
    """A calibration image was skipped (unreadable) or calibration data looks thin."""


# ----------------------------------------------------------------------------- model checks
def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_meta(model: onnx.ModelProto, path: str = "model") -> ModelMeta:
    """The ModelMeta that ccnet-export wrote into the ONNX metadata (one-line error if absent)."""
    from export.metadata import read_metadata

    try:
        return read_metadata(model)
    except CCNetError as e:
        raise CCNetError(f"{path}: {e} (calibration needs the model's pre-processing)") from None


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def _input_shape(model: onnx.ModelProto) -> Tuple:
    """Dims of the single image input: ints for static dims, None for dynamic ones."""
    init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise CCNetError(f"expected one image input, the model has {len(inputs)}: "
                         "pass a model written by ccnet-export")
    dims = inputs[0].type.tensor_type.shape.dim
    return inputs[0].name, tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


# ----------------------------------------------------------------------------- calibration data
def calibration_batches(images_dir: str, meta: ModelMeta, num_images: int,
                        input_shape: Tuple = (None,) * 4) -> Tuple[List[np.ndarray], int]:
    """Preprocessed network inputs of the first ``num_images`` readable images of a folder.

    Same pre-processing as inference (``ccnet.processing.preprocess`` at the test scale); a
    slide-mode model yields its slide windows.  Unreadable files are skipped with a
    CalibrationWarning; no readable image left → CCNetError.  Returns (batches, images used).
    """
    from ccnet.images import iter_images, load_image
    from ccnet.processing import preprocess, resize_logits, slide_windows

    if not os.path.isdir(images_dir):
        raise CCNetError(f"calibration image folder not found: {images_dir}")
    paths = list(iter_images(images_dir))
    if not paths:
        raise CCNetError(f"no images (.jpg/.jpeg/.png/.bmp) in {images_dir}: "
                         "pass a folder of representative images with --images")
    if num_images < 1:
        raise CCNetError(f"--num-images must be >= 1, got {num_images}")
    batches, used, skipped = [], 0, 0
    for path in paths:
        if used >= num_images:
            break
        try:
            batch = preprocess(load_image(path), meta)
        except CCNetError as e:
            warnings.warn(f"skipping calibration image: {e}", CalibrationWarning)
            skipped += 1
            continue
        used += 1
        if meta.mode == "slide":
            _, _, h, w = batch.shape
            batches += [np.ascontiguousarray(batch[:, :, y1:y2, x1:x2])
                        for y1, y2, x1, x2 in slide_windows(h, w, meta.crop_size, meta.stride)]
        else:
            batches.append(batch)
    if not used:
        raise CCNetError(f"none of the {skipped} image file(s) in {images_dir} could be read: "
                         "pass a folder of readable images with --images")
    # A model exported with static dims takes exactly that shape: resample the normalized input
    # (only the activation statistics matter here).
    batch_dim, _, static_h, static_w = input_shape
    fitted = []
    for b in batches:
        if static_h and static_w and b.shape[2:] != (static_h, static_w):
            b = resize_logits(b, (static_h, static_w), meta.align_corners)
        if batch_dim and batch_dim != b.shape[0]:
            b = np.repeat(b, batch_dim, axis=0)
        fitted.append(np.ascontiguousarray(b, dtype=np.float32))
    return fitted, used


def _data_reader(input_name: str, batches: List[np.ndarray], progress: bool, unit: str):
    from onnxruntime.quantization import CalibrationDataReader

    from ccnet.progress import progress_bar

    class _Reader(CalibrationDataReader):
        """Feeds the preprocessed batches to ORT's calibrator, with a progress bar."""

        def __init__(self):
            self._next = 0
            self._bar = progress_bar(total=len(batches), desc="calibrating", unit=unit,
                                     enabled=progress, leave=False)

        def get_next(self):
            if self._next >= len(batches):
                if self._bar is not None:
                    self._bar.close()
                return None
            batch = batches[self._next]
            self._next += 1
            if self._bar is not None:
                self._bar.update(1)
            return {input_name: batch}

    return _Reader()


# ----------------------------------------------------------------------------- cache
def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
            "minmax": CalibrationMethod.MinMax}[method]


def save_cache(path: str, tensors_data, model_sha256: str, method: str, num_images: int) -> dict:
    """Write our calibration cache (tensor → [min, max]) atomically; returns the dict written.

    The float32 range ends are written as Python floats (exact in JSON), so reading them back
    gives the same float32 values and therefore the same scales.
    """
    tensors = {}
    for name, data in sorted(tensors_data.data.items()):
        # Percentile ranges come as 1-element arrays, the others as 0-d arrays.
        low, high = (np.asarray(v, dtype=np.float32).reshape(-1) for v in data.range_value)
        if low.size != 1 or high.size != 1:
            raise RuntimeError(f"per-channel activation range for {name}: not supported")
        tensors[name] = [float(low[0]), float(high[0])]
    cache = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "model_sha256": model_sha256,
             "method": method, "num_images": num_images, "tensors": tensors}
    atomic_write(path, json.dumps(cache, indent=1, sort_keys=True).encode(), make_dirs=True)
    return cache


def load_cache(path: str, model_sha256: Optional[str] = None) -> dict:
    """Read a calibration cache; with ``model_sha256``, refuse a cache made for another model."""
    if not os.path.isfile(path):
        raise CCNetError(f"calibration cache not found: {path}: calibrate with --images first "
                         "(with --cache to write it)")
    try:
        with open(path) as f:
            cache = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CCNetError(f"cannot read calibration cache {path} ({e}): recalibrate with --images") from e
    if not isinstance(cache, dict) or cache.get("format") != CACHE_FORMAT or \
            not isinstance(cache.get("tensors"), dict) or cache.get("method") not in METHODS:
        raise CCNetError(f"{path} is not a ccnet calibration cache: recalibrate with --images "
                         "--cache to write one")
    if model_sha256 is not None and cache.get("model_sha256") != model_sha256:
        raise CCNetError(f"calibration cache {path} was made for another model (sha256 "
                         f"{str(cache.get('model_sha256'))[:12]}…, this model {model_sha256[:12]}…): "
                         "recalibrate with --images, or pass the cache of this exact ONNX file")
    return cache


def _tensors_data(cache: dict):
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    return TensorsData(_ort_method(cache["method"]), {
        name: TensorData(lowest=np.array(low, dtype=np.float32),
                         highest=np.array(high, dtype=np.float32))
        for name, (low, high) in cache["tensors"].items()})


# ----------------------------------------------------------------------------- graph edits
def quantize_residual_shortcuts(model: onnx.ModelProto, tensors_data) -> Tuple[int, int]:
    """Make every Conv-branch residual ``Add`` read its shortcut through Q/DQ (TensorRT fusion).

    NVIDIA's Q/DQ placement for ResNets quantizes the residual input of the Add so TensorRT
    fuses the Add (+ ReLU) into the Conv's epilogue in INT8.  ONNX Runtime's QDQ quantizer
    already gives identity shortcuts their DQ (the block input is quantized for the block's
    first Conv and every consumer reads the DQ).  Projection shortcuts end in a downsample Conv
    whose output has no Q/DQ (Conv outputs stay float): give it one, with the range calibrated
    for that tensor and ORT's own symmetric int8 scale rule.  Returns (identity, projection).
    """
    from onnx import helper, numpy_helper
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    producer = {o: n for n in model.graph.node for o in n.output}
    conv_readers: Dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Conv":
            source = _conv_float_input(node, producer)
            conv_readers[source] = conv_readers.get(source, 0) + 1
    identity = projection = 0
    new_nodes = []
    for add in model.graph.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        ops = [producer[t].op_type if t in producer else None for t in add.input]
        if ops.count("Conv") == 1 and "DequantizeLinear" in ops:
            identity += 1  # shortcut already read through the Q/DQ of the block input
        elif ops == ["Conv", "Conv"]:
            # The shortcut (downsample) Conv reads the block input, which the main branch's first
            # Conv reads too; the branch's last Conv reads a tensor nothing else reads.
            shortcut = next((t for t in add.input if t in tensors_data.data
                             and conv_readers.get(_conv_float_input(producer[t], producer), 0) > 1),
                            None)
            if shortcut is None:
                continue
            low, high = tensors_data.data[shortcut].range_value
            qmin, qmax = get_qmin_qmax_for_qType(onnx.TensorProto.INT8, symmetric=True)
            zero, scale = compute_scale_zp(low, high, qmin, qmax, symmetric=True)
            base = f"{shortcut}_shortcut"
            model.graph.initializer.extend([
                numpy_helper.from_array(np.asarray(scale, dtype=np.float32).reshape(()), f"{base}_scale"),
                numpy_helper.from_array(np.asarray(zero, dtype=np.int8).reshape(()), f"{base}_zero_point")])
            new_nodes += [
                helper.make_node("QuantizeLinear", [shortcut, f"{base}_scale", f"{base}_zero_point"],
                                 [f"{base}_q"], name=f"{base}_QuantizeLinear"),
                helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale",
                                                      f"{base}_zero_point"],
                                 [f"{base}_dq"], name=f"{base}_DequantizeLinear")]
            add.input[list(add.input).index(shortcut)] = f"{base}_dq"
            projection += 1
    if new_nodes:
        nodes = list(model.graph.node)
        for q, dq in zip(new_nodes[::2], new_nodes[1::2]):
            at = next(i for i, n in enumerate(nodes) if q.input[0] in n.output) + 1
            nodes[at:at] = [q, dq]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return identity, projection


def _conv_float_input(conv: onnx.NodeProto, producer: dict) -> str:
    """The float tensor a Conv reads (through its input DequantizeLinear, if any)."""
    src = producer.get(conv.input[0])
    if src is not None and src.op_type == "DequantizeLinear":
        q = producer.get(src.input[0])
        return q.input[0] if q is not None else conv.input[0]
    return conv.input[0]


def float_cca_inputs_from_qdq(model: onnx.ModelProto) -> int:
    """Read the CCA node inputs from the float tensors in front of their Q/DQ pairs, then drop
    the Q/DQ nodes nothing reads any more.  Returns the number of inputs rewired."""
    from export.graph import cca_nodes

    producer = {o: n for n in model.graph.node for o in n.output}
    rewired = 0
    for node in cca_nodes(model):
        for i, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
                rewired += 1
    while True:  # drop dead Q/DQ nodes (their only reader was the CCA node)
        used = {t for n in model.graph.node for t in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {t for n in model.graph.node for t in n.input}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for init in unused:  # their scales and zero points
        model.graph.initializer.remove(init)
    return rewired


def _cca_input_dq(model: onnx.ModelProto) -> List[str]:
    """CCA node inputs that come out of a DequantizeLinear (must be none)."""
    from export.graph import cca_nodes

    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [t for n in cca_nodes(model) for t in n.input if t in dq_outputs]


class _restore_level:
    def __init__(self, logger, level):
        self.logger, self.level = logger, level

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


# ----------------------------------------------------------------------------- quantize
def quantize(onnx_path: str, out_path: str, images_dir: Optional[str] = None,
             method: Optional[str] = None, num_images: int = DEFAULT_NUM_IMAGES,
             cache: Optional[str] = None, function: bool = True, progress: bool = True,
             residual_qdq: bool = True, target: str = "tensorrt") -> Dict[str, object]:
    """Quantize an exported FP32 CCNet ONNX to explicit Q/DQ INT8.

    Args:
        onnx_path: FP32 ONNX written by ccnet-export (function or plugin form).
        out_path: INT8 ONNX to write (atomically; nothing is written on error).
        images_dir: calibration images (first ``num_images`` readable files, sorted).
        method: ``entropy`` (default), ``percentile`` (99.999) or ``minmax``; with a cache and no
            images, the cache's method (an explicit different one is an error).
        cache: calibration cache JSON; written when calibrating from images, read (and checked
            against the model's sha256) when ``images_dir`` is None.
        function: keep the CCA node's model-local function (ONNX Runtime can run the file);
            False writes the plugin-only form (TensorRT with the plugin only).
        target: ``tensorrt`` (default): symmetric int8, Q/DQ in front of Convs only (the
            placement TensorRT fuses, see the module docstring).  ``ort-cpu``: ONNX Runtime's CPU
            recommendation (uint8 asymmetric activations, int8 per-channel weights, Conv outputs
            quantized so ORT runs QLinearConv/QLinearAdd; the CCA inputs are still read in
            float).  The calibrated ranges (and the cache) are the same for both.
        residual_qdq: give projection shortcuts of residual Adds a Q/DQ too (TensorRT fusion;
            see ``quantize_residual_shortcuts``).

    Returns a report dict (out, method, num_images, quantized_convs, residual_adds, ...).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import load_tensors_data, save_tensors_data
    from export.graph import attach_cca_function, cca_functions, cca_nodes, ensure_domain
    from export.metadata import set_metadata

    start = time.time()
    if method is not None and method not in METHODS:
        raise CCNetError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")
    if target not in TARGETS:
        raise CCNetError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    if images_dir is None and cache is None:
        raise CCNetError("no calibration data: pass --images DIR (and --cache FILE to save the "
                         "ranges), or --cache FILE of an earlier calibration of this model")
    model = load_onnx(onnx_path)
    meta = read_meta(model, onnx_path)
    if is_quantized(model):
        raise CCNetError(f"{onnx_path} is already quantized (it has Q/DQ or integer nodes): "
                         "calibrate the FP32 ONNX from ccnet-export instead")
    if meta.extra.get("precision", "fp32") != "fp32" or any(
            i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        raise CCNetError(f"{onnx_path} is not an FP32 model (precision "
                         f"{meta.extra.get('precision', 'fp16')}): calibrate the FP32 export")
    input_name, input_shape = _input_shape(model)
    model_sha256 = file_sha256(onnx_path)

    cached = None
    if images_dir is None:
        cached = load_cache(cache, model_sha256)
        if method is not None and method != cached["method"]:
            raise CCNetError(f"cache {cache} holds {cached['method']} ranges, not {method}: "
                             f"drop --method or recalibrate with --images --method {method}")
        method = cached["method"]
    method = method or "entropy"

    batches, used = [], int(cached["num_images"]) if cached else 0
    if cached is None:
        batches, used = calibration_batches(images_dir, meta, num_images, input_shape)

    # Calibration runs the model in ONNX Runtime: the CCA node needs its function for that.
    if cca_nodes(model) and not cca_functions(model):
        attach_cca_function(model)
    if target == "tensorrt":
        activation_type = QuantType.QInt8
        extra_options = {
            "ActivationSymmetric": True, "WeightSymmetric": True,
            # Q/DQ in front of Convs only: keeps the CCA inputs (Conv outputs) in float.
            "OpTypesToExcludeOutputQuantization": ["Conv"],
        }
    else:  # ORT CPU fuses DQ→Conv→Q into QLinearConv only with the output Q present
        activation_type = QuantType.QUInt8
        extra_options = {"ActivationSymmetric": False, "WeightSymmetric": True}
    root_logger, level = logging.getLogger(), logging.getLogger().level
    root_logger.setLevel(logging.ERROR)  # ORT's "consider pre-processing" chatter
    with _restore_level(root_logger, level), tempfile.TemporaryDirectory(prefix="ccnet_calib_") as tmp:
        prepared = os.path.join(tmp, "fp32.onnx")
        onnx.save(model, prepared)
        ort_cache = os.path.join(tmp, "ort_ranges.json")
        if cached is not None:
            save_tensors_data(_tensors_data(cached), ort_cache)
        quantized_path = os.path.join(tmp, "int8.onnx")
        reader = None
        if cached is None:
            reader = _data_reader(input_name, batches, progress,
                                  "window" if meta.mode == "slide" else "image")
        ort_prints = io.StringIO()  # ORT prints its histogram settings: debug detail, not output
        try:
            with contextlib.redirect_stdout(ort_prints):
                quantize_static(
                    prepared, quantized_path, calibration_data_reader=reader,
                    quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    per_channel=True, reduce_range=False, activation_type=activation_type,
                    weight_type=QuantType.QInt8, calibrate_method=_ort_method(method),
                    extra_options=extra_options, calibration_cache_path=ort_cache)
        except CCNetError:
            raise
        except Exception as e:
            raise CCNetError(f"ONNX Runtime could not calibrate {onnx_path} "
                             f"({type(e).__name__}: {first_line(e)}): "
                             "is it an unmodified ccnet-export file?") from e
        finally:
            if ort_prints.getvalue().strip():
                logging.getLogger(__name__).debug(ort_prints.getvalue().strip())
        ranges = load_tensors_data(ort_cache)
        qmodel = onnx.load(quantized_path)

    if target == "tensorrt":
        identity_adds, projection_adds = quantize_residual_shortcuts(qmodel, ranges) \
            if residual_qdq else (0, 0)
    else:
        identity_adds = projection_adds = 0
        float_cca_inputs_from_qdq(qmodel)
    quantized_cca_inputs = _cca_input_dq(qmodel)
    if quantized_cca_inputs:  # our placement promise; would mean ORT changed behaviour
        raise RuntimeError(f"CCA inputs {quantized_cca_inputs} were quantized")
    if not function:
        keep = [f for f in qmodel.functions if f not in cca_functions(qmodel)]
        del qmodel.functions[:]
        qmodel.functions.extend(keep)
        ensure_domain(qmodel)  # the plugin form still declares the custom domain
    elif cca_nodes(qmodel) and not cca_functions(qmodel):
        attach_cca_function(qmodel)
    extra = dict(meta.extra, precision="int8", function=bool(function),
                 calibration={"method": method, "num_images": used, "model_sha256": model_sha256,
                              "target": target,
                              "activations": "int8 symmetric per-tensor" if target == "tensorrt"
                              else "uint8 asymmetric per-tensor",
                              "weights": "int8 symmetric per-channel",
                              "quantized_ops": ["Conv"], "residual_qdq": bool(residual_qdq)})
    set_metadata(qmodel, meta.replace(extra=extra))
    if cache is not None and cached is None:
        save_cache(cache, ranges, model_sha256, method, used)
    atomic_write(out_path, qmodel.SerializeToString(), make_dirs=True)
    return {
        "out": out_path, "method": method, "num_images": used, "num_batches": len(batches),
        "from_cache": cached is not None, "cache": cache, "model_sha256": model_sha256,
        "quantized_convs": sum(n.op_type == "Conv" for n in qmodel.graph.node),
        "residual_adds": identity_adds + projection_adds, "projection_shortcuts": projection_adds, "calibrated_tensors": len(ranges.data),
        "function": bool(function), "target": target, "seconds": round(time.time() - start, 2),
    }

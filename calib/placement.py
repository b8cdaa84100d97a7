"""Where Q/DQ nodes go, per deployment target: one table row per target (``PLACEMENTS``).

``tensorrt`` (default), the placement TensorRT's strongly typed INT8 fuses:

- every Conv input and weight is quantized (symmetric int8; weights per output channel; the bias
  becomes int32 at input_scale × weight_scale) and Conv outputs are NOT (Q/DQ only in front of a
  Conv, so TensorRT fuses Conv+bias+ReLU and keeps the next layer's Q as the output);
- the shortcut input of every ResNet residual ``Add`` is read through Q/DQ (NVIDIA's Q/DQ
  guidance for ResNets), so TensorRT fuses the Add (and ReLU) into the Conv's epilogue in INT8
  (``qdq_graph.quantize_residual_shortcuts``);
- the criss-cross attention node, its inputs (query/key/value Conv outputs), its softmax and the
  ``gamma * out + x`` residual stay float;
- Convs kept in float by the mixed-precision search simply have no Q/DQ.

``ort-cpu``: ONNX Runtime's CPU recommendation (uint8 asymmetric activations, int8 per-channel
weights, Conv outputs quantized so ONNX Runtime fuses DQ→Conv→Q into QLinearConv); the Q/DQ
that this puts in front of the criss-cross inputs is removed so the attention stays float.

The calibrated ranges are the same for every target; only the placement differs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Collection, Dict

import onnx

from ccnet.errors import CCNetError, first_line

from .calibrate import Ranges, ort_method, ort_prints_as_debug_log, to_tensors_data
from .qdq_graph import cca_inputs_through_dq, float_cca_inputs_from_qdq, quantize_residual_shortcuts


@dataclass(frozen=True)
class Placement:
    """One deployment target's Q/DQ rules."""

    name: str
    activations: str  # int8 symmetric / uint8 asymmetric, per tensor
    quantize_conv_outputs: bool
    residual_shortcuts: bool
    help: str

    def ort_arguments(self) -> dict:
        """Keyword arguments of ONNX Runtime's ``quantize_static`` for this placement."""
        from onnxruntime.quantization import QuantType

        if self.activations.startswith("int8"):
            extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
            activation_type = QuantType.QInt8
        else:
            extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
            activation_type = QuantType.QUInt8
        if not self.quantize_conv_outputs:
            # Q/DQ in front of Convs only: keeps the CCA inputs (Conv outputs) in float.
            extra["OpTypesToExcludeOutputQuantization"] = ["Conv"]
        return {"activation_type": activation_type, "extra_options": extra}

    def finish(self, model: onnx.ModelProto, ranges: Ranges, float_convs: Collection[str],
               residual_qdq: bool = True) -> Dict[str, int]:
        """Placement edits after ONNX Runtime's quantizer; returns counts for the report."""
        identity = projection = 0
        if self.residual_shortcuts and residual_qdq:
            identity, projection = quantize_residual_shortcuts(model, ranges, float_convs)
        if self.quantize_conv_outputs:
            float_cca_inputs_from_qdq(model)
        quantized = cca_inputs_through_dq(model)
        if quantized:  # our placement promise; would mean ONNX Runtime changed behaviour
            raise RuntimeError(f"CCA inputs {quantized} were quantized")
        return {"residual_adds": identity + projection, "projection_shortcuts": projection}


PLACEMENTS: Dict[str, Placement] = {
    "tensorrt": Placement(
        "tensorrt", "int8 symmetric per-tensor", quantize_conv_outputs=False,
        residual_shortcuts=True,
        help="symmetric int8, Q/DQ in front of Convs and on residual shortcuts (what TensorRT "
             "fuses)"),
    "ort-cpu": Placement(
        "ort-cpu", "uint8 asymmetric per-tensor", quantize_conv_outputs=True,
        residual_shortcuts=False,
        help="uint8 activations, Conv outputs quantized (what ONNX Runtime CPU runs fast)"),
}
WEIGHTS = "int8 symmetric per-channel"


def quantize_graph(prepared_path: str, ranges: Ranges, method: str, placement: Placement,
                   workdir: str, float_convs: Collection[str] = (),
                   residual_qdq: bool = True):
    """ONNX Runtime's QDQ quantizer on ``prepared_path`` with the given ranges and placement;
    Convs named in ``float_convs`` stay float.  Returns (model, counts)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    ort_cache = os.path.join(workdir, "ort_ranges.json")
    save_tensors_data(to_tensors_data(ranges, method), ort_cache)
    out = os.path.join(workdir, "int8.onnx")
    try:
        with ort_prints_as_debug_log():
            quantize_static(
                prepared_path, out, calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"], per_channel=True, reduce_range=False,
                weight_type=QuantType.QInt8, calibrate_method=ort_method(method),
                nodes_to_exclude=list(float_convs), calibration_cache_path=ort_cache,
                **placement.ort_arguments())
    except Exception as e:
        raise CCNetError(f"ONNX Runtime could not insert Q/DQ nodes ({type(e).__name__}: "
                         f"{first_line(e)}): quantize the FP32 file written by ccnet export") from e
    finally:
        os.remove(ort_cache)
    model = onnx.load(out)
    counts = placement.finish(model, ranges, set(float_convs), residual_qdq)
    return model, counts

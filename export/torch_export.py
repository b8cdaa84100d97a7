"""The PyTorch side of the export: the model to trace and ``torch.onnx.export`` with the
criss-cross attention op translated to ONE custom node carrying the contract's attributes."""
from __future__ import annotations

import copy
from typing import Optional

import onnx

from ccnet.errors import CCNetError

from .graph import DEFAULT_OPSET, contract, node_attributes, register_schema

DYNAMIC_NAMES = ("batch", "height", "width")


def load_torch_model(ckpt, config=None, allow_nonfinite: bool = False):
    """A CPU CCNet in eval mode from a loaded model (copied off the GPU if needed) or anything
    ``ccnet.load_model`` accepts."""
    import torch

    if isinstance(ckpt, torch.nn.Module):
        model = ckpt
    else:
        from ccnet.checkpoint import load_model

        model = load_model(ckpt, config, allow_nonfinite=allow_nonfinite)
    model = model.eval()
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    return model


def labels_module(model):
    """``model`` with an in-graph argmax: logits → int64 N×H×W label map."""
    import torch

    class LabelsHead(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.argmax(self.net(x), dim=1)

    return LabelsHead(model).eval()


def _cca_translation():
    """onnxscript translation of the custom op: one node with the contract's attributes."""
    import onnxscript

    c = contract()
    domain = onnxscript.values.Opset(c["domain"], 1)
    attrs = node_attributes()

    def criss_cross_attention(query, key, value):
        return getattr(domain, c["op_type"])(query, key, value, **attrs)

    return criss_cross_attention


def torch_export(module, opset: int, batch: Optional[int], height: Optional[int],
                 width: Optional[int], output: str) -> onnx.ModelProto:
    """``torch.onnx.export`` (dynamo) of ``module`` with input ``input`` and output ``output``;
    dims given as None stay dynamic."""
    import torch

    register_schema()
    sample = torch.randn(batch or 2, 3, height or 64, width or 96)
    fixed = (batch, height, width)
    dims = {i: torch.export.Dim(name) for i, name, value in zip((0, 2, 3), DYNAMIC_NAMES, fixed)
            if value is None}
    program = torch.onnx.export(
        module, (sample,), None, dynamo=True, opset_version=opset, input_names=["input"],
        output_names=[output], dynamic_shapes={"x": dims} if dims else None,
        custom_translation_table={
            torch.ops.ccnet.criss_cross_attention.default: _cca_translation()},
        optimize=True, verbose=False)
    model = program.model_proto
    got = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if got != opset:
        raise CCNetError(f"the exporter could not write opset {opset} (got {got}): use --opset "
                         f"{got} or {DEFAULT_OPSET}")
    return model

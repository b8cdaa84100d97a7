"""Export a CCNet checkpoint to ONNX with each criss-cross attention as ONE custom node.

    ccnet export --model CKPT --out model.onnx [--fp16] [--cca native] ...
    python export/to_onnx.py --ckpt CKPT --out model.onnx          (the same, as a script)

Graph contract: input ``input`` float32 N×3×H×W (mmseg's normalized RGB; mean/std in the
metadata), output ``logits`` float32 N×C×H×W at the input resolution (or ``labels`` int64 N×H×W).
``label_head=True`` appends the resize back to a requested size and the argmax
(``export/label_head.py``): a second input ``output_size`` (empty 0×H'×W') and output
``labels`` uint8/int32 N×H'×W'.
With ``cca="plugin"`` (default) each CCA is a ``CrissCrossAttention`` node (domain, attributes:
plugins/cca_op.json) plus a model-local function with a standard-op body, so ONNX Runtime runs
the file as is and TensorRT maps the node to the plugin; ``function=False`` drops the function
(plugin-only form); ``cca="native"`` inlines the body (no custom op).  The file is checked and
compared with PyTorch before it is written.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Script entry (python export/to_onnx.py): the repository root replaces this folder on the
    # path and the command line module runs as the main program (library code never imports
    # the CLI layer).
    import os as _os
    import runpy as _runpy
    import sys as _sys

    _sys.path[0] = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    _runpy.run_module("cli.export", run_name="__main__", alter_sys=True)

import copy
import os
import time
from typing import Callable, Optional, Sequence, Tuple

import onnx
import onnx.inliner

import ccnet
from ccnet.errors import CCNetError
from ccnet.files import check_output_file
from ccnet.meta import ModelMeta

from .graph import DEFAULT_OPSET, MIN_OPSET, attach_cca_function, cca_nodes, contract, ensure_domain
from .label_head import add_label_head, require_whole_mode, with_head_metadata
from .metadata import set_metadata
from .torch_export import labels_module, load_torch_model, torch_export
from .verify import (MIN_SIZE, ImageLike, Tolerance, verification_inputs,
                     verify_against_torch, verify_label_head, write_verified)

CCA_FORMS = ("plugin", "native")
OUTPUTS = ("logits", "labels")


def check_options(opset: int, batch, height, width, output: str, cca: str, function: bool,
                  label_head: bool = False) -> None:
    """One-line errors for export options that cannot work, before anything is loaded."""
    if label_head and output != "logits":
        raise CCNetError("--label-head resizes and argmaxes the logits in the graph: drop "
                         "--output labels")
    if cca not in CCA_FORMS:
        raise CCNetError(f"unknown --cca {cca!r}: use 'plugin' or 'native'")
    if output not in OUTPUTS:
        raise CCNetError(f"unknown --output {output!r}: use 'logits' or 'labels'")
    if cca == "native" and not function:
        raise CCNetError("--no-function only applies to --cca plugin (the native form has no "
                         "custom node): drop one of them")
    highest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise CCNetError(f"opset {opset} is too low: the CCA function body needs opset >= "
                         f"{MIN_OPSET} (CastLike, model-local functions); use --opset "
                         f"{DEFAULT_OPSET}")
    if opset > highest:
        raise CCNetError(f"opset {opset} is newer than this onnx package supports ({highest}); "
                         f"use --opset {DEFAULT_OPSET}")
    if batch is not None and batch < 1:
        raise CCNetError(f"--batch {batch} must be >= 1 (or omit it for a dynamic batch)")
    for name, value in (("height", height), ("width", width)):
        if value is not None and value < MIN_SIZE:
            raise CCNetError(f"--{name} {value} is smaller than the network accepts "
                             f"({MIN_SIZE} px, two feature cells at output stride 8); "
                             f"use >= {MIN_SIZE} or omit it for a dynamic {name}")


def build_metadata(meta: ModelMeta, cca: str, function: bool, precision: str, output: str,
                   batch, height, width) -> ModelMeta:
    """The model's metadata plus the file's own facts: contract, precision, CCA form."""
    dims = [batch or "batch", 3, height or "height", width or "width"]
    out_shape = ([dims[0], meta.num_classes, dims[2], dims[3]] if output == "logits"
                 else [dims[0], dims[2], dims[3]])
    extra = dict(meta.extra)
    extra.update({
        "toolkit_version": ccnet.__version__, "cca": cca, "function": bool(function),
        "precision": precision,
        "contract": {
            "input": {"name": "input", "dtype": "float32", "layout": "NCHW",
                      "normalized_rgb": True, "shape": dims},
            "output": {"name": output, "dtype": "float32" if output == "logits" else "int64",
                       "shape": out_shape}}})
    return meta.replace(extra=extra)


def cca_form(exported: onnx.ModelProto, cca: str, function: bool) -> onnx.ModelProto:
    """The file to write for the requested CCA form (``exported`` has nodes + function)."""
    if cca == "native":
        native = onnx.inliner.inline_local_functions(exported)
        domain = contract()["domain"]
        kept = [o for o in native.opset_import if o.domain != domain]
        del native.opset_import[:]
        native.opset_import.extend(kept)
        if any(n.domain == domain for n in native.graph.node):
            raise CCNetError("verification failed: the native form still has custom nodes")
        return native
    if not function:
        plugin_only = copy.deepcopy(exported)
        del plugin_only.functions[:]
        ensure_domain(plugin_only)
        return plugin_only
    return exported


def _traced(model, module, opset: int, batch, height, width, output: str) -> onnx.ModelProto:
    """``module`` through the exporter, with the CCA function attached and one CCA node per
    recurrence step."""
    exported = torch_export(module, opset, batch, height, width, output)
    attach_cca_function(exported)  # after export: the exporter would inline it
    num_cca = len(cca_nodes(exported))
    if num_cca != model.config.recurrence:
        raise CCNetError(f"export produced {num_cca} CCA nodes, expected recurrence="
                         f"{model.config.recurrence}")
    return exported


def _verify_head(results, runnable, logits, inputs, meta, log) -> None:
    """Add the label head's agreement with the host resize + argmax of ``logits`` (ORT's output
    of ``runnable`` for each input) to each verification row."""
    head = verify_label_head(add_label_head(runnable, meta), logits, inputs, meta, log)
    for result, head_result in zip(results, head):
        result["label_head"] = head_result


def export_onnx(ckpt, out, config=None, opset: int = DEFAULT_OPSET, batch: Optional[int] = None,
                height: Optional[int] = None, width: Optional[int] = None,
                output: str = "logits", cca: str = "plugin", function: bool = True,
                fp16: bool = False, verify: bool = True, log: Callable = print,
                verify_image: ImageLike = None,
                verify_sizes: Optional[Sequence[Tuple[int, int, int]]] = None,
                label_head: bool = False, tolerance: Tolerance = Tolerance(),
                allow_nonfinite: bool = False) -> dict:
    """Export a CCNet (checkpoint as for ``ccnet.load_model``, or a loaded CCNet) to ``out``.

    ``verify_image`` (a path or BGR array; default a synthetic photo) is what the file is
    compared with PyTorch on: at the model's test scale capped to 512 px, and at a second size
    with batch 2 — or at the (N, H, W) ``verify_sizes``, and must meet ``tolerance`` (argmax
    agreement, polygraphy-style atol/rtol).  ``label_head``: append the resize back and argmax
    (``export/label_head.py``), verified against the host resize + argmax.  Returns a report:
    out, opset, cca, function, precision, output, label_head, cca_nodes, verification (per input:
    shape, agreement, max_abs_error, p99_abs_error, max_abs_logit; label_head: its agreement),
    seconds.  Raises CCNetError on bad input or a failed check,
    leaving no file.
    """
    start = time.time()
    check_options(opset, batch, height, width, output, cca, function, label_head)
    out = check_output_file(os.fspath(out), what="ONNX output")
    model = load_torch_model(ckpt, config, allow_nonfinite)
    if label_head:
        require_whole_mode(model.meta)
    module = model if output == "logits" else labels_module(model)
    precision = "fp16" if fp16 else "fp32"

    log(f"exporting {model.meta.name} (opset {opset}, cca={cca}, function={function}, "
        f"{precision}, output={output}{', label head' if label_head else ''})")
    exported = _traced(model, module, opset, batch, height, width, output)
    inputs = (verification_inputs(model.meta, batch, height, width, verify_image, verify_sizes)
              if (verify or fp16) else [])
    if fp16:
        from .to_fp16 import convert_model

        exported = convert_model(exported, calibration_feed={"input": inputs[0]}, log=log)
    written = cca_form(exported, cca, function)
    # ONNX Runtime needs the function body, so the plugin-only form is verified with it.
    runnable = written if cca == "native" else exported
    meta = build_metadata(model.meta, cca, function, precision, output, batch, height, width)
    if label_head:
        written, meta = add_label_head(written, meta), with_head_metadata(meta)
    set_metadata(written, meta)

    def verify_fn(_path):
        if not verify:
            return []
        logits = [] if label_head else None
        results = verify_against_torch(runnable, module, inputs, output == "labels", fp16, log,
                                       tolerance, ort_outputs=logits)
        if label_head:
            _verify_head(results, runnable, logits, inputs, meta, log)
        return results

    verification = write_verified(written, out, verify_fn, full_check=verify, log=log)
    report = {"out": out, "opset": opset, "cca": cca, "function": function,
              "precision": precision, "output": output, "label_head": bool(label_head),
              "cca_nodes": len(cca_nodes(written)), "verification": verification,
              "seconds": round(time.time() - start, 1)}
    log(f"wrote {out} ({report['cca_nodes']} CCA node(s), {report['seconds']} s)")
    return report

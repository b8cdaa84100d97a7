"""INT8 post-training quantization of an exported CCNet ONNX into explicit Q/DQ form.

TensorRT 10/11 builds INT8 only from explicit QuantizeLinear/DequantizeLinear nodes (strongly
typed networks), so the INT8 artefact is an ONNX file.  ``quantize`` runs the steps, each in its
own module:

1. ``source``: read and check the FP32 ccnet-export file;
2. ``selection`` + ``data``: choose the photos (folder, glob or list; label maps skipped; seeded
   shuffle) and pre-process them exactly as inference does;
3. ``calibrate``: activation ranges with ONNX Runtime's calibrators, inputs of any sizes
   (or ``cache``: the ranges of an earlier run, checked);
4. ``placement`` + ``qdq_graph``: Q/DQ nodes placed for the target (a table of targets);
   ``sensitivity``: optionally the Convs to keep in float; ``modelopt_quantizer``: ModelOpt's
   placement instead of ours;
5. metadata (``ModelMeta.extra["calibration"]``: method, photos, placement, layers kept in
   float) and the atomic write.

CLI: ``ccnet calibrate --model model.onnx --images DIR --out model_int8.onnx``.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import onnx

from ccnet.errors import CCNetError
from ccnet.files import atomic_write, check_output_file
from ccnet.labels import label_head_of
from export.label_head import add_label_head

from .cache import check_ranges, load_cache, save_cache
from .calibrate import Ranges, calibrated_tensor_names, collect_ranges
from .data import CalibrationData, load_calibration_data
from .options import DEFAULT_METHOD, QuantOptions
from .placement import PLACEMENTS, WEIGHTS, quantize_graph
from .qdq_graph import conv_names, int8_conv_names
from .selection import candidate_photos
from .source import SourceModel, load_source


@dataclass
class Calibration:
    """The ranges to quantize with, and where they came from."""

    method: str
    ranges: Ranges
    data: CalibrationData = field(default_factory=CalibrationData)
    cache: Optional[dict] = None  # the cache read, when the ranges come from one
    clip_search: Optional[str] = None  # how the ranges were refined after the range method

    @property
    def num_images(self) -> int:
        return int(self.cache["num_images"]) if self.cache else len(self.data.images)


def quantize(onnx_path: str, out_path: str, images_dir: Optional[str] = None,
             cache: Optional[str] = None, image_list: Optional[str] = None,
             holdout: Optional[str] = None, options: Optional[QuantOptions] = None,
             **option_fields) -> Dict[str, object]:
    """Quantize an exported FP32 CCNet ONNX to explicit Q/DQ INT8.

    Args:
        onnx_path: FP32 ONNX written by ccnet export (function or plugin form).
        out_path: INT8 ONNX to write (atomically; nothing is written on error).
        images_dir: calibration photos: a folder (recursive; label folders and label PNGs are
            skipped) or a glob pattern.  ``image_list``: a text file of photo paths instead.
        holdout: photos (folder or glob) to measure agreement on for ``target_agreement`` /
            ``max_fallback``; default: ``holdout_images`` photos held out of the calibration
            photos.
        cache: calibration cache JSON; written when calibrating from photos, read (and checked
            against this exact model) when no photos are given.
        options: a ``QuantOptions``; keyword arguments override its fields (``method``,
            ``num_images``, ``seed``, ``target``, ``quantizer``, ``function``, ``residual_qdq``,
            ``clip_search``,
            ``target_agreement``, ``max_fallback``, ``holdout_images``, ``sensitivity_json``,
            ``progress``).

    Returns a report dict (out, method, num_images, images, quantized_convs, fallback_layers,
    residual_adds, ...).
    """
    start = time.time()
    options = (options or QuantOptions()).replace(**option_fields).checked()
    _check_outputs(out_path, cache if (images_dir or image_list) else None, options)
    if images_dir is None and image_list is None and cache is None:
        raise CCNetError("no calibration data: pass --images DIR (and --cache FILE to save the "
                         "ranges), or --cache FILE of an earlier calibration of this model")
    if options.mixed_precision and images_dir is None and image_list is None:
        raise CCNetError("--target-agreement/--max-fallback measure agreement on held-out "
                         "photos: pass --images or --list (with --cache the ranges still come "
                         "from photos)")
    if holdout is not None and not options.mixed_precision:
        raise CCNetError("--holdout photos measure agreement for --target-agreement/"
                         "--max-fallback: add one of them or drop --holdout")
    source = load_source(onnx_path)
    with tempfile.TemporaryDirectory(prefix="ccnet_calib_") as workdir:
        prepared = source.prepared(workdir)
        calibration = _calibrate(source, prepared, (images_dir, image_list, holdout), cache,
                                 options, workdir)
        qmodel, details = _place(source, prepared, calibration, options, workdir)
    if label_head_of(source.meta):  # set aside by load_source, re-attached to the INT8 graph
        qmodel = add_label_head(qmodel, source.meta)
    info = _calibration_metadata(qmodel, source, calibration, options, details)
    # Metadata last: its checksum (export.metadata) covers the whole graph, head included.
    _finish(qmodel, source, options, info)
    if cache is not None and calibration.cache is None:
        save_cache(cache, calibration.ranges, source.sha256, calibration.method,
                   calibration.data.images, calibration.data.holdout, options.seed,
                   calibration.clip_search)
    atomic_write(out_path, qmodel.SerializeToString(), make_dirs=True)
    return _report(out_path, cache, source, calibration, options, details, info, start)


def _check_outputs(out_path: str, cache_out: Optional[str], options: QuantOptions) -> None:
    """Refuse output paths we could not write before any calibration work."""
    check_output_file(out_path, (".onnx",), "INT8 ONNX output", make_dirs=True)
    if cache_out is not None:
        check_output_file(cache_out, (".json",), "calibration cache", make_dirs=True)
    if options.sensitivity_json is not None:
        check_output_file(options.sensitivity_json, (".json",), "sensitivity table",
                          make_dirs=True)


def _calibrate(source: SourceModel, prepared: str, photos: tuple, cache: Optional[str],
               options: QuantOptions, workdir: str) -> Calibration:
    """Ranges from photos (``photos``: images_dir, image_list, holdout; and the held-out
    photos), or from the cache alone."""
    images_dir, image_list, holdout = photos
    if images_dir is None and image_list is None:
        cached = load_cache(cache, source.sha256, calibrated_tensor_names(source.model))
        if options.method is not None and options.method != cached["method"]:
            raise CCNetError(f"cache {cache} holds {cached['method']} ranges, not "
                             f"{options.method}: drop --method or recalibrate with --images "
                             f"--method {options.method}")
        if options.clip_search is not None and options.clip_search != cached["clip_search"]:
            raise CCNetError(f"cache {cache} holds ranges made without --clip-search "
                             f"{options.clip_search}: drop --clip-search or recalibrate with "
                             f"--images --clip-search {options.clip_search}")
        return Calibration(cached["method"], cached["tensors"], cache=cached,
                           clip_search=cached["clip_search"])
    method = options.method or DEFAULT_METHOD
    data = load_calibration_data(
        candidate_photos(images_dir, image_list), source.meta, options.num_images,
        options.holdout_images if options.mixed_precision else 0, options.seed,
        source.input_shape, None if holdout is None else candidate_photos(holdout))
    ranges = collect_ranges(prepared, source.input_name, data.items, method, workdir,
                            options.progress, source.unit)
    ranges = check_ranges(ranges, f"calibration of {source.path}")
    if options.clip_search:
        ranges = _search_clips(source, prepared, ranges, method, data, options, workdir)
    return Calibration(method, ranges, data, clip_search=options.clip_search)


def _search_clips(source: SourceModel, prepared: str, ranges: Ranges, method: str,
                  data: CalibrationData, options: QuantOptions, workdir: str) -> Ranges:
    """``--clip-search mse``: per-tensor thresholds by layer output error (``clip_search``),
    with the weights of the all-INT8 model."""
    from .clip_search import search_clips

    all_int8, _ = quantize_graph(prepared, ranges, method, PLACEMENTS[options.target], workdir)
    searched = search_clips(prepared, all_int8, ranges, source.input_name, data.batches,
                            options.progress)
    return check_ranges(searched, f"clip search on {source.path}")


def _place(source: SourceModel, prepared: str, calibration: Calibration, options: QuantOptions,
           workdir: str):
    """The quantized model and what decided its placement (fallback choice, counts)."""
    if options.quantizer == "modelopt":
        from .modelopt_quantizer import MODELOPT_OPSET, quantize_modelopt

        items = calibration.data.items
        if not items:
            raise CCNetError("--quantizer modelopt calibrates on photos: pass --images or --list")
        model = quantize_modelopt(source.prepared(workdir, MODELOPT_OPSET), source.input_name,
                                  items, calibration.ranges, workdir)
        return model, {"residual_adds": None, "projection_shortcuts": None, "choice": None}
    placement = PLACEMENTS[options.target]

    def build(float_convs):
        return quantize_graph(prepared, calibration.ranges, calibration.method, placement,
                              workdir, float_convs, options.residual_qdq)

    choice = _choose_fallback(source, prepared, calibration, options, build)
    model, counts = build(choice.fallback if choice else ())
    return model, dict(counts, choice=choice)


def _choose_fallback(source: SourceModel, prepared: str, calibration: Calibration,
                     options: QuantOptions, build):
    """With --target-agreement/--max-fallback: the sensitivity search (its table written)."""
    if not options.mixed_precision:
        return None
    from .sensitivity import AgreementProbe, choose_fallback, sensitivity_report, write_sensitivity

    probe = AgreementProbe(prepared, source.input_name, source.meta,
                           calibration.data.holdout_photos)
    convs = conv_names(source.model)
    choice = choose_fallback(lambda float_convs: build(float_convs)[0], probe, convs,
                             options.target_agreement, options.max_fallback, options.progress,
                             table=options.sensitivity_json is not None)
    if options.sensitivity_json:
        write_sensitivity(sensitivity_report(choice, len(convs), calibration.data.holdout),
                          options.sensitivity_json)
    if not choice.target_met:
        raise CCNetError(
            f"INT8 reaches {choice.agreement_pct:.3f} % agreement with FP32 on the held-out "
            f"photos with {len(choice.fallback)} of {len(convs)} Convs in float, below "
            f"--target-agreement {choice.target_agreement}: allow more with --max-fallback or "
            "lower the target" + (f" (table: {options.sensitivity_json})"
                                  if options.sensitivity_json else ""))
    return choice


def _finish(qmodel: onnx.ModelProto, source: SourceModel, options: QuantOptions,
            info: dict) -> None:
    """Function or plugin form, and the metadata (``info`` as ``extra["calibration"]``)."""
    from export.graph import attach_cca_function, cca_functions, cca_nodes, ensure_domain
    from export.metadata import set_metadata

    if not options.function:
        keep = [f for f in qmodel.functions if f not in cca_functions(qmodel)]
        del qmodel.functions[:]
        qmodel.functions.extend(keep)
        ensure_domain(qmodel)  # the plugin form still declares the custom domain
    elif cca_nodes(qmodel):
        attach_cca_function(qmodel)  # at the quantized model's opset
    meta = source.meta
    extra = dict(meta.extra, precision="int8", function=bool(options.function), calibration=info)
    set_metadata(qmodel, meta.replace(extra=extra))


def _calibration_metadata(qmodel, source, calibration, options, details) -> dict:
    """What ``extra["calibration"]`` records (the Q/DQ edits and form changes leave the Convs
    as they are, so it is read once from the placed model)."""
    choice = details.get("choice")
    placement = PLACEMENTS[options.target]
    convs = conv_names(qmodel)
    int8 = int8_conv_names(qmodel)
    int8_set = set(int8)
    return {
        "method": calibration.method, "clip_search": calibration.clip_search,
        "num_images": calibration.num_images, "images": [os.path.basename(p) for p in calibration.data.images],
        "seed": options.seed if calibration.cache is None else calibration.cache.get("seed"),
        "model_sha256": source.sha256, "target": options.target,
        "quantizer": options.quantizer, "activations": placement.activations,
        "weights": WEIGHTS, "quantized_ops": ["Conv"], "residual_qdq": bool(options.residual_qdq),
        "convs": len(convs), "int8_convs": len(int8),
        "fallback_layers": [n for n in convs if n not in int8_set],
        "fallback_precision": "fp32",
        "target_agreement_pct": options.target_agreement,
        "holdout_agreement_pct": choice.agreement_pct if choice else None,
    }


def _report(out_path, cache, source, calibration, options, details, info, start) -> dict:
    data = calibration.data
    return {
        "out": out_path, "method": calibration.method, "clip_search": calibration.clip_search,
        "num_images": calibration.num_images,
        "images": list(data.images), "holdout_images": list(data.holdout),
        "skipped": list(data.skipped), "num_batches": len(data.batches),
        "from_cache": calibration.cache is not None, "cache": cache,
        "model_sha256": source.sha256, "quantizer": options.quantizer,
        "quantized_convs": info["int8_convs"], "convs": info["convs"],
        "fallback_layers": info["fallback_layers"],
        "holdout_agreement_pct": info["holdout_agreement_pct"],
        "residual_adds": details.get("residual_adds"),
        "projection_shortcuts": details.get("projection_shortcuts"),
        "calibrated_tensors": len(calibration.ranges), "function": bool(options.function),
        "target": options.target, "sensitivity_json": options.sensitivity_json,
        "seconds": round(time.time() - start, 2),
    }


"""Activation ranges from calibration inputs of any sizes, with ONNX Runtime's calibrators.

ONNX Runtime's histogram calibrators (entropy, percentile) stack every input's activations into
one array per tensor, which fails as soon as two photos have different sizes (keep-ratio resize
gives every VOC/ADE20K photo its own H×W).  Instead of forcing one shape (padding adds flat
regions the model never sees and shifts the histograms towards their values; cropping drops the
image borders), the inputs are fed **shape by shape**: one ``collect_data`` call per group of
same-shaped inputs on the same calibrator.  ONNX Runtime's collectors merge what each call adds
into the running statistics (min/max: the extremes; histograms: counts added bin by bin, the bin
grid extended with the same bin width when a later input reaches further), so the result is the
histogram of all activation values of all photos, each pixel counted once — the statistics the
same photos would give if they had one size, with no synthetic content.

``collect_ranges`` returns plain ``{tensor: (low, high)}`` float32 pairs; the quantizer always
reads ranges through ``to_tensors_data`` from that form, whether they were just measured or read
back from a cache, which is why a cache reproduces the scales bit-exactly.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from collections import OrderedDict
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from ccnet.errors import CCNetError, first_line

LOG = logging.getLogger(__name__)
Ranges = Dict[str, Tuple[float, float]]
# Inputs per collect call: bounds the activations ONNX Runtime holds in memory at once.
CHUNK = 4


@contextlib.contextmanager
def ort_prints_as_debug_log() -> Iterator[None]:
    """ONNX Runtime's quantization tools print their histogram settings and progress notes to
    stdout: debug detail, not output; they become one debug log line."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        if printed.getvalue().strip():
            LOG.debug(printed.getvalue().strip())


def ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
            "minmax": CalibrationMethod.MinMax}[method]


def shape_groups(items: Sequence[Tuple[str, np.ndarray]]) -> "OrderedDict[tuple, list]":
    """(photo, batch) pairs grouped by batch shape, groups and members in first-seen order."""
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for path, batch in items:
        groups.setdefault(tuple(batch.shape), []).append((path, batch))
    return groups


def data_reader(input_name: str, items, bar=None):
    """An ONNX Runtime CalibrationDataReader over (photo, batch) ``items`` (ticks ``bar``)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        """Feeds the inputs to a calibrator one by one."""

        def __init__(self):
            self._items = iter(items)

        def get_next(self):
            item = next(self._items, None)
            if item is None:
                return None
            if bar is not None:
                bar.update(1)
            return {input_name: item[1]}

    return _Reader()


def collect_ranges(model_path: str, input_name: str, items: Sequence[Tuple[str, np.ndarray]],
                   method: str, workdir: str, progress: bool = True,
                   unit: str = "image") -> Ranges:
    """Calibrate the Conv inputs/outputs of ``model_path`` on (photo, batch) ``items``."""
    from onnxruntime.quantization.calibrate import create_calibrator

    from ccnet.progress import progress_bar

    try:
        calibrator = create_calibrator(
            model_path, ["Conv"], augmented_model_path=os.path.join(workdir, "augmented.onnx"),
            calibrate_method=ort_method(method))
    except Exception as e:
        raise CCNetError(f"ONNX Runtime cannot prepare {model_path} for calibration "
                         f"({type(e).__name__}: {first_line(e)}): pass the FP32 ONNX written "
                         "by ccnet export") from e
    bar = progress_bar(total=len(items), desc="calibrating", unit=unit, enabled=progress,
                       leave=False)
    try:
        with ort_prints_as_debug_log():
            for shape, group in shape_groups(items).items():
                _collect_group(calibrator, input_name, shape, group, bar)
            return ranges_of(calibrator.compute_data())
    finally:
        if bar is not None:
            bar.close()


def _collect_group(calibrator, input_name: str, shape: tuple, group: list, bar) -> None:
    """Feed one group of same-shaped inputs, CHUNK at a time."""
    for start in range(0, len(group), CHUNK):
        chunk = group[start:start + CHUNK]
        try:
            calibrator.collect_data(data_reader(input_name, chunk, bar))
        except Exception as e:
            raise CCNetError(
                f"the model cannot run on calibration input {'×'.join(map(str, shape))} from "
                f"{chunk[0][0]} ({type(e).__name__}: {first_line(e)}): remove that photo or "
                "give photos the model's test scale can process") from e


def ranges_of(tensors_data) -> Ranges:
    """ONNX Runtime TensorsData → ``{tensor: (low, high)}`` as Python floats of float32."""
    ranges = {}
    for name, data in sorted(tensors_data.data.items()):
        # Percentile ranges come as 1-element arrays, the others as 0-d arrays.
        low, high = (np.asarray(v, dtype=np.float32).reshape(-1) for v in data.range_value)
        if low.size != 1 or high.size != 1:
            raise RuntimeError(f"per-channel activation range for {name}: not supported")
        ranges[name] = (float(low[0]), float(high[0]))
    return ranges


def to_tensors_data(ranges: Ranges, method: str):
    """``{tensor: (low, high)}`` → ONNX Runtime TensorsData (float32 0-d arrays)."""
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    return TensorsData(ort_method(method), {
        name: TensorData(lowest=np.array(low, dtype=np.float32),
                         highest=np.array(high, dtype=np.float32))
        for name, (low, high) in ranges.items()})


def calibrated_tensor_names(model) -> List[str]:
    """The float tensors the calibrator measures: inputs and outputs of every Conv that are
    not initializers (what a cache for this model must hold)."""
    initializers = {i.name for i in model.graph.initializer}
    names = {t for n in model.graph.node if n.op_type == "Conv"
             for t in list(n.input) + list(n.output) if t and t not in initializers}
    return sorted(names)

"""Sensitivity-guided mixed precision: which Convs to keep in float so INT8 agrees with FP32.

Method (**one layer quantized at a time**): for every Conv, the FP32 model with only that Conv
in INT8 (our placement, the calibrated ranges) runs on the held-out photos, and its logits are
compared with the FP32 model's: the relative squared error (``relative_error``, the ranking key)
and the share of pixels whose argmax class changes (``disagreement_pct``, reported).  Measured in
isolation, each number is that layer's own error, not masked by the other layers' (dropping one
layer at a time from a full INT8 model measures the same effect inside the noise of all the
others).  The logit error ranks better than the flip count: the layers' errors roughly add up
in it (on the built-in model the 32 per-layer errors sum to 6.6e-4, the full INT8 model has
5.2e-4), while a flip count is coarse and depends on which other errors push a pixel over its
margin.  On the built-in model's real photos, keeping the top 4, 6, 8 or 12 layers by error in
float agreed better with FP32 than the top layers by flips (equal within 0.03 points at 16), and
the top 6 by error better than 6 chosen by a greedy search that re-measured every candidate at
each step (bench/RESULTS.md).

The search then keeps the top-k layers in float for growing k (1, 2, 4, … then bisection between
the last miss and the first hit, assuming agreement grows with k) until the full INT8 model with
those layers in float reaches ``target_agreement`` on the held-out photos, or takes the top
``max_fallback`` layers when no target is given.

Cost: one quantization (ONNX Runtime's quantizer) and one pass over the held-out photos per
Conv, plus about 2·log2(k) more for the search; for the built-in model (32 Convs, 7 held-out
photos) 1–2 minutes on 2 CPU cores shared with other jobs.
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import onnx

from ccnet.errors import CCNetError, first_line
from ccnet.files import atomic_write, write_json


@dataclass
class LayerSensitivity:
    name: str
    disagreement_pct: float  # % of held-out pixels whose class changes with this Conv in INT8
    relative_error: float  # ‖logits_int8 − logits_fp32‖² / ‖logits_fp32‖²


@dataclass
class FallbackChoice:
    """The layers kept in float and what was measured to choose them."""

    layers: List[LayerSensitivity]  # most sensitive first
    fallback: List[str]
    agreement_pct: float  # of the chosen model on the held-out photos
    all_int8_agreement_pct: float
    steps: List[Dict[str, float]] = field(default_factory=list)  # {"fallback", "agreement_pct"}
    target_agreement: Optional[float] = None
    max_fallback: Optional[int] = None
    seconds: float = 0.0

    @property
    def target_met(self) -> bool:
        return self.target_agreement is None or self.agreement_pct >= self.target_agreement


class AgreementProbe:
    """Runs candidate models on held-out photos through the full inference pipeline
    (``ccnet.processing.segment``: pre-processing, network, logits resized back to the photo)
    and compares them with the FP32 model, pixel by pixel at the photo's own size — what
    ``ccnet parity`` measures."""

    def __init__(self, fp32_path: str, input_name: str, meta, images: Sequence[np.ndarray]):
        if not images:
            raise CCNetError("no held-out photos to measure agreement on: add photos")
        self.input_name, self.meta, self.images = input_name, meta, list(images)
        self.reference = self._run(fp32_path)
        self.labels = [r.argmax(0) for r in self.reference]
        self.pixels = sum(label.size for label in self.labels)
        self.power = sum(float(np.square(r, dtype=np.float64).sum()) for r in self.reference)

    def _run(self, model) -> List[np.ndarray]:
        """Logits (C×H×W at the photo size) of every held-out photo."""
        import onnxruntime as ort

        from ccnet.processing import segment

        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
        try:
            session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])

            def infer(batch):
                return session.run(None, {self.input_name: batch})[0]

            return [segment(image, self.meta, infer).logits for image in self.images]
        except CCNetError:
            raise
        except Exception as e:
            raise CCNetError(f"ONNX Runtime cannot run a candidate model on the held-out photos "
                             f"({type(e).__name__}: {first_line(e)})") from e

    def measure(self, model) -> Dict[str, float]:
        """Agreement (%) of ``model``'s labels with FP32's, and the logits' relative error."""
        outputs = self._run(model)
        agree = sum(int(np.count_nonzero(o.argmax(0) == label))
                    for o, label in zip(outputs, self.labels))
        error = sum(float(np.square(o - r, dtype=np.float64).sum())
                    for o, r in zip(outputs, self.reference))
        return {"agreement_pct": 100.0 * agree / self.pixels,
                "relative_error": error / self.power if self.power else 0.0}


Build = Callable[[Sequence[str]], onnx.ModelProto]  # float Convs → INT8 model


def rank_layers(build: Build, probe: AgreementProbe, convs: Sequence[str],
                progress: bool = True) -> List[LayerSensitivity]:
    """Every Conv alone in INT8 (the others float), most sensitive first."""
    from ccnet.progress import progress_bar

    table = []
    bar = progress_bar(total=len(convs), desc="sensitivity", unit="layer", enabled=progress,
                       leave=False)
    for name in convs:
        result = probe.measure(build([c for c in convs if c != name]))
        table.append(LayerSensitivity(name, 100.0 - result["agreement_pct"],
                                      result["relative_error"]))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return sorted(table, key=lambda s: (-s.relative_error, -s.disagreement_pct, s.name))


def search_fallback(build: Build, probe: AgreementProbe, layers: List[LayerSensitivity],
                    target: Optional[float], max_fallback: Optional[int],
                    measured: Optional[Dict[int, float]] = None) -> FallbackChoice:
    """Fewest top-ranked layers in float that reach ``target`` (or the top ``max_fallback``).
    ``measured``: agreements already known by fallback count (e.g. {0: all-INT8})."""
    ranked = [s.name for s in layers]
    limit = len(ranked) if max_fallback is None else min(max_fallback, len(ranked))
    measured = dict(measured or {})

    def agreement(k: int) -> float:
        if k not in measured:
            measured[k] = probe.measure(build(ranked[:k]))["agreement_pct"]
        return measured[k]

    best = limit if target is None else _smallest_meeting(agreement, target, limit)
    agreement(0)
    steps = [{"fallback": k, "agreement_pct": measured[k]} for k in sorted(measured)]
    return FallbackChoice(layers, ranked[:best], agreement(best), measured[0], steps, target,
                          max_fallback)


def _smallest_meeting(agreement: Callable[[int], float], target: float, limit: int) -> int:
    """Smallest k <= limit with agreement(k) >= target by doubling then bisection; ``limit``
    (the best allowed) when none reaches it."""
    if agreement(0) >= target:
        return 0
    miss, hit = 0, None
    k = 1
    while k <= limit:
        if agreement(k) >= target:
            hit = k
            break
        miss, k = k, k * 2
    if hit is None:
        if limit > miss and agreement(limit) >= target:
            hit = limit
        else:
            return limit
    while hit - miss > 1:
        mid = (miss + hit) // 2
        if agreement(mid) >= target:
            hit = mid
        else:
            miss = mid
    return hit


def choose_fallback(build: Build, probe: AgreementProbe, convs: Sequence[str],
                    target: Optional[float], max_fallback: Optional[int],
                    progress: bool = True, table: bool = False) -> FallbackChoice:
    """Rank the Convs, then search the fallback set (see the module docstring).  The ranking
    is skipped when nothing may or needs to fall back, unless ``table`` asks for it."""
    start = time.time()
    all_int8 = probe.measure(build([]))["agreement_pct"]
    needed = max_fallback != 0 and (target is None or all_int8 < target)
    layers = rank_layers(build, probe, convs, progress) if needed or table else []
    choice = search_fallback(build, probe, layers, target, max_fallback, {0: all_int8})
    choice.seconds = round(time.time() - start, 1)
    return choice


# ----------------------------------------------------------------------------- report files
def sensitivity_report(choice: FallbackChoice, convs: int, holdout: Sequence[str]) -> dict:
    fallback = set(choice.fallback)
    return {
        "method": "one Conv in INT8 at a time vs FP32 on held-out photos",
        "holdout_images": list(holdout), "target_agreement_pct": choice.target_agreement,
        "max_fallback": choice.max_fallback, "target_met": choice.target_met,
        "convs": convs, "int8_convs": convs - len(choice.fallback),
        "fallback_layers": choice.fallback, "agreement_pct": choice.agreement_pct,
        "all_int8_agreement_pct": choice.all_int8_agreement_pct, "steps": choice.steps,
        "seconds": choice.seconds,
        "layers": [dict(asdict(s), rank=i + 1, fallback=s.name in fallback)
                   for i, s in enumerate(choice.layers)],
    }


def write_sensitivity(report: dict, json_path: str) -> str:
    """Write the table as JSON and its plot beside it (same name, .png); returns the plot."""
    plot = os.path.splitext(json_path)[0] + ".png"
    write_json(json_path, report, make_dirs=True)
    plot_sensitivity(report, plot)
    return plot


def plot_sensitivity(report: dict, out: str) -> None:
    """Per-layer disagreement bars (fallback layers highlighted) and agreement vs fallback."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(max(8.0, 0.3 * len(layers) + 4), 4.5),
                                      gridspec_kw={"width_ratios": [3, 1]})
    x = np.arange(len(layers))
    bars.bar(x, [max(s["disagreement_pct"], 1e-4) for s in layers],
             color=["tab:red" if s["fallback"] else "tab:blue" for s in layers])
    bars.set_yscale("log")
    bars.set_xticks(x)
    bars.set_xticklabels([s["name"] for s in layers], rotation=75, ha="right", fontsize=6)
    bars.set_ylabel("pixels changed vs FP32, % (this Conv alone INT8)")
    bars.set_title(f"Conv sensitivity (red: kept in float, {len(report['fallback_layers'])})")
    steps = report["steps"]
    curve.plot([s["fallback"] for s in steps], [s["agreement_pct"] for s in steps], "o-")
    if report["target_agreement_pct"] is not None:
        curve.axhline(report["target_agreement_pct"], color="tab:red", linestyle="--")
    curve.set_xlabel("Convs kept in float")
    curve.set_ylabel("agreement with FP32, %")
    fig.tight_layout()
    png = io.BytesIO()
    try:
        fig.savefig(png, dpi=110, format="png")
    finally:
        plt.close(fig)
    atomic_write(out, png.getvalue(), make_dirs=True)

"""`segcheck tune --png`: every trial's speed-up against its INT8 mIoU drop, the tolerance as a line and the chosen
trial marked, so the speed cost of each layer kept in FP32 is seen at a glance."""

from __future__ import annotations

import io
from pathlib import Path

from .. import atomic
from ..results.chart import BAD, NEUTRAL, OK
from .search import Outcome


def draw(outcome: Outcome, tolerance: float, model: str, path) -> Path:
    """The trials of `outcome` as a PNG at `path`, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    for number, trial in enumerate(outcome.trials, 1):
        chosen = trial is outcome.chosen
        low, high = trial.miou_interval  # a percentile interval of a ratio may not hold its own point: clamped
        ax.errorbar(trial.drop_miou, trial.speedup, xerr=[[max(0.0, trial.drop_miou - low)], [max(0.0, high - trial.drop_miou)]],
                    fmt="*" if chosen else "o", markersize=16 if chosen else 7, capsize=3,
                    color=OK if trial.passed else BAD, zorder=3 if chosen else 2)
        ax.annotate(str(number), (trial.drop_miou, trial.speedup), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.axvline(tolerance, color=NEUTRAL, linestyle="--", label=f"allowed mIoU drop {tolerance:.2f}")
    ax.set_xlabel("INT8 mIoU drop below FP32, points (95% interval)")
    ax.set_ylabel("INT8 speed-up over FP32 (same process)")
    chosen = f"chosen: trial {outcome.trials.index(outcome.chosen) + 1}" if outcome.chosen else "no trial passed"
    ax.set_title(f"segcheck tune {model}: {len(outcome.trials)} trials, {chosen} (green passes, red fails)")
    ax.legend(loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic.write_bytes(Path(path), buffer.getvalue())

"""The results as one PNG people read instead of the table: per model, the INT8 drop against its tolerance,
the speed-up against its minimum, a heatmap of per-class IoU changes and the per-layer SQNR.

Every bar is labelled where it stands, each curve's lowest layer in the legend; the colour bar sits beside the
heatmap, never over data.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from .. import atomic
from ..errors import SegcheckError
from .records import RunResults

OK, BAD, NEUTRAL = "#2e7d32", "#c62828", "#9e9e9e"
MAX_CLASSES = 40  # heatmap columns: the classes that moved most when a dataset has more


def _drops(results: RunResults, names: list) -> list:
    """(label, INT8 - FP32 in points, tolerance or None) per model and metric."""
    bars = []
    for name in names:
        m = results.models[name]
        for metric, label in (("pixacc", "pixAcc"), ("miou", "mIoU")):
            a, b = getattr(m.fp32, metric), getattr(m.int8, metric)
            if a is not None and b is not None:
                bars.append((f"{name}  {label}", b - a, m.tolerances.get(f"int8_drop_{metric}_points")))
    return bars


def _heat(results: RunResults, names: list):
    """(row names, class names, rows of INT8 - FP32 IoU in points with NaN where undefined) or None."""
    import numpy as np

    rows, classes = [], None
    for name in names:
        m = results.models[name]
        if m.fp32.iou is None or m.int8.iou is None:
            continue
        classes = classes or m.classes
        if m.classes != classes:
            continue  # one heatmap per class list: models of another dataset are left out of it
        rows.append((name, [np.nan if a is None or b is None else b - a for a, b in zip(m.fp32.iou, m.int8.iou)]))
    if not rows:
        return None
    values = np.array([r[1] for r in rows], dtype=float)
    moved = np.nan_to_num(np.abs(values), nan=-1.0).max(axis=0)
    keep = [i for i in np.argsort(-moved, kind="stable")[:MAX_CLASSES] if moved[i] >= 0]
    keep.sort()
    return [r[0] for r in rows], [classes[i] for i in keep], values[:, keep]


def chart(results: RunResults, path) -> Path:
    """Draw `results` to a PNG at `path`, written atomically."""
    return atomic.write_bytes(path, png(results))


def png(results: RunResults) -> bytes:
    """`results` drawn as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(results)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def figure(results: RunResults):
    """The chart as a matplotlib figure: the first row the INT8 drop, the speed-up and the class heatmap, the second the
    per-layer SQNR curves. Constrained layout sizes every panel around its labels, so that none runs into another."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(results.models)
    if not names:
        raise SegcheckError("no model results to chart; run pytest first")
    drops, heat = _drops(results, names), _heat(results, names)
    curves = [n for n in names if results.models[n].layers]
    top_height = max(3.5, 0.3 * max(len(drops), 2 * len(names)) + 1.6)
    rows = 2 if curves else 1
    fig = plt.figure(figsize=(22 if heat else 13, top_height + (4.5 if curves else 0)), layout="constrained")
    outer = fig.add_gridspec(rows, 1, height_ratios=[top_height, 4.5][:rows])
    grid = outer[0].subgridspec(1, 3 if heat else 2, width_ratios=[1.0, 1.0, 2.2][:3 if heat else 2])
    ax_drop, ax_speed = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    _draw_drops(ax_drop, drops)
    _draw_speedups(ax_speed, results, names)
    if heat is not None:
        _draw_heat(fig, fig.add_subplot(grid[0, 2]), heat)
    if curves:
        _draw_layers(fig.add_subplot(outer[1]), results, curves)
    fig.suptitle(f"segcheck: {results.tier} tier, {results.environment.get('isa', '?')}, mIoU convention "
                 f"{results.convention or '?'}" + ("" if heat else "; no per-class IoU in these results"), fontsize=12)
    return fig


def _draw_drops(ax, drops: list) -> None:
    for i, (label, delta, tol) in enumerate(drops):
        fine = tol is None or delta >= -tol
        ax.barh(i, delta, color=OK if fine else BAD, height=0.6)
        if tol is not None:
            ax.plot([-tol, -tol], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.annotate(f"{delta:+.2f}" + (f" (limit -{tol:.3g})" if tol is not None else ""), (max(delta, 0), i),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    limit = max([abs(d) for _, d, _ in drops] + [t or 0 for _, _, t in drops] + [0.5]) * 1.3
    ax.set_xlim(-limit, limit * 1.6)  # room on the right for the labels
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(drops)), [label for label, _, _ in drops], fontsize=8)
    ax.set_ylim(len(drops) - 0.5, -0.5)
    ax.set_xlabel("INT8 - FP32 (points)\nblack tick: the allowed drop")
    ax.set_title("INT8 drop against its tolerance")


def _draw_speedups(ax, results: RunResults, names: list) -> None:
    speed_names = [n for n in names if results.models[n].fp32.latency_ms and results.models[n].int8.latency_ms]
    for i, name in enumerate(speed_names):
        m = results.models[name]
        ratio = m.speedup()
        fine = m.min_speedup is None or ratio >= m.min_speedup
        ax.barh(i, ratio, color=(OK if fine else BAD) if m.min_speedup is not None else NEUTRAL, height=0.6)
        if m.min_speedup is not None:
            ax.plot([m.min_speedup] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
        spread = (f", IQR {m.fp32.latency_iqr_pct:.0f}/{m.int8.latency_iqr_pct:.0f}%"
                  if m.int8.latency_iqr_pct is not None and m.fp32.latency_iqr_pct is not None else "")
        note = f"{ratio:.2f}x" + (f" (min {m.min_speedup:.1f}x)" if m.min_speedup is not None else "") + spread
        ax.annotate(note, (ratio, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
    top = max([results.models[n].speedup() for n in speed_names] + [1.0])
    ax.set_xlim(0, top * 2.0)
    ax.axvline(1, color=NEUTRAL, linewidth=0.8, linestyle=":")
    ax.set_yticks(range(len(speed_names)), speed_names, fontsize=8)
    ax.set_ylim(len(speed_names) - 0.5, -0.5)
    ax.set_xlabel("FP32 / INT8 latency (minimum of rounds)\nblack tick: the minimum; grey: no minimum; IQR FP32/INT8")
    ax.set_title(f"speed-up on {results.environment.get('isa', 'an unnamed ISA')}")


def _draw_heat(fig, ax, heat) -> None:
    import numpy as np

    rows, classes, values = heat
    bound = max(1.0, float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
    for (r, c), v in np.ndenumerate(values):
        if not math.isnan(v) and abs(v) >= 0.05:
            ax.text(c, r, f"{v:+.1f}", ha="center", va="center", fontsize=6, color="white" if abs(v) > bound * 0.6 else "black")
    ax.set_title("per-class IoU, INT8 - FP32 (points; blank: class absent)")
    fig.colorbar(image, ax=ax, label="points", fraction=0.04, pad=0.01)


def _draw_layers(ax, results: RunResults, curves: list) -> None:
    """One SQNR curve per model, its lowest layer marked on the curve and named in the legend (labels on the curves
    pile up where the models' heads end together)."""
    import numpy as np

    for name in curves:
        layers = results.models[name].layers
        values = [layer["sqnr_db"] for layer in layers]
        worst = int(np.argmin(values))
        (line,) = ax.plot(range(len(values)), values, linewidth=1.2,
                          label=f"{name}: lowest {values[worst]:.1f} dB at #{worst} {layers[worst]['name']}")
        ax.plot([worst], [values[worst]], marker="o", markersize=5, color=line.get_color())
    floor = min(results.models[n].tolerances.get("sqnr_floor_db", 0) for n in curves)
    ax.axhline(floor, color=BAD, linewidth=1, linestyle="--")
    ax.set_xlabel("quantized layer, in graph order (dashed: the SQNR floor; dots: each model's lowest layer)")
    ax.set_ylabel("SQNR of INT8 vs FP32 (dB)")
    ax.set_title("per-layer error")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)

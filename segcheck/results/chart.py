"""The results as one PNG people read instead of the table: per model, the INT8 drop against its tolerance,
the speed-up against its minimum, and a heatmap of per-class IoU changes.

Every mark is labelled where it stands; the colour bar sits beside the heatmap, never over data.
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = sorted(results.models)
    if not names:
        raise SegcheckError("no model results to chart; run pytest first")
    drops, heat = _drops(results, names), _heat(results, names)
    curves = [n for n in names if results.models[n].layers]
    height = max(4.0, 0.42 * max(len(drops), 2 * len(names)) + 1.8)
    rows = 2 if curves else 1
    fig = plt.figure(figsize=(20 if heat else 12, height + (4.2 if curves else 0)))
    outer = fig.add_gridspec(rows, 1, height_ratios=[height, 4.2][:rows], hspace=0.55)
    if heat is None:
        grid = outer[0].subgridspec(1, 2, width_ratios=[1.25, 1.0], wspace=0.55)
        ax_drop, ax_speed = (fig.add_subplot(grid[0, i]) for i in range(2))
    else:
        grid = outer[0].subgridspec(1, 4, width_ratios=[1.25, 1.0, 2.6, 0.05], wspace=0.6)
        ax_drop, ax_speed, ax_heat, ax_bar = (fig.add_subplot(grid[0, i]) for i in range(4))
    if curves:
        ax_layers = fig.add_subplot(outer[1])
        for name in curves:
            values = [layer["sqnr_db"] for layer in results.models[name].layers]
            ax_layers.plot(range(len(values)), values, linewidth=1.2, label=name)
            worst = int(np.argmin(values))
            ax_layers.annotate(f"{name}: {results.models[name].layers[worst]['name']} {values[worst]:.1f} dB",
                               (worst, values[worst]), xytext=(0, -14), textcoords="offset points", fontsize=7, ha="center")
        floor = min(results.models[n].tolerances.get("sqnr_floor_db", 0) for n in curves)
        ax_layers.axhline(floor, color=BAD, linewidth=1, linestyle="--")
        ax_layers.set_xlabel("quantized layer, in graph order (dashed: the SQNR floor)")
        ax_layers.set_ylabel("SQNR of INT8 vs FP32 (dB)")
        ax_layers.set_title("per-layer error (lowest point of each model labelled)")
        ax_layers.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)

    y = np.arange(len(drops))
    for i, (label, delta, tol) in enumerate(drops):
        fine = tol is None or delta >= -tol
        ax_drop.barh(i, delta, color=OK if fine else BAD, height=0.6)
        if tol is not None:
            ax_drop.plot([-tol, -tol], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax_drop.annotate(f"{delta:+.2f}" + (f" (limit -{tol:.1f})" if tol is not None else ""), (max(delta, 0), i),
                         xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    limit = max([abs(d) for _, d, _ in drops] + [t or 0 for _, _, t in drops] + [0.5]) * 1.6
    ax_drop.set_xlim(-limit, limit * 0.9)
    ax_drop.axvline(0, color="black", linewidth=0.8)
    ax_drop.set_yticks(y, [label for label, _, _ in drops], fontsize=8)
    ax_drop.invert_yaxis()
    ax_drop.set_xlabel("INT8 - FP32 (points); black tick: the allowed drop")
    ax_drop.set_title("INT8 drop against its tolerance")

    speed_names = [n for n in names if results.models[n].fp32.latency_ms and results.models[n].int8.latency_ms]
    for i, name in enumerate(speed_names):
        m = results.models[name]
        ratio = m.speedup()
        fine = m.min_speedup is None or ratio >= m.min_speedup
        ax_speed.barh(i, ratio, color=(OK if fine else BAD) if m.min_speedup is not None else NEUTRAL, height=0.6)
        if m.min_speedup is not None:
            ax_speed.plot([m.min_speedup] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
        spread = (f"\nIQR FP32 {m.fp32.latency_iqr_pct:.0f}%, INT8 {m.int8.latency_iqr_pct:.0f}%"
                  if m.int8.latency_iqr_pct is not None and m.fp32.latency_iqr_pct is not None else "")
        note = f"{ratio:.2f}x" + (f" (min {m.min_speedup:.1f}x)" if m.min_speedup is not None else " (no minimum)") + spread
        ax_speed.annotate(note, (ratio, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    top = max([results.models[n].speedup() for n in speed_names] + [1.0])
    ax_speed.set_xlim(0, top * 2.3)
    ax_speed.axvline(1, color=NEUTRAL, linewidth=0.8, linestyle=":")
    ax_speed.set_yticks(range(len(speed_names)), speed_names, fontsize=8)
    ax_speed.invert_yaxis()
    ax_speed.set_xlabel("FP32 / INT8 latency (minimum of rounds); black tick: the minimum")
    ax_speed.set_title(f"speed-up on {results.environment.get('isa', 'an unnamed ISA')}")

    if heat is not None:
        rows, classes, values = heat
        bound = max(1.0, float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0)
        image = ax_heat.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        ax_heat.set_yticks(range(len(rows)), rows, fontsize=8)
        ax_heat.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
        for (r, c), v in np.ndenumerate(values):
            if not math.isnan(v) and abs(v) >= 0.05:
                ax_heat.text(c, r, f"{v:+.1f}", ha="center", va="center", fontsize=6,
                             color="white" if abs(v) > bound * 0.6 else "black")
        ax_heat.set_title("per-class IoU, INT8 - FP32 (points; blank: class absent)")
        fig.colorbar(image, cax=ax_bar, label="points")
    fig.suptitle(f"segcheck: {results.tier} tier, {results.environment.get('isa', '?')}, mIoU convention "
                 f"{results.convention or '?'}" + ("" if heat else "; no per-class IoU in these results"), fontsize=12)
    fig.subplots_adjust(left=0.12 if heat else 0.2, right=0.88 if curves else 0.97, bottom=0.1 if curves else 0.22,
                        top=0.9 if curves else 0.8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic.write_bytes(path, buffer.getvalue())

"""`segcheck compare BEFORE.json AFTER.json`: two runs of the same models in two environments (an MXNet upgrade,
another oneDNN ISA cap) side by side, as text and a PNG, so the change is read before it is accepted.

Per model in both runs: accuracy, speed-up and status before -> after, the classes whose IoU moved most, the layers
whose SQNR moved most and the calibrated ranges that moved most; models in one run only are listed as such.
"""

from __future__ import annotations

import io
import json
import math
import sys
from dataclasses import asdict, dataclass

import numpy as np

from .. import atomic
from ..config import options
from ..errors import SegcheckError
from ..gate.checks import SEED_PREFIX
from ..measure import calibration, sqnr
from ..measure.environment import KEY_FIELDS
from . import report
from .chart import BAD, NEUTRAL, OK
from .records import ModelResult, RunResults

TOP = 5  # moved classes, layers and ranges shown per model (and per precision for classes)
AFTER_COLOUR = "#1565c0"
METRICS = (("pixacc", "pixAcc", True), ("miou", "mIoU", False))  # attribute, label, shown in percent


def _magnitude(delta: float) -> float:
    """How far a change moved, for ranking: NaN (a value that became undefined) ranks with the largest."""
    return math.inf if math.isnan(delta) else abs(delta)


@dataclass(frozen=True)
class Change:
    """One figure before -> after; delta is None when either side is missing."""

    before: float | None
    after: float | None
    delta: float | None

    @classmethod
    def of(cls, before, after) -> Change:
        return cls(before, after, None if before is None or after is None else after - before)


@dataclass(frozen=True)
class ClassMove:
    precision: str
    name: str
    change: Change  # IoU in percent; before or after None: the class is absent from label and prediction in that run


@dataclass(frozen=True)
class LayerMove:
    name: str
    change: Change  # SQNR in dB; before None: the layer appeared, after None: it vanished


@dataclass(frozen=True)
class RangeMove:
    name: str
    before: dict | None  # the calibration table's entry ({"range": [min, max], settings...}); None: absent
    after: dict | None
    relative: float | None  # max(|dmin|, |dmax|) over the before range's larger bound; None when appeared or vanished
    settings: tuple = ()  # the quantization settings (out_type, ...) that changed


@dataclass(frozen=True)
class ModelComparison:
    name: str
    figures: dict  # "fp32_pixacc", "fp32_miou", "int8_pixacc", "int8_miou" -> Change
    speedup: Change  # FP32 / INT8 latency (minimum of the rounds)
    status: tuple  # (before, after): PASS, or the first failing check
    differs: dict  # setting, subset, INT8 source that differ: key -> (before, after)
    classes: tuple  # ClassMove, largest IoU change first, top TOP per precision
    classes_undefined: tuple  # ClassMove with IoU in one run only
    layers: tuple  # LayerMove, largest SQNR change first, top TOP
    layers_changed: tuple  # LayerMove of layers that appeared or vanished
    ranges: tuple  # RangeMove, largest relative change first, top TOP
    ranges_changed: tuple  # RangeMove of ranges that appeared or vanished
    has_iou: bool
    has_layers: bool
    has_ranges: bool


@dataclass(frozen=True)
class Comparison:
    labels: tuple  # (before, after): what the two runs are called (their files)
    environment: tuple  # (before, after) environment dicts
    changed: tuple  # environment keys whose value differs, key fields (mxnet, onednn, isa) first
    run: dict  # tier, convention -> (before, after)
    models: tuple  # ModelComparison per model in both runs, by name
    only_before: tuple
    only_after: tuple

    def to_dict(self) -> dict:
        return asdict(self)


def _same(a: float, b: float) -> bool:
    """Equal, or both NaN (a range or SQNR undefined in both runs has not moved)."""
    return a == b or (math.isnan(a) and math.isnan(b))


def _classes(before: ModelResult, after: ModelResult) -> tuple[list, list]:
    moved, undefined = [], []
    for precision in ("fp32", "int8"):
        old, new = before.figures(precision).iou, after.figures(precision).iou
        if old is None or new is None:
            continue
        old_named = dict(zip(before.classes or [f"class {i}" for i in range(len(old))], old))
        new_named = dict(zip(after.classes or [f"class {i}" for i in range(len(new))], new))
        ranked = []
        for name in list(old_named) + [n for n in new_named if n not in old_named]:
            change = Change.of(old_named.get(name), new_named.get(name))
            if change.delta is not None and change.delta != 0:
                ranked.append(ClassMove(precision, name, change))
            elif (change.before is None) != (change.after is None):
                undefined.append(ClassMove(precision, name, change))
        ranked.sort(key=lambda c: -_magnitude(c.change.delta))
        moved += ranked[:TOP]
    return moved, undefined


def _layer_sqnr(before: ModelResult, after: ModelResult) -> tuple[dict, dict]:
    """Each layer's SQNR in the two results: pooled over the images both measured where both kept each image's figures
    (a run measures 8 or 48), else as each run measured it."""
    curves = [before.layer_curves(), after.layer_curves()]
    lengths = {len(c[0]) for curve in curves for c in curve.values() if len(c[0]) == len(c[1])}
    if not lengths or any(len(c[0]) != len(c[1]) or not len(c[0]) for curve in curves for c in curve.values()):
        return tuple({layer["name"]: layer["sqnr_db"] for layer in m.layers} for m in (before, after))
    n = min(lengths)
    return tuple({k: round(float(sqnr.pooled(np.ones((1, n)), c[0][:n], c[1][:n])[0]), 3) for k, c in curve.items()}
                 for curve in curves)


def _layers(before: ModelResult, after: ModelResult) -> tuple[list, list]:
    old, new = _layer_sqnr(before, after)
    moved, changed = [], []
    for name in list(old) + [n for n in new if n not in old]:
        if name not in old or name not in new:
            changed.append(LayerMove(name, Change.of(old.get(name), new.get(name))))
            continue
        a, b = old[name], new[name]
        if a is None or b is None or _same(a, b):
            continue
        moved.append(LayerMove(name, Change(a, b, b - a)))
    moved.sort(key=lambda m: -_magnitude(m.change.delta))
    return moved[:TOP], changed


def _ranges(before: ModelResult, after: ModelResult) -> tuple[list, list]:
    old, new = before.ranges, after.ranges
    moved, changed = [], []
    for name in list(old) + [n for n in new if n not in old]:
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            changed.append(RangeMove(name, a, b, None))
            continue
        scale = max(abs(a["range"][0]), abs(a["range"][1]), 1e-12)
        relative = max((0.0 if _same(x, y) else abs(y - x) for x, y in zip(a["range"], b["range"])), default=0.0) / scale
        settings = tuple(k for k in calibration.SETTINGS if a.get(k) != b.get(k))
        if relative != 0 or settings:
            moved.append(RangeMove(name, a, b, relative, settings))
    moved.sort(key=lambda r: -_magnitude(r.relative))
    return moved[:TOP], changed


def _model(before: ModelResult, after: ModelResult) -> ModelComparison:
    figures = {f"{p}_{metric}": Change.of(getattr(before.figures(p), metric), getattr(after.figures(p), metric))
               for p in ("fp32", "int8") for metric, _, _ in METRICS}
    differs = {key: (getattr(before, key), getattr(after, key))
               for key in ("setting", "subset", "int8_source") if getattr(before, key) != getattr(after, key)}
    classes, undefined = _classes(before, after)
    layers, layers_changed = _layers(before, after)
    ranges, ranges_changed = _ranges(before, after)
    return ModelComparison(
        name=before.name, figures=figures, speedup=Change.of(before.speedup(), after.speedup()),
        status=(before.status(), after.status()), differs=differs,
        classes=tuple(classes), classes_undefined=tuple(undefined),
        layers=tuple(layers), layers_changed=tuple(layers_changed),
        ranges=tuple(ranges), ranges_changed=tuple(ranges_changed),
        has_iou=any(before.figures(p).iou is not None and after.figures(p).iou is not None for p in ("fp32", "int8")),
        has_layers=bool(before.layers and after.layers), has_ranges=bool(before.ranges and after.ranges))


def compare(before: RunResults, after: RunResults, labels: tuple = ("before", "after")) -> Comparison:
    """What changed from `before` to `after`, per model in both; `labels` name the two runs in the report."""
    keys = dict.fromkeys([k for k in KEY_FIELDS if k in before.environment or k in after.environment]
                         + list(before.environment) + list(after.environment))
    changed = tuple(k for k in keys if before.environment.get(k) != after.environment.get(k))
    both = sorted(set(before.models) & set(after.models))
    return Comparison(
        labels=tuple(labels), environment=(dict(before.environment), dict(after.environment)), changed=changed,
        run={key: (getattr(before, key), getattr(after, key)) for key in ("tier", "convention")},
        models=tuple(_model(before.models[n], after.models[n]) for n in both),
        only_before=tuple(sorted(set(before.models) - set(after.models))),
        only_after=tuple(sorted(set(after.models) - set(before.models))))


def _value(value, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def cell(change: Change, unit: str = "", digits: int = 2) -> str:
    """'before -> after (delta)', '-' for a missing side or delta; '-' alone when both sides are missing.
    A percentage's delta is in points, without the sign (92.40% -> 91.90% (-0.50), as in report.markdown)."""
    if change.before is None and change.after is None:
        return "-"
    delta = "-" if change.delta is None else f"{change.delta:+.{digits}f}{'' if unit == '%' else unit}"
    return f"{_value(change.before, unit, digits)} -> {_value(change.after, unit, digits)} ({delta})"


def _env(value) -> str:
    return "''" if value == "" else "-" if value is None else str(value)


def _header(c: Comparison) -> list:
    (a, b), (old, new) = c.labels, c.environment
    lines = [f"# segcheck compare: {a} -> {b}", ""]
    if c.changed:
        lines.append("changed: " + "; ".join(f"**{k} {_env(old.get(k))} -> {_env(new.get(k))}**" for k in c.changed))
    else:
        lines.append("changed: nothing in the environment (the same MXNet, oneDNN, ISA and provenance)")
    same = [k for k in list(dict.fromkeys(list(old) + list(new))) if k not in c.changed]
    if same:
        lines.append("unchanged: " + ", ".join(f"{k} {_env(old.get(k))}" for k in same))
    for key, (x, y) in c.run.items():
        lines.append(f"{key}: {x}" if x == y else f"**{key} differs: {x} -> {y}** (the figures may not be comparable)")
    return lines


MODEL_HEADER = ("model", "fp32 pixAcc", "fp32 mIoU", "s8 pixAcc", "s8 mIoU", "speed-up", "status")


def _table(c: Comparison) -> list:
    lines = [" | ".join(MODEL_HEADER), " | ".join("--" for _ in MODEL_HEADER)]
    for m in c.models:
        accuracy = [cell(m.figures[f"{p}_{metric}"], "%" if pct else "") for p in ("fp32", "int8") for metric, _, pct in METRICS]
        lines.append(" | ".join([m.name, *accuracy, cell(m.speedup, "x"), " -> ".join(m.status)]))
    if not c.models:
        lines.append("(no model is in both runs)")
    for label, names in ((c.labels[0], c.only_before), (c.labels[1], c.only_after)):
        if names:
            lines.append(f"only in {label}: {', '.join(names)}")
    return lines


def _section(m: ModelComparison) -> list:
    lines = ["", f"## {m.name}"]
    for key, (x, y) in m.differs.items():
        lines.append(f"{key} differs: {json.dumps(x, sort_keys=True)} -> {json.dumps(y, sort_keys=True)}")
    classes = _titled(f"classes whose IoU moved most (points, top {TOP} per precision):", ["precision", "class", "IoU (before -> after)"],
                     [[SEED_PREFIX[k.precision], k.name, cell(k.change)] for k in m.classes])
    if m.classes_undefined:
        classes.append("IoU in one run only (the class absent from label and prediction in the other): " + ", ".join(
            f"{SEED_PREFIX[k.precision]} {k.name} ({_one_side(k.change)})" for k in m.classes_undefined))
    layers = _titled(f"layers whose SQNR moved most (dB, top {TOP}):", ["layer", "SQNR (before -> after)"],
                    [[layer.name, cell(layer.change, " dB", 1)] for layer in m.layers])
    layers += _appeared([(layer.name, layer.change.before is None) for layer in m.layers_changed], "layers")
    ranges = _titled(f"calibrated ranges that moved most (relative to the before range, top {TOP}):",
                    ["layer", "before", "after", "change"],
                    [[r.name, calibration.describe(r.before), calibration.describe(r.after),
                      f"{100 * r.relative:.1f}%" + (f" ({', '.join(r.settings)} changed)" if r.settings else "")] for r in m.ranges])
    ranges += _appeared([(r.name, r.before is None) for r in m.ranges_changed], "calibrated ranges")
    for has, missing, unmoved, shown in ((m.has_iou, "classes: per-class IoU is not in both runs", "classes: no class IoU moved", classes),
                                         (m.has_layers, "layers: per-layer SQNR is not in both runs", "layers: no layer's SQNR moved", layers),
                                         (m.has_ranges, "ranges: a calibration table is not in both runs", "ranges: no calibrated range moved", ranges)):
        lines += [""] + ([missing] if not has else shown or [unmoved])
    return lines


def _titled(title: str, header: list, rows: list) -> list:
    """A titled table of `rows`, or nothing when there are none."""
    if not rows:
        return []
    return [title, " | ".join(header), " | ".join("--" for _ in header)] + [" | ".join(r) for r in rows]


def _one_side(change: Change) -> str:
    if change.before is None:
        return f"absent before, {change.after:.2f} after"
    return f"{change.before:.2f} before, absent after"


def _appeared(named: list, what: str) -> list:
    lines = []
    for verb, appeared in (("appeared", True), ("vanished", False)):
        names = [name for name, new in named if new is appeared]
        if names:
            lines.append(f"{what} {verb}: {', '.join(names)}")
    return lines


def markdown(comparison: Comparison) -> str:
    lines = _header(comparison) + [""] + _table(comparison)
    for m in comparison.models:
        lines += _section(m)
    return "\n".join(lines) + "\n"


def _barh(ax, y: float, value: float, colour: str, label: str, height: float = 0.38) -> None:
    """A bar labelled right of its end, or right of zero when it points left (off the bar, off the tick labels)."""
    ax.barh(y, value, color=colour, height=height)
    ax.annotate(label, (max(value, 0), y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)


def _rows(ax, names: list, fontsize: int = 8) -> None:
    """One row per name, top down, with room for the bars either side of each tick."""
    ax.set_yticks(range(len(names)), names, fontsize=fontsize)
    ax.set_ylim(len(names) - 0.5, -0.5)


def _symmetric(ax, values: list, floor: float) -> None:
    bound = max([abs(v) for v in values] + [floor]) * 1.15
    ax.set_xlim(-bound, bound * 2.2)
    ax.axvline(0, color="black", linewidth=0.8)


def png(comparison: Comparison) -> bytes:
    """`comparison` drawn as a PNG: per model the mIoU change per precision and the
    speed-up before and after, and the layers whose SQNR moved most."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = comparison.models
    if not models:
        raise SegcheckError(f"no model is in both {comparison.labels[0]} and {comparison.labels[1]}; nothing to chart")
    sqnr = [(m.name, layer) for m in models for layer in m.layers if math.isfinite(layer.change.delta)]
    height = max(4.5, 0.9 * len(models) + 2.0, 0.32 * len(sqnr) + 2.0)
    fig, (ax_miou, ax_speed, ax_sqnr) = plt.subplots(1, 3, figsize=(18, height), gridspec_kw={"width_ratios": [1, 1, 1.2]})

    deltas = []
    for i, m in enumerate(models):
        for offset, precision in ((-0.2, "fp32"), (0.2, "int8")):
            change = m.figures[f"{precision}_miou"]
            name = SEED_PREFIX[precision]
            if change.delta is None:
                ax_miou.annotate(f"{name}: not in both runs", (0, i + offset), xytext=(4, 0), textcoords="offset points",
                                 va="center", fontsize=8, color=NEUTRAL)
                continue
            deltas.append(change.delta)
            _barh(ax_miou, i + offset, change.delta, OK if change.delta >= 0 else BAD,
                  f"{name} {change.before:.2f} -> {change.after:.2f} ({change.delta:+.2f})")
    _symmetric(ax_miou, deltas, 0.5)
    _rows(ax_miou, [m.name for m in models])
    ax_miou.set_xlabel("mIoU after - before (points); upper bar fp32, lower bar s8")
    ax_miou.set_title("mIoU change per precision")

    ratios = []
    for i, m in enumerate(models):
        for offset, side, value, colour in ((-0.2, comparison.labels[0], m.speedup.before, NEUTRAL),
                                            (0.2, comparison.labels[1], m.speedup.after, AFTER_COLOUR)):
            if value is None:
                ax_speed.annotate(f"{side}: - (a latency is missing)", (0, i + offset), xytext=(4, 0),
                                  textcoords="offset points", va="center", fontsize=8, color=NEUTRAL)
                continue
            ratios.append(value)
            _barh(ax_speed, i + offset, value, colour, f"{side}: {value:.2f}x")
    ax_speed.set_xlim(0, max(ratios + [1.0]) * 2.2)
    ax_speed.axvline(1, color=NEUTRAL, linewidth=0.8, linestyle=":", zorder=0)
    _rows(ax_speed, [m.name for m in models])
    ax_speed.set_xlabel("FP32 / INT8 latency (minimum of rounds); upper bar before, lower bar after; dotted: 1x")
    ax_speed.set_title("INT8 speed-up before and after")

    for i, (name, layer) in enumerate(sqnr):
        c = layer.change
        _barh(ax_sqnr, i, c.delta, OK if c.delta >= 0 else BAD, f"{c.before:.1f} -> {c.after:.1f} dB ({c.delta:+.1f})", 0.6)
    if sqnr:
        _symmetric(ax_sqnr, [layer.change.delta for _, layer in sqnr], 1.0)
        _rows(ax_sqnr, [f"{name}: {layer.name}" for name, layer in sqnr], fontsize=7)
    else:
        ax_sqnr.set_yticks([])
        ax_sqnr.set_xticks([])
        ax_sqnr.text(0.5, 0.5, "no layer's SQNR moved (or no per-layer SQNR in both runs)", ha="center", va="center",
                     transform=ax_sqnr.transAxes, fontsize=9, color=NEUTRAL)
    ax_sqnr.set_xlabel("SQNR after - before (dB); green: less INT8 error")
    ax_sqnr.set_title(f"layers whose SQNR moved most (top {TOP} per model)")

    (old, new) = comparison.environment
    changed = ", ".join(f"{k} {_env(old.get(k))} -> {_env(new.get(k))}" for k in comparison.changed[:4]) or "no change"
    fig.suptitle(f"segcheck compare: {comparison.labels[0]} -> {comparison.labels[1]} ({changed})", fontsize=12)
    fig.subplots_adjust(left=0.11, right=0.98, wspace=0.7, bottom=0.8 / height, top=1 - 0.9 / height)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def main(argv, out=sys.stdout) -> int:
    """segcheck compare BEFORE AFTER [--png PATH] [--json PATH]: the report of what changed; exit 1 where the AFTER run
    failed a check (a FAIL, REGRESSED or ERROR; CHANGED where that run was strict about changes), else 0."""
    p = options.Parser(prog="segcheck compare",
                                description="Two runs' results side by side: what an upgrade changed, model by model.")
    p.add_argument("before", help="results JSON of the run before the change (pytest --results-json PATH)")
    p.add_argument("after", help="results JSON of the run after it")
    p.add_argument("--png", help="also draw the comparison as a PNG chart here")
    p.add_argument("--json", dest="json_out", help="write the comparison as JSON here")
    args = p.parse_args(argv)
    atomic.outputs_apart({"--json": args.json_out, "--png": args.png}, [args.before, args.after])
    after = report.load(args.after)
    comparison = compare(report.load(args.before), after, labels=(args.before, args.after))
    out.write(markdown(comparison))
    atomic.write_outputs({"json": (args.json_out, lambda: atomic.json_bytes(comparison.to_dict())),
                          "chart": (args.png, lambda: png(comparison))}, out)
    failing = [f"{name} {check} ({c.status})" for name, m in sorted(after.models.items())
               for check, c in sorted(m.checks.items()) if c.failing(after.strict_changes)]
    if failing:
        print(f"{args.after} fails {len(failing)} checks: {', '.join(failing[:8])}", file=out)
    return 1 if failing else 0

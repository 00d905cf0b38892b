"""`segcheck noise`: how far every gated figure moves under benign variation, and the tolerances that follows from it.

Given the results of a reference run and of runs that differ from it in one thing each, grouped by the tier that
thing backs (exact: reruns and thread counts; isa: oneDNN's ISA caps; version: other MXNet/oneDNN releases; recipe:
recalibrations on other images of the same distribution), the spread of a figure in a tier is the largest absolute
deviation from the reference seen in that tier's runs, over every model (and every layer, class or range where the
figure has many). Figures within one run (the INT8 drop, a class's drop, the lowest layer SQNR) are taken over every
run, the reference's included; the SQNR floor lies the factor times the spread of a model's lowest layer SQNR below
the lowest seen. A tolerance is then factor x spread (config.tolerances.derived); each layer's own
SQNR spread is kept apart (gate.noise), so that a calm layer is judged at its own band.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import atomic
from ..config import options
from ..config.tolerances import COMPARED, DEFINITIONS, TIERS, ToleranceTable, derived, unmeasured
from ..errors import SegcheckError
from ..gate import baselines, harm, noise
from ..gate.checks import of_peer_row
from . import report
from .records import ModelResult, RunResults

BACKS = {"exact": "reruns and thread counts", "isa": "oneDNN's ISA caps", "version": "other MXNet/oneDNN releases",
         "recipe": "recalibrations on other images of the same distribution"}
STATISTIC = "the largest absolute deviation from the reference run over the tier's runs, models, layers, classes and ranges"
DEFAULT_FACTOR = 2.0


def _mean(values) -> float | None:
    return float(np.mean(values)) if values else None


def _relative_range(old: dict, new: dict) -> float:
    scale = max(abs(old["range"][0]), abs(old["range"][1]), 1e-12)
    return max(abs(a - b) for a, b in zip(old["range"], new["range"])) / scale


def deviations(ref: ModelResult, run: ModelResult) -> tuple:
    """({figure: |run - ref|}, {layer: |own SQNR change|}) of one model in one run against the reference run."""
    found = {}
    for precision in ("fp32", "int8"):
        a, b = ref.figures(precision), run.figures(precision)
        for figure in ("pixacc", "miou"):
            if getattr(a, figure) is not None and getattr(b, figure) is not None:
                found[f"{precision}_{figure}_points"] = abs(getattr(b, figure) - getattr(a, figure))
    for figure, key in (("agreement", "agreement_points"), ("output_sqnr", "output_sqnr_db")):
        a, b = getattr(ref.int8, figure), getattr(run.int8, figure)
        if a and b and len(a) == len(b):
            found[key] = abs(_mean(b) - _mean(a))
    layers = {}
    if ref.layers and run.layers:
        then, now = ref.layer_curves(), run.layer_curves()
        upstream = {layer["name"]: layer.get("upstream", []) for layer in run.layers}
        shifts = harm.layers(now, then, upstream, {}, 0.0, math.inf, 0.95)
        if not shifts and set(now) & set(then):
            raise SegcheckError(f"{run.name}: the per-layer results hold no per-image energies (made before segcheck kept "
                                "them): make the runs again")
        layers = {s.figure.removeprefix("layer "): abs(s.change) for s in shifts}
        if layers:
            found["sqnr_drop_db"] = max(layers.values())
        # how far the model's worst layer moves (the floor's spread), on the images both measured where they pool
        lowest = ([min(s.now for s in shifts), min(s.then for s in shifts)] if shifts else
                  [min(layer["sqnr_db"] for layer in m.layers) for m in (run, ref)])
        found["lowest_sqnr_db"] = abs(lowest[0] - lowest[1])
    common = [n for n in ref.ranges if n in run.ranges]
    if common:
        found["range_rtol"] = max(_relative_range(ref.ranges[n], run.ranges[n]) for n in common)
    if ref.int8.iou and run.int8.iou:
        found["class_iou_points"] = max((abs(b - a) for a, b in zip(ref.int8.iou, run.int8.iou) if a is not None and b is not None),
                                        default=0.0)
    return found, layers


def within_run(m: ModelResult, class_min_pixels: float) -> dict:
    """The figures of one model within one run: the INT8 drop (FP32 - INT8, at least 0), the largest class drop among
    the classes labelled enough, the lowest layer SQNR."""
    found = {}
    if m.fp32.pixacc is not None and m.int8.pixacc is not None:
        found["int8_drop_pixacc_points"] = max(0.0, m.fp32.pixacc - m.int8.pixacc)
        found["int8_drop_miou_points"] = max(0.0, m.fp32.miou - m.int8.miou)
    if m.fp32.iou and m.int8.iou and m.fp32.matrix:
        labelled = [sum(row) for row in m.fp32.matrix]
        drops = [(f or 0.0) - (q or 0.0) for f, q, n in zip(m.fp32.iou, m.int8.iou, labelled) if n >= class_min_pixels]
        found["int8_drop_class_iou_points"] = max([0.0, *drops])
    if m.layers:
        found["lowest_sqnr_db"] = min(layer["sqnr_db"] for layer in m.layers)
    return found


@dataclass
class NoiseTable:
    """What the runs showed: per tier the spread of each figure (and per model), each layer's spread per model and
    tier, the within-run extremes, and which runs backed what."""

    reference: dict  # the reference run's environment and INT8 keys
    runs: dict = field(default_factory=dict)  # tier -> [label]
    spread: dict = field(default_factory=dict)  # tier -> figure -> spread
    per_model: dict = field(default_factory=dict)  # tier -> model -> figure -> spread
    layers: dict = field(default_factory=dict)  # model -> tier -> layer -> spread
    within: dict = field(default_factory=dict)  # figure -> extreme over every run
    models: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"statistic": STATISTIC, "backs": BACKS, **asdict(self)}


def measured_models(reference: RunResults) -> list:
    """The reference's models whose noise is measured: its own (no peer rows) with INT8 figures, by name."""
    return sorted(n for n, m in reference.models.items() if of_peer_row(n)[1] is None and m.int8.miou is not None)


def measure(reference: RunResults, runs: dict) -> NoiseTable:
    """The noise table of `runs` (tier -> [(label, RunResults)]) against `reference`."""
    models = measured_models(reference)
    if not models:
        raise SegcheckError("the reference results hold no model with INT8 figures: run the gate's accuracy checks")
    least = next((m.tolerances.get("class_min_pixels") for m in reference.models.values() if m.tolerances),
                 DEFINITIONS["class_min_pixels"])
    table = NoiseTable({"environment": reference.environment,
                        "int8": {n: reference.models[n].int8_key for n in models}}, models=models)
    for label, run in [("reference", reference)] + [r for tier in runs.values() for r in tier]:
        for name in models:
            if name in run.models:
                for figure, value in within_run(run.models[name], least).items():
                    worst = min if figure == "lowest_sqnr_db" else max
                    table.within[figure] = worst(table.within.get(figure, value), value)
    for tier, found in runs.items():
        table.runs[tier] = [label for label, _ in found]
        for label, run in found:
            for name in models:
                if name not in run.models:
                    continue
                figures, layers = deviations(reference.models[name], run.models[name])
                own = table.per_model.setdefault(tier, {}).setdefault(name, {})
                for figure, value in figures.items():
                    own[figure] = max(own.get(figure, 0.0), value)
                    table.spread.setdefault(tier, {})[figure] = max(table.spread.get(tier, {}).get(figure, 0.0), value)
                per_layer = table.layers.setdefault(name, {}).setdefault(tier, {})
                for layer, value in layers.items():
                    per_layer[layer] = round(max(per_layer.get(layer, 0.0), value), 4)
    return table


def _significant(value: float) -> float:
    """A spread as it is written down: four significant digits."""
    return float(f"{value:.4g}")


def tolerances(table: NoiseTable, factor: float, fallback: ToleranceTable | None = None) -> ToleranceTable:
    """Tolerances from the noise table: factor x spread where a tier was measured, else the fallback's (unmeasured)."""
    fallback = fallback or unmeasured()
    tiers = {}
    for tier in TIERS:
        spreads = table.spread.get(tier, {})  # a figure no run of the tier measured keeps the fallback's value
        tiers[tier] = {k: derived(k, _significant(spreads[k]), factor) if k in spreads else fallback.tiers[tier][k]
                       for k in COMPARED}
    within = dict(fallback.within_run)
    for key in ("int8_drop_pixacc_points", "int8_drop_miou_points", "int8_drop_class_iou_points"):
        if key in table.within:
            within[key] = derived(key, _significant(table.within[key]), factor)
    lowest_spread = max((s.get("lowest_sqnr_db", 0.0) for s in table.spread.values()), default=None)
    if "lowest_sqnr_db" in table.within and lowest_spread is not None:
        within["sqnr_floor_db"] = derived("sqnr_floor_db", _significant(lowest_spread), factor, round(table.within["lowest_sqnr_db"], 3))
    return ToleranceTable(tiers, within, dict(fallback.definitions), dict(fallback.harm))


def markdown(table: NoiseTable, derived_table: ToleranceTable) -> str:
    env = table.reference["environment"]
    cap = f", capped at {env['cap']}" if env.get("cap") else ""
    threads = f", {env['threads']} threads" if env.get("threads") else ""
    lines = [f"# Noise table: {', '.join(table.models)}",
             "",
             f"Reference run: mxnet {env.get('mxnet')}, oneDNN {env.get('onednn')}, ISA {env.get('isa')} (oneDNN level "
             f"{env.get('onednn_isa')}{cap}; {env.get('cpu')}{threads}). "
             f"Spread: {STATISTIC}.",
             "",
             "tier | backed by | runs",
             "-- | -- | --"]
    lines += [f"{tier} | {BACKS[tier]} | {', '.join(table.runs.get(tier, [])) or 'not measured'}" for tier in TIERS]
    figures = [*COMPARED, "class_iou_points", "lowest_sqnr_db"]
    lines += ["", "Spread per tier (points, dB, or relative for ranges), and the tolerance derived (factor x spread, at "
                  "least the resolution):", "", "figure | " + " | ".join(TIERS), " | ".join(["--"] * (len(TIERS) + 1))]
    for figure in figures:
        cells = []
        for tier in TIERS:
            spread = table.spread.get(tier, {}).get(figure)
            tol = derived_table.tiers[tier].get(figure)
            cells.append("-" if spread is None else f"{spread:.4g}" + (f" -> {tol.value:.4g}" if tol is not None and tol.measured else ""))
        lines.append(f"{figure} | " + " | ".join(cells))
    lines += ["", "Within one run, over every run (the reference's included):", "", "figure | extreme | tolerance", "-- | -- | --"]
    for key, figure in (("int8_drop_pixacc_points", "int8_drop_pixacc_points"), ("int8_drop_miou_points", "int8_drop_miou_points"),
                        ("int8_drop_class_iou_points", "int8_drop_class_iou_points"), ("sqnr_floor_db", "lowest_sqnr_db")):
        value = table.within.get(figure)
        lines.append(f"{key} | {'-' if value is None else f'{value:.4g}'} | {derived_table.within_run[key].describe()}")
    lines += ["", "Per model, the largest deviation per tier (INT8 mIoU points / agreement points / layer own SQNR dB):", "",
              "model | " + " | ".join(TIERS), " | ".join(["--"] * (len(TIERS) + 1))]
    for name in table.models:
        cells = []
        for tier in TIERS:
            own = table.per_model.get(tier, {}).get(name)
            cells.append("-" if own is None else " / ".join(f"{own.get(k, float('nan')):.3g}"
                                                           for k in ("int8_miou_points", "agreement_points", "sqnr_drop_db")))
        lines.append(f"{name} | " + " | ".join(cells))
    return "\n".join(lines) + "\n"


def _labelled(items) -> list:
    """(label, path) of each [LABEL=]RESULTS argument; an empty path is an error naming the argument."""
    found = []
    for item in items or []:
        typed = "=" in item and not Path(item).exists()
        label, _, path = item.partition("=") if typed else (Path(item).stem, "", item)
        if not path:
            raise SegcheckError(f"{item!r}: no results file after '='; give LABEL=RESULTS")
        if not label:
            raise SegcheckError(f"{item!r}: no label before '='; give LABEL=RESULTS, or the file alone")
        found.append((label, path, typed))
    stems = [label for label, _, typed in found if not typed]
    # a label taken from the file name, shared with another (each cache's last-run.json), is the path as given
    return [(path if not typed and stems.count(label) > 1 else label, path) for label, path, typed in found]


def _each_once(labelled: dict) -> None:
    """Each run backs one tier once, under a label of its own in that tier: a file given twice would count as two runs."""
    seen = {}
    for tier, runs in labelled.items():
        for _, path in runs:
            where = atomic.resolved(path)
            if where in seen:
                raise SegcheckError(f"--{tier} {path} is also given as {seen[where]}: one run counted twice; give each "
                                    "results file once")
            seen[where] = f"--{tier} {path}"
    for tier, runs in labelled.items():
        labels = [label for label, _ in runs]
        twice = next((label for label in labels if labels.count(label) > 1), None)
        if twice is not None:
            raise SegcheckError(f"--{tier}: the label {twice!r} is given twice; give each run a label of its own")


def _load_runs(tier: str, labelled: list, reference: RunResults, reference_path: str) -> list:
    """(label, results) of `tier`'s runs, each a run that can measure noise against `reference`: another file, of the
    same tier and metric convention, holding at least one of its models. One error naming the file otherwise."""
    found, measured = [], measured_models(reference)
    for label, path in labelled:
        if atomic.resolved(path) == atomic.resolved(reference_path):
            raise SegcheckError(f"--{tier} {path} is the reference itself: it measures no variation; give another run")
        run = report.load(path)
        if (run.tier, run.convention) != (reference.tier, reference.convention):
            raise SegcheckError(f"--{tier} {path}: a {run.tier} run under the {run.convention} convention, the "
                                f"reference a {reference.tier} one under {reference.convention}: give runs of the "
                                "reference's tier")
        if not set(run.models) & set(measured):
            raise SegcheckError(f"--{tier} {path} holds none of the reference's models with INT8 figures "
                                f"({', '.join(sorted(measured)) or 'none'}); it would measure nothing")
        found.append((label, run))
    return found


def write(baselines_path, tier: str, table: NoiseTable, derived_table: ToleranceTable) -> str:
    """The tier's tolerances in the baseline file replaced by the derived ones (the diff), and its per-layer spreads
    written beside it (gate.noise)."""
    path = Path(baselines_path)
    try:
        old_text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SegcheckError(f"{path}: cannot read the baseline file ({err}); pass --baselines") from None
    baselines.load(path)
    doc = json.loads(old_text)
    if tier not in doc["tiers"]:
        raise SegcheckError(f"{path}: key 'tiers.{tier}' is missing; record the tier's rows first (pytest --update-baselines)")
    doc["tiers"][tier]["tolerances"] = derived_table.to_dict()
    # read first: a damaged per-layer noise file stops the write before the baseline file changes
    layers = noise.recorded(path, tier, {m: tiers for m, tiers in table.layers.items()})
    diff = baselines.write(path, old_text, doc)
    noise.save(path, layers)
    return diff


def main(argv, out=sys.stdout) -> int:
    p = options.Parser(prog="segcheck noise", description=__doc__.split("\n\n")[0])
    p.add_argument("reference", help="results JSON of the reference run (the trusted, recorded one)")
    for tier in TIERS:
        p.add_argument(f"--{tier}", nargs="+", action="extend", metavar="[LABEL=]RESULTS",
                       help=f"results JSON of runs that differ from the reference in {BACKS[tier]}")
    p.add_argument("--factor", type=float, default=DEFAULT_FACTOR, help=f"tolerance = factor x spread (default {DEFAULT_FACTOR:g})")
    p.add_argument("--md", help="write the noise table as Markdown here")
    p.add_argument("--json", dest="json_out", help="write the noise table as JSON here")
    p.add_argument("--write", metavar="BASELINES", help="replace the reference tier's tolerances in this baseline file by "
                                                        "the derived ones, and write its per-layer noise beside it")
    args = p.parse_args(argv)
    if not 1.0 <= args.factor <= 100.0:
        p.error(f"--factor {args.factor:g}: expected a factor from 1 to 100")
    labelled = {tier: _labelled(getattr(args, tier)) for tier in TIERS if getattr(args, tier)}
    if not labelled:
        p.error("give the results of at least one tier's runs (--exact, --isa, --version, --recipe)")
    _each_once(labelled)
    beside = next((kind for suffix, kind in ((".noise.json", "per-layer noise"), (".golden.json", "golden-record"))
                   if args.write and args.write.endswith(suffix)), None)
    if beside:
        p.error(f"--write {args.write}: a {beside} file, not a baseline file; name the baseline file (baselines.json), "
                "beside which the per-layer noise is written")
    written = [args.write, noise.path_for(args.write)] if args.write else []
    atomic.outputs_apart({"--md": args.md, "--json": args.json_out},
                         [args.reference, *(path for runs in labelled.values() for _, path in runs), *written])
    reference = report.load(args.reference)
    runs = {tier: _load_runs(tier, found, reference, args.reference) for tier, found in labelled.items()}
    table = measure(reference, runs)
    fallback = None
    if args.write:
        found = baselines.load(args.write).tiers.get(reference.tier)
        fallback = found.tolerances if found else None
    derived_table = tolerances(table, args.factor, fallback)
    text = markdown(table, derived_table)
    out.write(text)
    atomic.write_outputs({"markdown": (args.md, text.encode),
                          "json": (args.json_out, lambda: atomic.json_bytes(
                              {**table.to_dict(), "factor": args.factor, "tolerances": derived_table.to_dict()}))}, out)
    if args.write:
        out.write(write(args.write, reference.tier, table, derived_table) or f"{args.write}: tolerances unchanged\n")
    return 0


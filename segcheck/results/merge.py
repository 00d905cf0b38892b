"""`segcheck merge`: the results of a run's shards added up and gated as one run.

Shards must fit together: the same tier, convention, environment, setting, calibration and tolerances;
every shard K of N once; their images disjoint and, together, the whole subset. Anything else is refused,
naming the file and what differs. The merged confusion matrices, per-image digests and latencies are gated by the same
verdict code as a single run (accuracy, the INT8 drop with its interval, the class drop, the digests, the speed-up);
the other checks (ranges, layers, graph: the same calibration in every shard) keep each shard's worst outcome.
"""

from __future__ import annotations

import sys

import numpy as np

from .. import atomic
from ..config import options
from ..data.loaders import Subset
from ..errors import SegcheckError
from ..gate import verdicts
from ..gate.baselines import Reference, Row, Tolerances
from ..gate.checks import (ACCURACY, CHANGED, CLASS_DROP, DIGEST, DROP, ERROR, FAIL, PASS, PRECISIONS, REGRESSED, SKIP,
                           SPEEDUP, XFAIL, Check)
from ..measure import stats
from ..measure.environment import KEY_FIELDS
from ..measure.metrics import ConfusionMatrix
from . import report
from .records import Figures, ModelResult, RunResults

SAME = ("setting", "int8_key", "int8_source", "golden_digest", "baseline_per_image", "classes", "tolerances", "baseline", "reference", "accuracy_tolerances", "min_speedup")
SHARD_KEYS = ("index", "count", "of", "ids", "split")  # what a shard's results say of the images it evaluated
RANK = {SKIP: 0, PASS: 1, XFAIL: 2, CHANGED: 3, ERROR: 4, FAIL: 5, REGRESSED: 6}  # a merged check keeps its worst shard's


def _load(paths) -> list:
    if len(paths) < 2:
        raise SegcheckError("merge needs the results of two or more shards (each run with --shard K/N --results-json PATH)")
    return [(str(p), report.load(p)) for p in paths]


def _fits(runs: list) -> None:
    (first_path, first), rest = runs[0], runs[1:]

    def described(run, key):  # an environment is compared by its key (MXNet, oneDNN, ISA); the CPU model may differ
        value = getattr(run, key)
        return {k: value.get(k) for k in KEY_FIELDS} if key == "environment" else value

    for path, run in rest:
        for key in ("tier", "convention", "environment", "strict_changes", "gate_drop_interval"):
            if described(run, key) != described(first, key):
                raise SegcheckError(f"{path}: {key} {described(run, key)!r} differs from {described(first, key)!r} in "
                                    f"{first_path}; merge the shards of one run, made in one environment")
        if set(run.models) != set(first.models):
            odd = sorted(set(run.models) ^ set(first.models))
            raise SegcheckError(f"{path}: models differ from {first_path} ({', '.join(odd)}); every shard runs the same models")


def _shards(name: str, parts: list) -> tuple[list, Subset]:
    """(`parts` ([(path, ModelResult)]) in shard order, the images they make together); refused unless they make the whole."""
    for path, m in parts:
        if not m.shard:
            raise SegcheckError(f"{path}: {name} was not run as a shard (--shard K/N); merge only shards")
        absent = [k for k in SHARD_KEYS if k not in m.shard]
        if absent:
            raise SegcheckError(f"{path}: {name}'s key 'shard.{absent[0]}' is missing; write the shard's results again")
        count, index = m.shard["count"], m.shard["index"]
        if not (isinstance(count, int) and isinstance(index, int) and 1 <= index <= count):
            raise SegcheckError(f"{path}: {name}'s key 'shard.index' is {index!r} of {count!r}, not a shard K of N with "
                                "1 <= K <= N; write the shard's results again")
    (first_path, first), count = parts[0], parts[0][1].shard["count"]
    seen = {}
    for path, m in parts:
        s = m.shard
        if s["count"] != count or s["of"] != first.shard["of"]:
            raise SegcheckError(f"{path}: {name} is shard {s['index']}/{s['count']} of {s['of']['count']} images "
                                f"(ids sha1 {s['of']['digest']}), {first_path} is of {count} shards of "
                                f"{first.shard['of']['count']} (ids sha1 {first.shard['of']['digest']}); these are not one run")
        if s["index"] in seen:
            raise SegcheckError(f"overlap: {path} and {seen[s['index']]} are both shard {s['index']}/{count} of {name}")
        seen[s["index"]] = path
        for key in SAME:
            if getattr(m, key) != getattr(first, key):
                raise SegcheckError(f"{path}: {name}'s {key} differs from {first_path} ({getattr(m, key)!r} vs "
                                    f"{getattr(first, key)!r}); shards must share setting, calibration and tolerances")
    absent = sorted(set(range(1, count + 1)) - set(seen))
    if absent:
        raise SegcheckError(f"gap: shard{'s' if len(absent) > 1 else ''} {', '.join(f'{k}/{count}' for k in absent)} "
                            f"of {name} missing; merge every shard")
    ordered = sorted(parts, key=lambda p: p[1].shard["index"])
    owner = {}
    for path, m in ordered:
        for image in m.shard["ids"]:
            if image in owner:
                raise SegcheckError(f"overlap: image {image} of {name} is in {owner[image]} and {path}")
            owner[image] = path
    whole = Subset(first.shard["split"], tuple(i for _, m in ordered for i in m.shard["ids"]))
    if len(whole.ids) != first.shard["of"]["count"] or whole.digest != first.shard["of"]["digest"]:
        raise SegcheckError(f"gap: the shards of {name} hold {len(whole.ids)} images (ids sha1 {whole.digest}), the run "
                            f"evaluates {first.shard['of']['count']} (ids sha1 {first.shard['of']['digest']})")
    return ordered, whole


def _figures(ordered: list, precision: str) -> Figures:
    """One precision's figures of every shard added up; none where a shard has none (the precision was not run, or
    that shard's evaluation failed, which its failed accuracy check carries into the merge); refused where a shard
    lacks them without having failed, or the matrices do not add up."""
    figures = [m.figures(precision) for _, m in ordered]
    held = [path for (path, _), f in zip(ordered, figures) if f.matrix is not None]
    lacking = [(path, m) for (path, m), f in zip(ordered, figures) if f.matrix is None]
    if not held or any(m.checks.get(ACCURACY.name(precision), Check(PASS)).failed for _, m in lacking):
        return Figures()
    if lacking:
        raise SegcheckError(f"{lacking[0][0]}: no {precision} confusion matrix, which {held[0]} holds, and no failed "
                            f"{precision} evaluation: its results were cut or edited; write the shard's results again")
    matrices = [np.asarray(f.matrix, dtype=np.int64) for f in figures]
    for (path, _), m in zip(ordered, matrices):
        if m.shape != matrices[0].shape or m.ndim != 2 or (m < 0).any():
            raise SegcheckError(f"{path}: its {precision} confusion matrix ({'x'.join(map(str, m.shape))}) is not a "
                                f"count matrix of {held[0]}'s shape {'x'.join(map(str, matrices[0].shape))}; write the "
                                "shard's results again")
    matrix = sum(matrices)

    def over(key, combine):  # latency: the minimum of all shards' rounds, the median of medians, the widest spread
        values = [getattr(f, key) for f in figures if getattr(f, key) is not None]
        return combine(values) if values else None

    return Figures(
        matrix=matrix.tolist(), per_image=[c for f in figures for c in (f.per_image or [])],
        image_digests=[d for f in figures for d in (f.image_digests or [])] or None,
        predicted=np.sum([f.predicted for f in figures if f.predicted], axis=0).tolist() if all(f.predicted for f in figures) else None,
        latency_ms=over("latency_ms", min), latency_median_ms=over("latency_median_ms", lambda v: float(np.median(v))),
        latency_iqr_pct=over("latency_iqr_pct", max), latency_rounds=over("latency_rounds", sum),
    )


def _scores(figures: Figures, classes: list, convention: str):
    return ConfusionMatrix(len(classes), np.asarray(figures.matrix, dtype=np.int64)).compute(convention)


def merge_model(name: str, parts: list, convention: str, isa: str, gate_drop_interval: bool = False) -> ModelResult:
    ordered, whole = _shards(name, parts)
    first = ordered[0][1]
    merged = ModelResult(name, setting=first.setting, int8_key=first.int8_key, int8_share=first.int8_share, int8_source=first.int8_source,
                         baseline=first.baseline, reference=first.reference, accuracy_tolerances=first.accuracy_tolerances,
                         classes=first.classes, tolerances=first.tolerances,
                         min_speedup=first.min_speedup)
    for _, m in ordered:
        for check, c in m.checks.items():
            if check not in merged.checks or RANK[c.status] > RANK[merged.checks[check].status]:
                merged.checks[check] = c
    scores = {}
    for precision in ("fp32", "int8"):
        figures = _figures(ordered, precision)
        if figures.matrix is not None:
            s = scores[precision] = _scores(figures, first.classes, convention)
            for key, value in s.figures().items():
                setattr(figures, key, value)
        setattr(merged, precision, figures)
    merged.subset = whole.describe()
    tol = Tolerances(**first.tolerances) if first.tolerances else None
    what = f"{name} on {merged.subset} ({len(ordered)} shards merged)"
    for precision, s in scores.items():
        if precision not in first.baseline or precision not in first.accuracy_tolerances:
            merged.checks[ACCURACY.name(precision)] = Check(SKIP, f"{name}: no baseline row was used by the shards", "none")
        else:
            reference = first.reference.get(precision)
            merged.checks[ACCURACY.name(precision)] = verdicts.against_baseline(
                f"{what} {precision}", s, Row(**first.baseline[precision]), precision,
                Tolerances(**first.accuracy_tolerances[precision]), Reference(**reference) if reference else None,
                getattr(merged, precision).per_image, first.baseline_per_image.get(precision))
    if len(scores) == 2 and tol is not None:
        interval = stats.paired_drop(*(stats.per_image_stats(getattr(merged, p).per_image, len(first.classes)) for p in PRECISIONS),
                                     convention)
        merged.drop_interval = vars(interval)
        merged.checks[DROP.name()] = verdicts.int8_drop(what, scores["fp32"], scores["int8"], tol, tuple(first.classes),
                                                        interval, gate_drop_interval)
        labelled = np.asarray(merged.fp32.matrix).sum(axis=1)
        merged.checks[CLASS_DROP.name()] = verdicts.class_drop(what, scores["fp32"], scores["int8"], labelled,
                                                               tuple(first.classes), tol)
    for precision in scores:
        recorded = first.golden_digest.get(precision)
        if recorded is None:
            continue
        figures = getattr(merged, precision)
        now = {"images": figures.image_digests, "pixels": figures.predicted, "ids": whole.ids, "classes": first.classes}
        reference = Reference(**recorded["reference"])
        merged.checks[DIGEST.name(precision)] = verdicts.digest(
            f"{what} {precision}", now, recorded, reference, merged.checks.get(ACCURACY.name(precision)))
    paired = sorted((p for p in (m.speedup_paired for _, m in ordered) if p), key=lambda p: p["fp32_ms"] / p["int8_ms"])
    if len(paired) == len(ordered):  # each shard timed its FP32 and INT8 in turn: the median shard's pair, kept together
        merged.speedup_paired = paired[(len(paired) - 1) // 2]
        merged.checks[SPEEDUP.name()] = verdicts.speedup(name, merged.speedup_paired["fp32_ms"], merged.speedup_paired["int8_ms"],
                                                         first.min_speedup, isa, f"timed in turn; the median of {len(ordered)} shards")
    elif merged.fp32.latency_ms and merged.int8.latency_ms:
        merged.checks[SPEEDUP.name()] = verdicts.speedup(name, merged.fp32.latency_ms, merged.int8.latency_ms, first.min_speedup, isa,
                                                    f"minimum over {len(ordered)} shards' benchmark rounds ({len(paired)} of "
                                                    f"{len(ordered)} shards timed FP32 and INT8 in turn)")
    return merged


def merge(paths) -> RunResults:
    runs = _load(paths)
    _fits(runs)
    first = runs[0][1]
    merged = RunResults(tier=first.tier, convention=first.convention, environment=first.environment,
                        strict_changes=first.strict_changes, gate_drop_interval=first.gate_drop_interval)
    for name in sorted(first.models):
        merged.models[name] = merge_model(name, [(path, run.models[name]) for path, run in runs], first.convention,
                                          first.environment.get("isa", "?"), first.gate_drop_interval)
    return merged


def main(argv, out=sys.stdout) -> int:
    """segcheck merge RESULTS... [--json PATH] [--png PATH]: exit 1 when a merged model fails a check."""
    from . import chart

    p = options.Parser(prog="segcheck merge", description="Add up the results of a run's shards and gate them.")
    p.add_argument("results", nargs="+", help="results JSON of each shard (pytest --shard K/N --results-json PATH)")
    p.add_argument("--json", dest="json_out", help="write the merged results here")
    p.add_argument("--png", help="also draw the merged results as a PNG chart here")
    args = p.parse_args(argv)
    atomic.outputs_apart({"--json": args.json_out, "--png": args.png}, args.results)
    merged = merge(args.results)
    out.write(report.markdown(merged))
    atomic.write_outputs({"json": (args.json_out, lambda: report.encoded(merged)),
                          "chart": (args.png, lambda: chart.png(merged))}, out)
    return 1 if any(c.failing(merged.strict_changes) for m in merged.models.values() for c in m.checks.values()) else 0

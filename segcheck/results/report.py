"""A run's results shown and stored: the seed's Performance table (Markdown), JSON, baseline rows (the chart: chart.py).

model | fp32 latency(ms) | s8 latency(ms) | fp32 pixAcc | fp32 mIoU | s8 pixAcc | s8 mIoU, plus the
speed-up, the deltas against the baseline row and each model's status (PASS, or its first failing check).
"""

from __future__ import annotations

import datetime
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..errors import SegcheckError
from ..gate.baselines import ROW_KEYS, Row
from ..gate.checks import CHANGED, FAILING, REGRESSED, SEED_PREFIX, SKIP, of_peer_row
from ..gate.golden import Golden
from .records import READABLE, RunResults


LAST_RUN = "last-run.json"  # in segcheck's cache: where a pytest run leaves its results for `segcheck report`


def last_run_path(cache_dir) -> Path:
    """Where a pytest run leaves its results for `segcheck report`."""
    return Path(cache_dir) / LAST_RUN


def encoded(results: RunResults) -> bytes:
    """The results file's contents: what save writes, and a command's --json output of results."""
    return atomic.json_bytes(results.to_dict())


def save(results: RunResults, path) -> Path:
    return atomic.write_bytes(path, encoded(results))


def load(path) -> RunResults:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError(f"a JSON {type(doc).__name__}, where results are an object")
        if doc.get("format") not in READABLE:
            kind = _kind_of(doc)
            if kind:
                raise SegcheckError(f"{path}: {kind}; name a results file (pytest --results-json PATH writes one)")
            raise ValueError(f"format {doc.get('format')!r}, expected one of {', '.join(map(str, READABLE))}")
        results = RunResults.from_dict(doc)
        _headline_figures_are_numbers(results)
        return results
    except FileNotFoundError:
        if path.name == LAST_RUN:
            raise SegcheckError(f"{path}: no results yet; run pytest first (it writes them)") from None
        raise SegcheckError(f"{path}: no such results file; check the path (pytest --results-json writes one)") from None
    except OSError as err:
        raise SegcheckError(f"{path}: cannot read the results ({err.strerror}); name a readable results file") from None
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        raise SegcheckError(f"{path}: not a segcheck results file ({err}); run pytest again to rewrite it") from None


def _kind_of(doc: dict) -> str | None:
    """What another file segcheck or pytest-benchmark writes is, where `doc` is one."""
    if "tiers" in doc:
        return "this is a baseline, golden-record or noise file (it holds tiers), not a run's results"
    if "benchmarks" in doc and "machine_info" in doc:
        return "this is pytest-benchmark's JSON, not segcheck's results (pytest --results-json writes those)"
    return None


HEADLINE = ("pixacc", "miou", "latency_ms")  # the figures of the table, which a run writes as numbers or leaves out


def _headline_figures_are_numbers(results: RunResults) -> None:
    """A table figure that is not a finite number (NaN, a string) was not written by a run: a ValueError naming it."""
    for name, model in results.models.items():
        for precision in ("fp32", "int8"):
            for key in HEADLINE:
                value = getattr(model.figures(precision), key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
                    raise ValueError(f"models.{name}.{precision}.{key} is {value!r}, not a figure a run writes")


def _cell(value, baseline=None, pct=False) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}{'%' if pct else ''}"
    if baseline is not None:
        text += f" ({value - baseline:+.2f})"
    return text


CACHED_MARK = " (c)"  # figures of an evaluation read from the cache, not made in this run
HEADER = ("model", "fp32 latency(ms)", "s8 latency(ms)", "speed-up", "fp32 pixAcc", "fp32 mIoU", "s8 pixAcc", "s8 mIoU", "status")


def rows(results: RunResults) -> list:
    """The Performance table's rows: MXNet's models (their peers have a table of their own, peer_rows)."""
    table = []
    for name in sorted(n for n in results.models if of_peer_row(n)[1] is None):
        m = results.models[name]
        latency = [_cell(f.latency_ms) + (f" ±{f.latency_iqr_pct / 2:.1f}%" if f.latency_iqr_pct is not None else "")
                   for f in (m.fp32, m.int8)]
        accuracy = []
        for precision in ("fp32", "int8"):
            figures, prefix = m.figures(precision), SEED_PREFIX[precision]
            base = Row(**m.baseline[precision]) if precision in m.baseline else None
            mark = CACHED_MARK if figures.cached else ""
            accuracy += [_cell(figures.pixacc, base and getattr(base, f"{prefix}_pixacc"), pct=True) + mark,
                         _cell(figures.miou, base and getattr(base, f"{prefix}_miou")) + mark]
        table.append((name, *latency, f"{m.speedup():.2f}x" if m.speedup() else "-", *accuracy, m.status(results.strict_changes)))
    return table


PEER_HEADER = ("model", "runtime", "fp32 latency(ms)", "s8 latency(ms)", "s8 vs MXNet s8", "fp32 mIoU", "s8 mIoU",
               "s8 drop (mIoU)", "fp32 agreement", "status")


def peer_rows(results: RunResults) -> list:
    """Each model beside its peer runtimes (rows named "<model>+<runtime>"): latency, accuracy, the INT8 drop, and
    how much of MXNet's FP32 prediction the peer's FP32 reproduces."""
    runtimes = {}
    for name in results.models:
        model, runtime = of_peer_row(name)
        if runtime:
            runtimes.setdefault(model, []).append(name)
    table = []
    for model, names in sorted(runtimes.items()):
        mxnet = results.models.get(model)
        for name in ([model] if mxnet else []) + sorted(names):
            m = results.models[name]
            drop = m.int8.miou - m.fp32.miou if m.int8.miou is not None and m.fp32.miou is not None else None
            versus = f"{m.int8.latency_ms / mxnet.int8.latency_ms:.2f}x" if (
                mxnet and m.int8.latency_ms and mxnet.int8.latency_ms) else "-"
            agreement = "-" if m.agreement_pct is None else f"{m.agreement_pct:.2f}%"
            table.append((model, of_peer_row(name)[1] or "mxnet", _cell(m.fp32.latency_ms), _cell(m.int8.latency_ms),
                          versus, _cell(m.fp32.miou), _cell(m.int8.miou), "-" if drop is None else f"{drop:+.2f}", agreement,
                          m.status(results.strict_changes)))
    return table


def _fmt(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def comparisons(results: RunResults) -> str:
    """How the checks that compare with a recorded row or golden record compared: with this environment's own under this
    INT8 key, across environments, across recipes (by tolerance tier), with the published table, or not at all; and
    how many of them found a change (CHANGED) and a regression (REGRESSED)."""
    checks = [c for m in results.models.values() for c in m.checks.values() if c.compared]
    counts = Counter(c.compared for c in checks)
    across = {t: n for t, n in counts.items() if t not in ("exact", "none") and not t.startswith("published")}
    environments = sum(n for t, n in across.items() if "isa" in t or "version" in t)
    recipes = sum(n for t, n in across.items() if "recipe" in t)
    tiers = ", ".join(f"{t} {n}" for t, n in sorted(across.items()))
    parts = [f"{counts['exact']} against this environment's records", f"{environments} across environments",
             f"{recipes} across INT8 recipes" + (f" (by tier: {tiers})" if tiers else "")]
    published = sum(n for t, n in counts.items() if t.startswith("published"))
    if published:
        parts.append(f"{published} against the published table")
    verdicts = Counter(c.status for c in checks if c.compared != "none")
    found = f"; CHANGED {verdicts[CHANGED]}, REGRESSED {verdicts[REGRESSED]}"
    accept = (" (CHANGED is not a failure" + ("" if not verdicts[CHANGED] else ": accept it with pytest --update-baselines")
              + ("; --strict-changes made it one" if results.strict_changes else "") + ")") if verdicts[CHANGED] else ""
    return (f"compared: {', '.join(parts)}; with no record to compare: {counts['none']}"
            + (" (a SKIP saying so)" if counts["none"] else "") + found + accept)


def markdown(results: RunResults) -> str:
    main = rows(results)
    lines = [" | ".join(HEADER), " | ".join("--" for _ in HEADER), *(" | ".join(r) for r in main)] if main else []
    if not results.models:
        lines = ["no model in these results: nothing was gated (pytest, or pytest -k MODEL, runs the gate's cases)"]
    known = {n: m.setting for n, m in results.models.items() if m.setting}  # a latency-only model records none
    settings = {json.dumps(setting, sort_keys=True): setting for setting in known.values()}
    if len(settings) == 1:
        setting_notes = [f"setting: {_fmt(next(iter(settings.values())))}"]
    else:
        setting_notes = [f"setting of {n}: {_fmt(setting)}" for n, setting in sorted(known.items())]
    cached = [f"{n} {p}" for n, m in sorted(results.models.items()) for p in ("fp32", "int8") if m.figures(p).cached]
    notes = [
        f"tier: {results.tier}; mIoU convention: {results.convention}",
        *([f"{CACHED_MARK.strip()}: evaluated in an earlier run and read from the cache (same graph, weights, images, "
           f"setting, environment and code): {', '.join(cached)}; --no-eval-cache evaluates again"] if cached else []),
        *setting_notes,
        f"environment: {', '.join(f'{k} {v}' for k, v in results.environment.items() if v != '')}",
        comparisons(results),
        "(latency: the benchmarks' minimum of the rounds, ± half their interquartile range over the median; speed-up: "
        "FP32 and INT8 timed in turn by the speed-up gate, where it ran; "
        "in parentheses: the difference from the baseline row)",
    ]
    failing = [
        f"- {name} {check}: {c.message}"
        for name, m in sorted(results.models.items())
        for check, c in sorted(m.checks.items())
        if c.status in FAILING + (CHANGED,)
    ]
    notes += [memory_line(results)] if results.memory is not None else []
    notes += [f"warning: {w}" for w in results.warnings]
    peers = peer_rows(results)
    if peers:
        lines += [""] * bool(lines) + [
            "peer runtimes beside MXNet (s8 vs MXNet s8: the INT8 latency over MXNet's; fp32 agreement: pixels whose FP32 "
            "prediction equals MXNet's)", " | ".join(PEER_HEADER), " | ".join("--" for _ in PEER_HEADER), *(" | ".join(r) for r in peers)]
    return "\n".join(lines + [""] + notes + ([""] + failing if failing else [])) + "\n"


PHASES_SHOWN = 8  # the footer's phases of the process, largest first (the results JSON has them all)


def memory_line(results: RunResults) -> str:
    """The run's peak resident set, the tests that raised it most, the peak of each phase, and each model's largest
    forked work."""
    memory = results.memory
    rose = ", ".join(f"{step} (+{mb / 1024:.2f} GB)" for step, mb in memory.rose_in)
    works = ", ".join(f"{name} {max(m.footprint_mb.values()) / 1024:.2f} GB ({max(m.footprint_mb, key=m.footprint_mb.get)})"
                      for name, m in sorted(results.models.items()) if m.footprint_mb)
    phases = ", ".join(f"{name} {mb / 1024:.2f} GB" for name, mb in memory.phases[:PHASES_SHOWN])
    forked = ", ".join(f"{name} {mb / 1024:.2f} GB" for name, mb in memory.child_phases)
    return (f"memory: peak resident set {memory.peak_mb / 1024:.2f} GB in the pytest process, "
            f"{memory.children_peak_mb / 1024:.2f} GB in its largest forked child" + (f"; raised most by {rose}" if rose else "")
            + (f"; by phase, the process: {phases}" if phases else "") + (f"; its forked work: {forked}" if forked else "")
            + (f"; each model's largest forked work beyond the process: {works}" if works else ""))


def amx_path(cache_dir, environment: dict) -> Path:
    """Where an AMX run leaves its speed-ups for the runs of other ISAs on this machine and MXNet."""
    return Path(cache_dir) / f"amx-speedups-{environment.get('mxnet')}-{environment.get('onednn')}.json".replace(" ", "_")


def speedups(results: RunResults) -> dict:
    """model -> INT8 / FP32 speed-up measured in this run (where both latencies were)."""
    return {name: round(m.speedup(), 2) for name, m in sorted(results.models.items()) if m.speedup()}


def amx_note(results: RunResults, cache_dir, cpu_has_amx: bool) -> str | None:
    """On a CPU that has AMX while this run used another ISA: what AMX gives, as an AMX run on this machine measured it,
    or how to measure it. An AMX run stores its speed-ups for that (store_amx)."""
    if not cpu_has_amx or results.environment.get("isa") == "amx":
        return None
    try:
        doc = json.loads(amx_path(cache_dir, results.environment).read_text())
        shown = ", ".join(f"{name} {value:.2f}x" for name, value in doc["speedups"].items() if name in results.models)
        when = f"measured {doc['date']} at {doc['setting']}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "this CPU has AMX, which INT8 does not use in this run: `pytest --isa amx` (tox -e isa-amx) measures what it gives"
    return f"this CPU has AMX, which INT8 does not use in this run: under --isa amx the INT8 speed-ups were {shown} ({when})"


def store_amx(results: RunResults, cache_dir) -> Path | None:
    """An AMX run's speed-ups, for amx_note in the other runs on this machine."""
    found = speedups(results)
    if results.environment.get("isa") != "amx" or not found:
        return None
    settings = {json.dumps(m.setting, sort_keys=True) for m in results.models.values()}
    return atomic.write_json(amx_path(cache_dir, results.environment),
                             {"date": datetime.date.today().isoformat(), "speedups": found,
                              "setting": ", ".join(sorted(settings))})


def per_class(results: RunResults) -> str:
    """Per model and class: IoU in FP32, INT8 and the golden run's INT8, and INT8 - FP32; classes labelled less
    than the class gate's minimum are marked (left out of it)."""
    lines = []
    for name, m in sorted(results.models.items()):
        f, q = m.fp32.iou, m.int8.iou
        if f is None or q is None:
            continue
        golden = m.baseline_class_iou.get("int8") or [None] * len(f)
        labelled = _labelled(m)
        least = m.tolerances.get("class_min_pixels", 0)
        lines += [f"{name} ({m.subset}; mIoU convention {results.convention})",
                  "class | fp32 IoU | s8 IoU | s8 - fp32 | golden s8 IoU | labelled pixels", "-- | -- | -- | -- | -- | --"]
        for c, label in enumerate(m.classes):
            delta = f"{q[c] - f[c]:+.2f}" if f[c] is not None and q[c] is not None else "-"
            mark = " (left out)" if labelled and 0 < labelled[c] < least else ""
            lines.append(f"{label} | {_cell(f[c])} | {_cell(q[c])} | {delta} | {_cell(golden[c])} | "
                         f"{labelled[c] if labelled else '-'}{mark}")
        lines.append("")
    return "\n".join(lines) + ("\n" if lines else "no per-class IoU in these results\n")


def _labelled(m) -> list:
    if m.fp32.matrix is None:
        return []
    return [sum(row) for row in m.fp32.matrix]


def golden_of(m) -> Golden:
    """The golden records a trusted run's results hold for one model."""
    return Golden(
        ranges=m.ranges, sqnr_db={layer["name"]: layer["sqnr_db"] for layer in m.layers},
        sqnr_per_image={layer["name"]: list(layer.get("per_image", ())) for layer in m.layers},
        signal_per_image={layer["name"]: list(layer.get("signal", ())) for layer in m.layers if layer.get("signal")},
        digest={p: {"sha256": f.digest, "images": f.image_digests, "pixels": f.predicted}
                for p, f in (("fp32", m.fp32), ("int8", m.int8)) if f.digest},
        class_iou={p: f.iou for p, f in (("fp32", m.fp32), ("int8", m.int8)) if f.iou is not None},
        per_image={p: f.per_image for p, f in (("fp32", m.fp32), ("int8", m.int8)) if f.per_image},
        agreement=m.int8.agreement or [], output_sqnr=m.int8.output_sqnr or [],
    )


@dataclass
class Recordable:
    groups: list  # (setting, INT8 key, {name: Row}) per setting and INT8 key
    missing: dict  # name -> why it cannot be recorded, for a model that ran with figures missing
    skipped: dict  # name -> the skip reason, for a model every check of which skipped (nothing was measured)


def rows_to_record(results: RunResults) -> Recordable:
    """Baseline rows from a run, grouped by setting and INT8 key; a model needs all six figures (accuracy and latency,
    FP32 and INT8) and its INT8 key."""
    groups, missing, skipped = {}, {}, {}
    for name, m in sorted(results.models.items()):
        figures = {f"{SEED_PREFIX[p]}_{k}": getattr(m.figures(p), k) for p in ("fp32", "int8") for k in ("latency_ms", "pixacc", "miou")}
        absent = sorted(k for k in ROW_KEYS if figures[k] is None) + ([] if m.int8_key else ["the INT8 key"])
        if absent:
            if m.checks and all(c.status == SKIP for c in m.checks.values()):
                skipped[name] = next(iter(m.checks.values())).message
            else:
                missing[name] = (f"{', '.join(absent)} not measured in this run (run the accuracy tests and the latency "
                                 "benchmarks together, without -n)")
            continue
        key = json.dumps([m.setting, m.int8_key], sort_keys=True)
        groups.setdefault(key, (m.setting, m.int8_key, {}))[2][name] = Row(**{k: figures[k] for k in ROW_KEYS})
    return Recordable(list(groups.values()), missing, skipped)

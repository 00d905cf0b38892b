"""A run's results and the seed's Performance table: Markdown, JSON and a PNG chart.

model | fp32 latency(ms) | s8 latency(ms) | fp32 pixAcc | fp32 mIoU | s8 pixAcc | s8 mIoU, plus the
speed-up, the deltas against the baseline row and a PASS / FAIL / IMPROVED status per model.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import atomic
from .baselines import Row
from .errors import SegcheckError
from .gate import FAIL, IMPROVED, PASS, SKIP, Verdict

FORMAT = 1


def last_run_path(cache_dir) -> Path:
    """Where a pytest run leaves its results for `segcheck report`."""
    return Path(cache_dir) / "last-run.json"


@dataclass
class ModelResult:
    name: str
    fp32: dict = field(default_factory=dict)  # pixacc, miou (percent), latency_ms
    int8: dict = field(default_factory=dict)
    subset: str = ""
    int8_share: float | None = None
    baseline: dict | None = None  # the Row used, as a dict
    verdicts: dict = field(default_factory=dict)  # check name -> {"status", "message"}

    def status(self) -> str:
        states = {v["status"] for v in self.verdicts.values()}
        if FAIL in states:
            return FAIL
        if IMPROVED in states:
            return IMPROVED
        return PASS if PASS in states else SKIP


@dataclass
class RunResults:
    tier: str = ""
    convention: str = ""
    setting: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)

    def model(self, name: str) -> ModelResult:
        return self.models.setdefault(name, ModelResult(name))

    def record(self, name: str, precision: str, **figures) -> None:
        getattr(self.model(name), precision).update(figures)

    def verdict(self, name: str, check: str, verdict: Verdict) -> None:
        self.model(name).verdicts[check] = {"status": verdict.status, "message": verdict.message}

    def merge(self, other: "RunResults") -> None:
        """Fold in a worker's results (pytest-xdist): figures and verdicts are per model and check."""
        for key in ("tier", "convention", "setting", "environment"):
            setattr(self, key, getattr(self, key) or getattr(other, key))
        for name, theirs in other.models.items():
            mine = self.model(name)
            mine.fp32.update(theirs.fp32)
            mine.int8.update(theirs.int8)
            mine.verdicts.update(theirs.verdicts)
            mine.subset = mine.subset or theirs.subset
            mine.int8_share = mine.int8_share if mine.int8_share is not None else theirs.int8_share
            mine.baseline = mine.baseline or theirs.baseline

    def to_dict(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, doc: dict) -> "RunResults":
        doc = dict(doc)
        doc.pop("format", None)
        models = {name: ModelResult(**m) for name, m in doc.pop("models", {}).items()}
        return cls(models=models, **doc)


def save(results: RunResults, path) -> Path:
    return atomic.write_json(path, results.to_dict())


def load(path) -> RunResults:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
        return RunResults.from_dict(doc)
    except FileNotFoundError:
        raise SegcheckError(f"{path}: no results yet; run pytest first (it writes them) or pass --results") from None
    except (ValueError, TypeError, AttributeError) as err:
        raise SegcheckError(f"{path}: not a segcheck results file ({err}); run pytest again to rewrite it") from None


def _cell(value, unit="", baseline=None, pct=False) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}{'%' if pct else ''}{unit}"
    if baseline is not None:
        text += f" ({value - baseline:+.2f})"
    return text


HEADER = ("model", "fp32 latency(ms)", "s8 latency(ms)", "speed-up", "fp32 pixAcc", "fp32 mIoU", "s8 pixAcc", "s8 mIoU", "status")


def rows(results: RunResults) -> list:
    table = []
    for name in sorted(results.models):
        m = results.models[name]
        base = Row(**m.baseline) if m.baseline else None
        f_ms, q_ms = m.fp32.get("latency_ms"), m.int8.get("latency_ms")
        table.append((
            name,
            _cell(f_ms), _cell(q_ms),
            f"{f_ms / q_ms:.2f}x" if f_ms and q_ms else "-",
            _cell(m.fp32.get("pixacc"), baseline=base and base.fp32_pixacc, pct=True),
            _cell(m.fp32.get("miou"), baseline=base and base.fp32_miou),
            _cell(m.int8.get("pixacc"), baseline=base and base.s8_pixacc, pct=True),
            _cell(m.int8.get("miou"), baseline=base and base.s8_miou),
            m.status(),
        ))
    return table


def markdown(results: RunResults) -> str:
    lines = [" | ".join(HEADER), " | ".join("--" for _ in HEADER)]
    lines += [" | ".join(r) for r in rows(results)]
    env = ", ".join(f"{k} {v}" for k, v in results.environment.items())
    setting = ", ".join(f"{k}={v}" for k, v in results.setting.items())
    notes = [
        f"tier: {results.tier}; mIoU convention: {results.convention}; setting: {setting}",
        f"environment: {env}",
        "(in parentheses: the difference from the baseline row)",
    ]
    failing = [
        f"- {name} {check}: {v['message']}"
        for name, m in sorted(results.models.items())
        for check, v in sorted(m.verdicts.items())
        if v["status"] in (FAIL, IMPROVED)
    ]
    return "\n".join(lines + [""] + notes + ([""] + failing if failing else [])) + "\n"


def chart(results: RunResults, path) -> Path:
    """Latency and mIoU per model, FP32 beside INT8, as a PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(results.models)
    if not names:
        raise SegcheckError("no model results to chart; run pytest first")
    fig, (lat, acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = range(len(names))
    for offset, precision, label in ((-0.2, "fp32", "FP32 (fused)"), (0.2, "int8", "INT8")):
        m = [getattr(results.models[n], precision) for n in names]
        lat.bar([i + offset for i in x], [r.get("latency_ms", 0) for r in m], width=0.4, label=label)
        acc.bar([i + offset for i in x], [r.get("miou", 0) for r in m], width=0.4, label=label)
    for axis, title in ((lat, "latency (ms, lower is better)"), (acc, f"mIoU ({results.convention} convention)")):
        axis.set_xticks(list(x))
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        axis.set_title(title)
        axis.legend()
    fig.suptitle(f"segcheck: {results.tier} tier, {results.environment.get('isa', '?')}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic.write_bytes(path, buffer.getvalue())


@dataclass
class Recordable:
    rows: dict  # name -> Row
    missing: dict  # name -> why it cannot be recorded


def rows_to_record(results: RunResults) -> Recordable:
    """Baseline rows from a run; a model needs all six figures (accuracy and latency, FP32 and INT8)."""
    rows, missing = {}, {}
    for name, m in sorted(results.models.items()):
        figures = {f"{p}_{k}": getattr(m, src).get(k) for p, src in (("fp32", "fp32"), ("s8", "int8"))
                   for k in ("latency_ms", "pixacc", "miou")}
        absent = sorted(k for k, v in figures.items() if v is None)
        if absent:
            missing[name] = f"{', '.join(absent)} not measured in this run (run the accuracy tests and the latency benchmarks together, without -n)"
        else:
            rows[name] = Row(**figures)
    return Recordable(rows, missing)

"""`segcheck isa-bench [--levels L,...] [--json PATH] [--png PATH] [PYTEST ARGS]`: the gate's latency benchmarks under
every ISA level this CPU can dispatch, one table.

oneDNN reads its ISA cap once per process, so each level runs in a pytest process of its own (`pytest -m bench --isa
LEVEL`, in this folder's project, with pytest-benchmark's JSON); INT8 is calibrated there on one image, which changes
no latency. The table gives FP32 and INT8 (minimum of the rounds) and the speed-up per model and level; --json writes
every child's benchmarks in one pytest-benchmark file (each tagged with its level), --png draws the speed-ups.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..config import isa, options
from ..errors import SegcheckError
from ..results.records import speedup

LEVELS = isa.INT8_LEVELS


@dataclass(frozen=True)
class Measured:
    model: str
    level: str
    fp32_ms: float | None
    int8_ms: float | None

    @property
    def speedup(self) -> float | None:
        return speedup(self.fp32_ms, self.int8_ms)


def parser() -> options.Parser:
    p = options.Parser(prog="segcheck isa-bench", description=" ".join(__doc__.split("\n\n")[0].split()),
                                epilog="Other arguments go to each pytest run (e.g. -k voc --crop-size 480).")
    p.add_argument("--levels", help=f"comma-separated ISA levels (default: those of {', '.join(LEVELS)} this CPU has)")
    p.add_argument("--json", dest="json_out", help="write every level's benchmarks as one pytest-benchmark JSON file here")
    p.add_argument("--png", help="draw the speed-ups per model and level as a PNG here")
    return p


def levels_of(text: str | None, available: list) -> list:
    if text is None:
        return [level for level in LEVELS if level in available]
    try:
        chosen = [isa.name(t) for t in text.split(",") if t.strip()]
    except SegcheckError as err:
        raise SegcheckError(f"--levels: {err}") from None
    if not chosen:
        raise SegcheckError(f"--levels {text!r} names no level; choose among {', '.join(available)}")
    missing = [level for level in chosen if level not in available]
    if missing:
        raise SegcheckError(f"--levels: this CPU cannot dispatch {', '.join(missing)} (it has {', '.join(available)})")
    return chosen


def _calibrating() -> bool:
    """Whether this folder's project calibrates any model (else the calibration options would have no effect)."""
    from ..config.project import find

    project = find(Path.cwd(), None, Path.cwd())
    return project is not None and any(m.int8_export is None and m.recipe.get("mode") != "none" for m in project.models)


def run_level(level: str, pytest_args: list, folder: Path) -> tuple[dict | None, int, str]:
    """(pytest-benchmark JSON, exit status, last lines) of the gate's latency benchmarks under `level` in a process
    of its own."""
    out = folder / f"{level}.json"
    calibration = ["--calib-batches", "1", "--calib-batch-size", "1"] if _calibrating() else []
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "bench", "--isa", level, *calibration,
            f"--benchmark-json={out}", *pytest_args]
    done = subprocess.run(args, capture_output=True, text=True)
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    return (json.loads(out.read_text()) if out.is_file() else None), done.returncode, tail


def measured(level: str, doc: dict) -> list:
    """Measured per model of one level's pytest-benchmark JSON (the gate's test_latency benchmarks)."""
    found = {}
    for bench in doc.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "model" in info and "precision" in info:
            found.setdefault(info["model"], {})[info["precision"]] = 1000 * bench["stats"]["min"]
    return [Measured(model, level, times.get("fp32"), times.get("int8")) for model, times in sorted(found.items())]


def merged(docs: dict) -> dict:
    """One pytest-benchmark document of every level's benchmarks, each tagged with its level and environment."""
    first = next(iter(docs.values()))
    benchmarks = []
    for level, doc in docs.items():
        environment = doc.get("machine_info", {}).get("segcheck", {})
        for bench in doc.get("benchmarks", []):
            benchmarks.append({**bench, "name": f"{bench['name']}@{level}",
                               "extra_info": {**bench.get("extra_info", {}), "isa": level, "segcheck": environment}})
    return {**first, "benchmarks": benchmarks}


def markdown(rows: list, statuses: dict) -> str:
    lines = ["model | ISA level | fp32 latency(ms) | s8 latency(ms) | speed-up", "-- | -- | -- | -- | --"]
    for r in sorted(rows, key=lambda r: (r.model, LEVELS.index(r.level) if r.level in LEVELS else 99)):
        cells = [f"{v:.1f}" if v else "-" for v in (r.fp32_ms, r.int8_ms)]
        lines.append(f"{r.model} | {r.level} | {cells[0]} | {cells[1]} | {f'{r.speedup:.2f}x' if r.speedup else '-'}")
    lines += [""] + [f"{level}: pytest exit status {code}" + (f" ({tail.splitlines()[-1]})" if tail else "")
                     for level, (code, tail) in statuses.items()]
    return "\n".join(lines) + "\n"


def png(rows: list) -> bytes:
    """Grouped bars as a PNG: per model, the INT8 speed-up under each level, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r.model for r in rows})
    levels = [level for level in LEVELS if any(r.level == level for r in rows)]
    if not models or not levels:
        raise SegcheckError("isa-bench measured nothing to draw")
    width = 0.8 / len(levels)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(models) * len(levels)), 4.5))
    for i, level in enumerate(levels):
        for j, model in enumerate(models):
            r = next((r for r in rows if r.model == model and r.level == level), None)
            if r and r.speedup:
                x = j + (i - (len(levels) - 1) / 2) * width
                ax.bar(x, r.speedup, width * 0.9, color=f"C{i}", label=level if j == 0 else None)
                ax.text(x, r.speedup, f"{r.speedup:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(models)), models, rotation=15, ha="right")
    ax.set_ylabel("INT8 speed-up over fused FP32")
    ax.legend(title="oneDNN ISA", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("INT8 / FP32 latency (minimum of the rounds), one process per ISA level")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def main(argv, out=sys.stdout) -> int:
    args, extra = parser().parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if any(a == "--isa" or a.startswith("--isa=") for a in extra):
        raise SegcheckError("isa-bench sets --isa for each level itself; choose the levels with --levels")
    levels = levels_of(args.levels, isa.supported())
    atomic.outputs_apart({"--json": args.json_out, "--png": args.png}, [])  # before the measurement, which takes minutes
    docs, statuses, rows = {}, {}, []
    with tempfile.TemporaryDirectory(prefix="segcheck-isa-bench-") as tmp:
        for level in levels:
            print(f"measuring under {level} ...", file=out, flush=True)
            doc, code, tail = run_level(level, extra, Path(tmp))
            statuses[level] = (code, tail)
            if doc is not None:
                docs[level] = doc
                rows += measured(level, doc)
    out.write(markdown(rows, statuses))
    atomic.write_outputs({"json": (args.json_out if docs else None, lambda: atomic.json_bytes(merged(docs))),
                          "chart": (args.png, lambda: png(rows))}, out)
    return 0 if rows and all(code == 0 for code, _ in statuses.values()) else 1

"""The mutant catalogue's kill table, per environment: which checks killed each mutant and how, the kill rate per
mutant class, and how often each layer-naming check named a single-layer mutant's layer first; as Markdown and JSON.

A kill is an assertion of a non-latency check failing, or an error whose message names its cause (a SegcheckError);
an unexplained error or a crash kills nothing. The speed class is judged by the latency checks alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import atomic

ASSERTION, ERROR = "assertion", "error"


@dataclass(frozen=True)
class Kill:
    check: str  # gate.checks name: int8-accuracy, int8-ranges, ...
    how: str  # ASSERTION or ERROR
    message: str


@dataclass(frozen=True)
class MutantRow:
    name: str
    kind: str  # the mutant's class
    kills: tuple = ()  # Kill
    equivalent: bool = False  # survived, and its INT8 model predicts and calibrates exactly as the clean control's
    layer: str | None = None  # the layer a single-layer mutant changed, named from MXNet's graph
    named_first: dict = field(default_factory=dict)  # naming check -> the layer it named first (None: named none)
    unexplained: tuple = ()  # errors or crashes that kill nothing: (check, message)

    @property
    def killed(self) -> bool:
        return bool(self.kills)


@dataclass(frozen=True)
class KillTable:
    environment: dict  # the run's environment (key and provenance)
    date: str
    model: str
    control: str  # how the clean control run ended ("passed: N checks")
    rows: tuple  # MutantRow
    naming_checks: tuple = ("int8-ranges", "int8-layers")

    def by_kind(self) -> dict:
        kinds = {}
        for row in self.rows:
            kinds.setdefault(row.kind, []).append(row)
        return kinds

    def counts(self) -> dict:
        """killed, non-equivalent and all mutants; the speed class apart (it is judged by latency alone)."""
        gated = [r for r in self.rows if r.kind != "speed"]
        others = [r for r in gated if not r.equivalent]
        return {"mutants": len(gated), "non_equivalent": len(others), "killed": sum(r.killed for r in others),
                "equivalent": len(gated) - len(others), "speed": [r.killed for r in self.rows if r.kind == "speed"]}

    def naming(self) -> dict:
        """naming check -> (single-layer mutants whose layer it named first, single-layer mutants)."""
        single = [r for r in self.rows if r.layer]
        return {check: (sum(r.named_first.get(check) == r.layer for r in single), len(single)) for check in self.naming_checks}

    def checks(self) -> list:
        return sorted({k.check for r in self.rows for k in r.kills})


def markdown(table: KillTable) -> str:
    env = table.environment
    counts, naming, checks = table.counts(), table.naming(), table.checks()
    rate = 100 * counts["killed"] / counts["non_equivalent"] if counts["non_equivalent"] else 0.0
    lines = [f"# Kill table: {table.model}, mxnet {env.get('mxnet')}, oneDNN {env.get('onednn')}, ISA {env.get('isa')}",
             "",
             f"Measured {table.date} on {env.get('cpu', '?')} (oneDNN level {env.get('onednn_isa', '?')}"
             + (f", capped at {env['cap']}" if env.get("cap") else "") + f"). Clean control: {table.control}.",
             "",
             f"Killed {counts['killed']} of {counts['non_equivalent']} non-equivalent mutants ({rate:.1f} %); "
             f"{counts['equivalent']} equivalent of {counts['mutants']}; speed mutant killed: "
             f"{'yes' if all(counts['speed']) and counts['speed'] else 'no'}.",
             "",
             "Layer named first, over the single-layer mutants: " + "; ".join(
                 f"{check} {named} of {total} ({100 * named / total:.0f} %)" if total else f"{check} -"
                 for check, (named, total) in naming.items()),
             "",
             "mutant class | mutants | killed | equivalent | " + " | ".join(checks),
             " | ".join(["--"] * (4 + len(checks)))]
    for kind, rows in table.by_kind().items():
        lines.append(f"{kind} | {len(rows)} | {sum(r.killed for r in rows)} | {sum(r.equivalent for r in rows)} | "
                     + " | ".join(str(sum(any(k.check == c for k in r.kills) for r in rows)) for c in checks))
    lines += ["", "mutant | class | killed by | layer | named first"]
    lines += ["-- | -- | -- | -- | --"]
    for r in table.rows:
        killers = ", ".join(f"{k.check}{' (error)' if k.how == ERROR else ''}" for k in r.kills)
        verdict = killers or ("EQUIVALENT" if r.equivalent else "SURVIVED")
        named = ", ".join(f"{c}: {n or '-'}" for c, n in r.named_first.items()) if r.layer else ""
        lines.append(f"{r.name} | {r.kind} | {verdict} | {r.layer or ''} | {named}")
    return "\n".join(lines) + "\n"


def to_dict(table: KillTable) -> dict:
    doc = asdict(table)
    doc["counts"], doc["naming"] = table.counts(), {c: list(v) for c, v in table.naming().items()}
    return doc


def from_dict(doc: dict) -> KillTable:
    rows = tuple(MutantRow(**{**r, "kills": tuple(Kill(**k) for k in r["kills"]), "unexplained": tuple(map(tuple, r["unexplained"]))})
                 for r in doc["rows"])
    return KillTable(doc["environment"], doc["date"], doc["model"], doc["control"], rows, tuple(doc["naming_checks"]))


def file_stem(environment: dict) -> str:
    """The tables' file name in a folder of them: one per environment key."""
    return "-".join(str(environment.get(k, "?")) for k in ("mxnet", "onednn", "isa")).replace(" ", "_")


def save(table: KillTable, folder) -> tuple[Path, Path]:
    """<folder>/<environment>.md and .json, each written atomically."""
    stem = file_stem(table.environment)  # 1.9.1-2.4.4-avx512_vnni: its dots are no suffix
    md = atomic.write_text(Path(folder) / f"{stem}.md", markdown(table))
    js = atomic.write_text(Path(folder) / f"{stem}.json", json.dumps(to_dict(table), indent=1) + "\n")
    return md, js


def load(path) -> KillTable:
    return from_dict(json.loads(Path(path).read_text()))

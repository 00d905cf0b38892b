"""The variant catalogue's table, per environment: what the gate did with each variant (the checks that failed it in
the default mode, the checks that reported it CHANGED), what the harm oracle says it is (harmful by the task or by a
layer, benign, grey, equivalent), and the gate's error rates from the two: harmful caught, benign failed, benign
reported CHANGED, in the default mode and in strict mode (where CHANGED fails too).

A kill is an assertion of a non-latency check failing, or an error whose message names its cause (a SegcheckError);
an unexplained error or a crash kills nothing. Two classes change what ships without changing its accuracy, so the
oracle does not score them: the speed class is judged by the latency checks alone, a layer left in FP32 by the graph
check (every convolution in INT8) alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import atomic
from ..config.tolerances import HARM

ASSERTION, ERROR = "assertion", "error"
HARMFUL, BENIGN, GREY, EQUIVALENT = "harmful", "benign", "grey", "equivalent"
SPEED, STRUCTURE = "speed", "layer left in FP32"  # classes judged by one check alone, not scored by the oracle
UNSCORED = {SPEED: "the latency checks", STRUCTURE: "the graph check"}
SAME = "same predictions"  # the oracle's: not scored, though its logits differ


@dataclass(frozen=True)
class Kill:
    check: str  # gate.checks name: int8-accuracy, int8-ranges, ...
    how: str  # ASSERTION or ERROR
    message: str


@dataclass(frozen=True)
class MutantRow:
    name: str
    kind: str  # the variant's class in the catalogue
    kills: tuple = ()  # Kill: what failed it in the default mode
    equivalent: bool = False  # its INT8 logits are bit-identical to the clean control's on the held-out set
    layer: str | None = None  # the layer a single-layer variant changed, named from MXNet's graph
    named_first: dict = field(default_factory=dict)  # naming check -> the layer it named first (None: named none)
    unexplained: tuple = ()  # errors or crashes that kill nothing: (check, message)
    changed: tuple = ()  # checks that reported it CHANGED (they fail it in strict mode)
    oracle: dict = field(default_factory=dict)  # the harm oracle's verdict (oracle.Verdict.to_dict()); {} for speed

    @property
    def killed(self) -> bool:
        return bool(self.kills)

    @property
    def strict_killed(self) -> bool:
        return bool(self.kills or self.changed)

    @property
    def verdict(self) -> str:
        """The oracle's class: harmful, benign, grey, equivalent, same predictions ('' for the speed class)."""
        return EQUIVALENT if self.equivalent else self.oracle.get("kind", "")


@dataclass(frozen=True)
class KillTable:
    environment: dict  # the run's environment (key and provenance)
    date: str
    model: str
    control: str  # how the clean control runs ended ("passed 5 of 5 gated clean runs, ...")
    rows: tuple  # MutantRow
    naming_checks: tuple = ("int8-ranges", "int8-layers")
    recipe: str = ""  # the INT8 recipe the inner runs calibrated with, where it is not the recorded one (a recipe change)

    def by_kind(self) -> dict:
        kinds = {}
        for row in self.rows:
            kinds.setdefault(row.kind, []).append(row)
        return kinds

    def counts(self) -> dict:
        """The gate's error rates against the oracle (the speed and structure classes apart: UNSCORED)."""
        judged = [r for r in self.rows if r.kind not in UNSCORED]
        harmful = [r for r in judged if r.verdict == HARMFUL]
        task = [r for r in harmful if r.oracle.get("task")]
        layer_only = [r for r in harmful if not r.oracle.get("task")]
        benign = [r for r in judged if r.verdict == BENIGN]
        return {
            "variants": len(judged), "harmful": len(harmful), "benign": len(benign),
            "grey": sum(r.verdict == GREY for r in judged), "equivalent": sum(r.verdict == EQUIVALENT for r in judged),
            "same_predictions": sum(r.verdict == SAME for r in judged),
            "harmful_caught": sum(r.killed for r in harmful), "harmful_caught_strict": sum(r.strict_killed for r in harmful),
            "task_harmful": len(task), "task_caught": sum(r.killed for r in task),
            "layer_only_harmful": len(layer_only), "layer_only_caught": sum(r.killed for r in layer_only),
            "near_threshold": sum(_near(r) for r in harmful),
            "benign_failed": sum(r.killed for r in benign), "benign_failed_strict": sum(r.strict_killed for r in benign),
            "benign_changed": sum(bool(r.changed) and not r.killed for r in benign),
            "equivalent_failed": sum(r.killed for r in judged if r.verdict == EQUIVALENT),
            "speed": [r.killed for r in self.rows if r.kind == SPEED],
            "structure": [r.killed for r in self.rows if r.kind == STRUCTURE],
        }

    def naming(self) -> dict:
        """naming check -> (single-layer variants whose layer it named first, single-layer variants)."""
        single = [r for r in self.rows if r.layer]
        return {check: (sum(r.named_first.get(check) == r.layer for r in single), len(single)) for check in self.naming_checks}

    def checks(self) -> list:
        return sorted({k.check for r in self.rows for k in r.kills})


# Within twice the thresholds of harm (the oracle's, config.tolerances.HARM: mIoU and agreement, a layer's own fall)
NEAR = {"miou_drop": 2 * HARM["miou_points"], "agreement_drop": 2 * HARM["agreement_points"],
        "own_fall": 2 * HARM["layer_sqnr_db"]}


def _near(row: MutantRow) -> bool:
    """A harmful variant whose harm lies within twice the thresholds on the criteria that call it harmful."""
    o = row.oracle
    if o.get("task"):
        return o.get("miou_drop", 0.0) <= NEAR["miou_drop"] and o.get("agreement_drop", 0.0) <= NEAR["agreement_drop"]
    return o.get("own_fall", 0.0) <= NEAR["own_fall"]


def rate(part: int, whole: int) -> str:
    """A share as the tables and docs/verdicts.md quote it: part / whole (percent)."""
    return f"{part} / {whole} ({100 * part / whole:.0f} %)" if whole else f"{part} / 0"


def markdown(table: KillTable) -> str:
    env = table.environment
    cap = f", capped at {env['cap']}" if env.get("cap") else ""
    threads = f", {env['threads']} threads" if env.get("threads") else ""
    c, naming, checks = table.counts(), table.naming(), table.checks()
    lines = [f"# Variant table: {table.model}, mxnet {env.get('mxnet')}, oneDNN {env.get('onednn')}, ISA {env.get('isa')}"
             + (f", recipe {table.recipe}" if table.recipe else ""),
             "",
             f"Measured {table.date} on {env.get('cpu', '?')} (oneDNN level {env.get('onednn_isa', '?')}{cap}{threads}). "
             f"Clean control: {table.control}.",
             "",
             f"The oracle's classes: {c['harmful']} harmful ({c['task_harmful']} by the task, {c['layer_only_harmful']} by a "
             f"layer alone; {c['near_threshold']} within twice the thresholds), {c['benign']} benign, {c['grey']} grey (not "
             f"scored), {c['equivalent']} equivalent (bit-identical INT8 logits), {c['same_predictions']} with the same "
             f"predictions (not scored), of {c['variants']} variants.",
             "",
             "error rate | default mode | strict mode (CHANGED fails)",
             "-- | -- | --",
             f"harmful caught | {rate(c['harmful_caught'], c['harmful'])} | {rate(c['harmful_caught_strict'], c['harmful'])}",
             f"task-harmful caught | {rate(c['task_caught'], c['task_harmful'])} | ",
             f"layer-only harmful caught | {rate(c['layer_only_caught'], c['layer_only_harmful'])} | ",
             f"benign failed | {rate(c['benign_failed'], c['benign'])} | {rate(c['benign_failed_strict'], c['benign'])}",
             f"benign reported CHANGED (not failed) | {rate(c['benign_changed'], c['benign'])} | ",
             f"equivalent failed | {c['equivalent_failed']} | ",
             f"speed variant killed (latency checks) | {'yes' if c['speed'] and all(c['speed']) else 'no'} | ",
             f"layer left in FP32 killed (graph check) | {sum(c['structure'])} / {len(c['structure'])} | ",
             "",
             "Layer named first, over the single-layer variants: " + "; ".join(
                 f"{check} {named} of {total} ({100 * named / total:.0f} %)" if total else f"{check} -"
                 for check, (named, total) in naming.items()),
             "",
             "class | variants | harmful | caught | benign | benign failed | grey | equivalent | " + " | ".join(checks),
             " | ".join(["--"] * (8 + len(checks)))]
    for kind, rows in table.by_kind().items():
        harm = [r for r in rows if r.verdict == HARMFUL]
        benign = [r for r in rows if r.verdict == BENIGN]
        lines.append(f"{kind} | {len(rows)} | {len(harm)} | {sum(r.killed for r in harm)} | {len(benign)} | "
                     f"{sum(r.killed for r in benign)} | {sum(r.verdict == GREY for r in rows)} | "
                     f"{sum(r.verdict == EQUIVALENT for r in rows)} | "
                     + " | ".join(str(sum(any(k.check == ch for k in r.kills) for r in rows)) for ch in checks))
    lines += ["", "variant | class | oracle (mIoU drop, agreement drop, own fall dB) | failed by | CHANGED | layer | named first",
              "-- | -- | -- | -- | -- | -- | --"]
    for r in table.rows:
        killers = ", ".join(f"{k.check}{' (error)' if k.how == ERROR else ''}" for k in r.kills) or "-"
        o = r.oracle
        verdict = (f"{r.verdict}{' (task)' if o.get('task') else ' (layer)' if o.get('layer') else ''}: "
                   f"{o.get('miou_drop', 0):+.2f}, {o.get('agreement_drop', 0):+.2f}, {o.get('own_fall', 0):.1f}") if o else r.verdict or "-"
        named = ", ".join(f"{ch}: {n or '-'}" for ch, n in r.named_first.items()) if r.layer else ""
        lines.append(f"{r.name} | {r.kind} | {verdict} | {killers} | {', '.join(r.changed) or '-'} | {r.layer or ''} | {named}")
    return "\n".join(lines) + "\n"


def to_dict(table: KillTable) -> dict:
    doc = asdict(table)
    doc["counts"], doc["naming"] = table.counts(), {c: list(v) for c, v in table.naming().items()}
    return doc


def row_from_dict(r: dict) -> MutantRow:
    return MutantRow(**{**r, "kills": tuple(Kill(**k) for k in r["kills"]), "unexplained": tuple(map(tuple, r["unexplained"])),
                        "changed": tuple(r.get("changed", ()))})


def from_dict(doc: dict) -> KillTable:
    return KillTable(doc["environment"], doc["date"], doc["model"], doc["control"], tuple(row_from_dict(r) for r in doc["rows"]),
                     tuple(doc["naming_checks"]), doc.get("recipe", ""))


def file_stem(environment: dict, recipe: str = "") -> str:
    """The tables' file name in a folder of them: one per environment key (and recipe, for a recipe change)."""
    stem = "-".join(str(environment.get(k, "?")) for k in ("mxnet", "onednn", "isa")).replace(" ", "_")
    return stem + (f"-recipe-{recipe.replace('/', '_')}" if recipe else "")


def save(table: KillTable, folder) -> tuple[Path, Path]:
    """<folder>/<environment>.md and .json, written atomically as one."""
    stem = file_stem(table.environment, table.recipe)  # 1.9.1-2.4.4-avx512_vnni: its dots are no suffix
    md, js = atomic.write_all({Path(folder) / f"{stem}.md": markdown(table).encode(),
                               Path(folder) / f"{stem}.json": (json.dumps(to_dict(table), indent=1) + "\n").encode()})
    return md, js


def load(path) -> KillTable:
    return from_dict(json.loads(Path(path).read_text()))

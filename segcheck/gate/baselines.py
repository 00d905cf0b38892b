"""The baseline table (baselines.json): a strict loader, row lookup in the nearest recorded environment, and the
atomic recorder.

Accuracy figures are in percent (pixAcc 97.97 means 97.97 %, mIoU 90.77 as in the seed's table),
latencies in milliseconds. Tolerances are documented in the README. A row recorded in another environment (another
ISA, another MXNet or oneDNN) is still compared, at the tolerance tier for what differs.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import atomic
from ..config import isa
from ..config.networks import check_name
from ..config.recipes import CONVENTIONS, TIERS
from ..errors import SegcheckError
from ..strict import Reader
from .checks import SEED_PREFIX

SCHEMA = 1
ROW_KEYS = ("fp32_latency_ms", "s8_latency_ms", "fp32_pixacc", "fp32_miou", "s8_pixacc", "s8_miou")
TOLERANCE_KEYS = ("pixacc_points", "miou_points", "int8_drop_pixacc_points", "int8_drop_miou_points")
# Tolerances of the finer checks, optional in the file (these defaults apply where absent).
FINE_TOLERANCES = {"int8_drop_class_iou_points": 5.0, "class_min_pixels": 1000.0, "range_rtol": 1e-4,
                   "sqnr_drop_db": 3.0, "sqnr_floor_db": 8.0, "peer_agreement_pct": 99.5}
# How a recorded environment differs from this run's, nearest first: the same, another ISA key, another MXNet or
# oneDNN (whatever the ISA). A comparison across environments uses that tier's tolerances for what moves with the
# environment: the accuracy against the row, calibrated ranges and per-layer SQNR against the golden records.
# (The INT8 drop, the class drop and the SQNR floor compare within one run and keep their tolerances.)
DIFFERENCES = ("exact", "isa", "version")
CROSS_KEYS = ("pixacc_points", "miou_points", "range_rtol", "sqnr_drop_db")
CROSS_TOLERANCES = {
    "isa": {"pixacc_points": 0.5, "miou_points": 1.0, "range_rtol": 1e-3, "sqnr_drop_db": 3.0},
    "version": {"pixacc_points": 1.0, "miou_points": 2.0, "range_rtol": 0.1, "sqnr_drop_db": 6.0},
}


class BaselineError(SegcheckError):
    """baselines.json is malformed or inconsistent."""


@dataclass(frozen=True)
class Row:
    fp32_latency_ms: float
    s8_latency_ms: float
    fp32_pixacc: float
    fp32_miou: float
    s8_pixacc: float
    s8_miou: float
    xfail_reason: str | None = None  # a known failure (NNCF's metrics_xfail_reason): failing is XFAIL, not FAIL

    def accuracy(self, precision: str) -> tuple[float, float]:
        """(pixAcc, mIoU) in percent for 'fp32' or 'int8'."""
        prefix = SEED_PREFIX[precision]
        return getattr(self, f"{prefix}_pixacc"), getattr(self, f"{prefix}_miou")


@dataclass(frozen=True)
class Tolerances:
    """Absolute points: two-sided against the baseline row, one-sided for the INT8-vs-FP32 drop."""

    pixacc_points: float
    miou_points: float
    int8_drop_pixacc_points: float
    int8_drop_miou_points: float
    int8_drop_class_iou_points: float = FINE_TOLERANCES["int8_drop_class_iou_points"]  # per class, below FP32
    class_min_pixels: float = FINE_TOLERANCES["class_min_pixels"]  # classes labelled less are left out of it
    range_rtol: float = FINE_TOLERANCES["range_rtol"]  # calibrated ranges, relative to the golden table
    sqnr_drop_db: float = FINE_TOLERANCES["sqnr_drop_db"]  # a layer's SQNR below its golden value
    sqnr_floor_db: float = FINE_TOLERANCES["sqnr_floor_db"]  # any layer's SQNR, golden or not
    peer_agreement_pct: float = FINE_TOLERANCES["peer_agreement_pct"]  # a peer's FP32 argmax equal to MXNet's, % of pixels

    def with_(self, overrides: dict) -> "Tolerances":
        """These tolerances with a model's own (from its configuration) in place."""
        return replace(self, **overrides)

    def across(self, cross: dict) -> "Tolerances":
        """These tolerances for a comparison with another environment: each key of its tier (`cross`) at least as
        wide as the tier says."""
        return replace(self, **{k: max(getattr(self, k), v) for k, v in cross.items()})


@dataclass(frozen=True)
class Entry:
    """Rows recorded in one environment at one setting."""

    environment: dict
    setting: dict
    rows: dict  # model name -> Row
    provenance: dict = field(default_factory=dict)  # where they were recorded: oneDNN's ISA level, the cap, the CPU


def difference(recorded: dict, now: dict) -> str:
    """How a recorded environment key differs from this run's: exact, isa, or version (MXNet or oneDNN)."""
    if recorded == now:
        return "exact"
    if recorded.get("mxnet") != now.get("mxnet") or recorded.get("onednn") != now.get("onednn"):
        return "version"
    return "isa"


def _version(text) -> tuple:
    """'1.9.1', 'mxnet-mkl 1.6.0', '1.8.0.post0' -> (1, 9, 1): comparable release numbers."""
    numbers = [int(n) for n in re.findall(r"\d+", str(text).rpartition(" ")[2])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


def _rank(key: str) -> int:
    return isa.KEYS.index(key) if key in isa.KEYS else -1


def nearness(recorded: dict, now: dict) -> tuple:
    """A sort key, nearest first: the same environment; else another ISA before another version; then the closest
    MXNet and oneDNN releases, the closest ISA, and of two equally close the higher one."""
    version = sum(abs(a - b) * w for field, weight in (("mxnet", 1000), ("onednn", 1))
                  for a, b, w in zip(_version(recorded.get(field)), _version(now.get(field)), (weight * 10000, weight * 100, weight)))
    isa_gap = abs(_rank(recorded.get("isa", "")) - _rank(now.get("isa", "")))
    return DIFFERENCES.index(difference(recorded, now)), version, isa_gap, -_rank(recorded.get("isa", ""))


@dataclass(frozen=True)
class Reference:
    """What a check compared against: a row or golden record, the environment it was recorded in, and how that
    differs from this run's (the tolerance tier)."""

    what: str  # "row", "golden records"
    environment: dict
    difference: str  # exact | isa | version | published

    def describe(self) -> str:
        where = ", ".join(f"{k} {v}" for k, v in self.environment.items())
        if self.difference == "published":
            return f"against the published {self.what} ({where})"
        tier = "same environment" if self.difference == "exact" else f"tolerance tier: {self.difference}"
        return f"against the {self.what} recorded in {where} ({tier})"


@dataclass(frozen=True)
class Tier:
    name: str
    description: str
    metric_convention: str
    tolerances: Tolerances
    min_speedup: dict  # ISA -> {architecture or model name: minimum INT8/FP32 speed-up}
    match_environment: bool
    entries: tuple
    cross_environment: dict = field(default_factory=lambda: {k: dict(v) for k, v in CROSS_TOLERANCES.items()})

    def tolerances_for(self, reference: "Reference | None", own: dict) -> Tolerances:
        """The tolerances of a comparison: this tier's with a model's own in place, widened to the tier of the
        reference's difference when it was recorded in another environment."""
        base = self.tolerances.with_(own)
        if reference is None or reference.difference in ("exact", "published"):
            return base
        return base.across(self.cross_environment[reference.difference])


@dataclass(frozen=True)
class Lookup:
    """A row found for this run (in the nearest recorded environment), or the reason there is none."""

    row: Row | None
    reason: str = ""
    entry: Entry | None = None
    reference: Reference | None = None


@dataclass(frozen=True)
class Baselines:
    path: Path
    tiers: dict

    def tier(self, name: str) -> Tier:
        if name not in self.tiers:
            raise BaselineError(f"{self.path}: key 'tiers.{name}' is missing; add the tier or pick another")
        return self.tiers[name]

    def tier_or_new(self, name: str, convention: str) -> Tier:
        """The tier, or the one --update-baselines would create (no rows, default tolerances) where absent."""
        if name in self.tiers:
            return self.tiers[name]
        return _Reader(self.path).tier(name, new_tier(convention, "not recorded yet"), f"tiers.{name}")

    def lookup(self, tier: str, model: str, environment: dict, setting: dict) -> Lookup:
        """The row for `model` recorded at `setting`: in this environment (key) where there is one, else in the nearest
        recorded one (see nearness), to be compared at that difference's tolerance tier. A tier of published rows
        (match_environment false) holds one row per setting, whatever the environment."""
        if tier not in self.tiers:
            return Lookup(None, f"no {tier}-tier baseline rows in {self.path}; record them from a trusted run "
                                "with pytest --update-baselines")
        t = self.tier(tier)
        with_model = [e for e in t.entries if model in e.rows]
        if not with_model:
            return Lookup(None, f"no {tier}-tier baseline row for {model} in {self.path}; record one from a trusted "
                                "run with pytest --update-baselines")
        at_setting = [e for e in with_model if e.setting == setting]
        if not at_setting:
            other = with_model[0]
            return Lookup(None, f"the {tier}-tier row for {model} was recorded at setting {_fmt(other.setting)}; "
                                f"this run uses {_fmt(setting)}: run at that setting or record one with --update-baselines")
        if not t.match_environment:
            entry = at_setting[0]
            return Lookup(entry.rows[model], entry=entry, reference=Reference("row", entry.environment, "published"))
        entry = min(at_setting, key=lambda e: nearness(e.environment, environment))
        return Lookup(entry.rows[model], entry=entry,
                      reference=Reference("row", entry.environment, difference(entry.environment, environment)))


def _fmt(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items()))


class _Reader(Reader):
    """Walks the parsed JSON and reports the first problem with the file and the dotted key."""

    def __init__(self, path: Path):
        super().__init__(path, "fix it or restore the file from git", BaselineError)

    def row(self, value, key: str) -> Row:
        self.obj(value, key, ROW_KEYS, ("xfail_reason",))
        fields = {}
        for k in ROW_KEYS:
            hi = math.inf if k.endswith("_ms") else 100.0
            fields[k] = self.number(value[k], f"{key}.{k}", 0.0, hi)
        if "xfail_reason" in value and not self.string(value["xfail_reason"], f"{key}.xfail_reason").strip():
            self.fail(f"{key}.xfail_reason", "empty: say why the row is expected to fail, or remove the key")
        return Row(**fields, xfail_reason=value.get("xfail_reason"))

    def entry(self, value, key: str) -> Entry:
        self.obj(value, key, ("environment", "setting", "rows"), ("provenance",))
        rows = self.obj(value["rows"], f"{key}.rows", (), tuple(value["rows"]) if isinstance(value["rows"], dict) else ())
        parsed = {}
        for name, row in rows.items():
            try:
                check_name(name)
            except SegcheckError as err:
                self.fail(f"{key}.rows.{name}", str(err))
            parsed[name] = self.row(row, f"{key}.rows.{name}")
        return Entry(self.flat(value["environment"], f"{key}.environment"), self.flat(value["setting"], f"{key}.setting"), parsed,
                     self.flat(value.get("provenance", {}), f"{key}.provenance"))

    def tier(self, name: str, value, key: str) -> Tier:
        self.obj(value, key, ("description", "metric_convention", "tolerances", "min_speedup", "match_environment", "entries"),
                 ("cross_environment",))
        tol = self.obj(value["tolerances"], f"{key}.tolerances", TOLERANCE_KEYS, tuple(FINE_TOLERANCES))
        tolerances = Tolerances(**{k: self.number(v, f"{key}.tolerances.{k}", 0.0, 1e9 if k == "class_min_pixels" else 100.0)
                                   for k, v in tol.items()})
        speed = value["min_speedup"]
        self.obj(speed, f"{key}.min_speedup", (), isa.KEYS)
        min_speedup = {}
        for level, per_arch in speed.items():
            self.obj(per_arch, f"{key}.min_speedup.{level}", free=True)
            min_speedup[level] = {a: self.number(v, f"{key}.min_speedup.{level}.{a}", 0.0, 1000.0) for a, v in per_arch.items()}
        self.boolean(value["match_environment"], f"{key}.match_environment")
        if not isinstance(value["entries"], list):
            self.fail(f"{key}.entries", "expected a list")
        entries = tuple(self.entry(e, f"{key}.entries[{i}]") for i, e in enumerate(value["entries"]))
        keys = [(frozenset(e.environment.items()) if value["match_environment"] else None, frozenset(e.setting.items()), m)
                for e in entries for m in e.rows]
        if len(keys) != len(set(keys)):
            self.fail(f"{key}.entries", "the same model appears twice for one environment and setting")
        cross = self.obj(value.get("cross_environment", {}), f"{key}.cross_environment", (), tuple(CROSS_TOLERANCES))
        cross_environment = {difference: {**defaults, **{k: self.number(v, f"{key}.cross_environment.{difference}.{k}", 0.0, 100.0)
                                                        for k, v in self.obj(cross.get(difference, {}),
                                                                             f"{key}.cross_environment.{difference}", (),
                                                                             CROSS_KEYS).items()}}
                             for difference, defaults in CROSS_TOLERANCES.items()}
        return Tier(
            name,
            self.string(value["description"], f"{key}.description"),
            self.string(value["metric_convention"], f"{key}.metric_convention", CONVENTIONS),
            tolerances,
            min_speedup,
            value["match_environment"],
            entries,
            cross_environment,
        )


def parse(text: str, path: Path) -> Baselines:
    reader = _Reader(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise BaselineError(
            f"{path}: invalid JSON at line {err.lineno} column {err.colno} ({err.msg}); fix it or restore the file from git"
        ) from None
    reader.obj(doc, "", ("schema", "tiers"))
    if isinstance(doc["schema"], bool) or doc["schema"] != SCHEMA:
        reader.fail("schema", f"expected {SCHEMA}, got {doc['schema']!r}")
    tiers = reader.obj(doc["tiers"], "tiers", (), TIERS)
    return Baselines(path, {name: reader.tier(name, value, f"tiers.{name}") for name, value in tiers.items()})


def load(path, missing_ok: bool = False) -> Baselines:
    """Read and validate baselines.json; any problem is a BaselineError naming the file and the key.

    With `missing_ok`, an absent file is an empty table (a project that has not recorded rows yet).
    """
    path = Path(path)
    if missing_ok and not path.exists():
        return Baselines(path, {})
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"{path}: baseline file not found; pass --baselines or restore it from git") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BaselineError(f"{path}: cannot read the baseline file ({err}); restore it from git") from None
    return parse(text, path)


def dumps(doc, indent: int = 0) -> str:
    """The canonical layout of baselines.json: objects of plain values on one line, so a diff shows rows."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(doc, dict) and any(isinstance(v, (dict, list)) for v in doc.values()):
        body = ",\n".join(f"{inner}{json.dumps(k)}: {dumps(v, indent + 1).lstrip()}" for k, v in doc.items())
        text = f"{pad}{{\n{body}\n{pad}}}"
    elif isinstance(doc, list) and doc:
        text = f"{pad}[\n" + ",\n".join(dumps(v, indent + 1) for v in doc) + f"\n{pad}]"
    else:
        text = pad + json.dumps(doc)
    return text + ("\n" if indent == 0 else "")


DEFAULT_TOLERANCES = {"pixacc_points": 0.5, "miou_points": 1.0, "int8_drop_pixacc_points": 1.0, "int8_drop_miou_points": 2.0,
                      **FINE_TOLERANCES}


def new_tier(convention: str, description: str) -> dict:
    """A tier for a file or tier that does not exist yet: recorded rows, keyed by environment and setting."""
    return {"description": description, "metric_convention": convention, "tolerances": dict(DEFAULT_TOLERANCES),
            "cross_environment": {k: dict(v) for k, v in CROSS_TOLERANCES.items()},
            "min_speedup": {}, "match_environment": True, "entries": []}


def entry_for(entries: list, environment: dict, setting: dict, provenance: dict | None, holds: str) -> dict:
    """The entry of `environment` and `setting` in a parsed file's `entries` (added where absent, holding an empty
    `holds`: rows or models), with `provenance` set where given."""
    target = next((e for e in entries if e["setting"] == setting and e["environment"] == environment), None)
    if target is None:
        target = {"environment": environment, "setting": setting, holds: {}}
        entries.append(target)
    if provenance:
        target["provenance"] = provenance
    return target


def record(path, tier: str, environment: dict, groups, template: dict | None = None, provenance: dict | None = None) -> str:
    """Store rows for this environment (its key), one (setting, {name: Row}) group at a time; return the unified diff
    written. `provenance` (oneDNN's ISA level, the cap, the CPU) is kept beside the entry; a row's xfail_reason,
    written by a person, is kept when the row is recorded again.

    The file is re-read and re-validated, changed in memory, validated again, then written atomically.
    A missing file or tier is created from `template` (see new_tier); a tier of published rows
    (match_environment false) is never written.
    """
    path = Path(path)
    if path.exists():
        load(path)
        old_text = path.read_text(encoding="utf-8")
        doc = json.loads(old_text)
    else:
        old_text, doc = "", {"schema": SCHEMA, "tiers": {}}
    if tier not in doc["tiers"]:
        if template is None:
            raise BaselineError(f"{path}: key 'tiers.{tier}' is missing; add the tier or pick another")
        doc["tiers"][tier] = template
    if not doc["tiers"][tier]["match_environment"]:
        raise BaselineError(f"{path}: tier '{tier}' holds published rows (match_environment is false), which "
                            "--update-baselines never overwrites; record on another tier")
    entries = doc["tiers"][tier]["entries"]
    for setting, rows in groups:
        target = entry_for(entries, environment, setting, provenance, "rows")
        for name, row in sorted(rows.items()):
            reason = target["rows"].get(name, {}).get("xfail_reason")
            target["rows"][name] = {k: round(getattr(row, k), 4) for k in ROW_KEYS} | ({"xfail_reason": reason} if reason else {})
        target["rows"] = dict(sorted(target["rows"].items()))
    new_text = dumps(doc)
    parse(new_text, path)
    diff = "".join(
        difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True), str(path), f"{path} (updated)")
    )
    if diff:
        atomic.write_text(path, new_text)
    return diff

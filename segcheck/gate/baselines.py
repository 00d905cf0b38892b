"""The baseline table (baselines.json): a strict loader, row lookup, and the atomic recorder.

Accuracy figures are in percent (pixAcc 97.97 means 97.97 %, mIoU 90.77 as in the seed's table),
latencies in milliseconds. Tolerances are documented in the README.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from .. import atomic
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
                   "sqnr_drop_db": 3.0, "sqnr_floor_db": 8.0}


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

    def with_(self, overrides: dict) -> "Tolerances":
        """These tolerances with a model's own (from its configuration) in place."""
        return replace(self, **overrides)


@dataclass(frozen=True)
class Entry:
    """Rows recorded in one environment at one setting."""

    environment: dict
    setting: dict
    rows: dict  # model name -> Row


@dataclass(frozen=True)
class Tier:
    name: str
    description: str
    metric_convention: str
    tolerances: Tolerances
    min_speedup: dict  # ISA -> {architecture or model name: minimum INT8/FP32 speed-up}
    match_environment: bool
    entries: tuple


@dataclass(frozen=True)
class Lookup:
    """A row found for this run, or the reason there is none."""

    row: Row | None
    reason: str = ""
    entry: Entry | None = None


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
        """The row for `model` recorded at `setting` (and, where the tier asks, in `environment`)."""
        if tier not in self.tiers:
            return Lookup(None, f"no {tier}-tier baseline rows in {self.path}; record them from a trusted run "
                                "with pytest --update-baselines")
        t = self.tier(tier)
        seen = []
        for entry in t.entries:
            if model not in entry.rows:
                continue
            env_ok = not t.match_environment or entry.environment == environment
            if env_ok and entry.setting == setting:
                return Lookup(entry.rows[model], entry=entry)
            seen.append(entry)
        if not seen:
            return Lookup(None, f"no {tier}-tier baseline row for {model} in {self.path}; record one from a trusted "
                                "run with pytest --update-baselines")
        other = seen[0]
        if t.match_environment and other.environment != environment:
            return Lookup(
                None,
                f"the {tier}-tier row for {model} was recorded in another environment "
                f"({_fmt(other.environment)}); this run is {_fmt(environment)}: "
                "record one here with --update-baselines",
            )
        return Lookup(
            None,
            f"the {tier}-tier row for {model} was recorded at setting {_fmt(other.setting)}; "
            f"this run uses {_fmt(setting)}: run at that setting or record one with --update-baselines",
        )


def _fmt(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items()))


class _Reader(Reader):
    """Walks the parsed JSON and reports the first problem with the file and the dotted key."""

    def __init__(self, path: Path):
        super().__init__(path, "fix it or restore the file from git", BaselineError)

    def row(self, value, key: str) -> Row:
        self.obj(value, key, ROW_KEYS)
        fields = {}
        for k in ROW_KEYS:
            hi = math.inf if k.endswith("_ms") else 100.0
            fields[k] = self.number(value[k], f"{key}.{k}", 0.0, hi)
        return Row(**fields)

    def entry(self, value, key: str) -> Entry:
        self.obj(value, key, ("environment", "setting", "rows"))
        rows = self.obj(value["rows"], f"{key}.rows", (), tuple(value["rows"]) if isinstance(value["rows"], dict) else ())
        parsed = {}
        for name, row in rows.items():
            try:
                check_name(name)
            except SegcheckError as err:
                self.fail(f"{key}.rows.{name}", str(err))
            parsed[name] = self.row(row, f"{key}.rows.{name}")
        return Entry(self.flat(value["environment"], f"{key}.environment"), self.flat(value["setting"], f"{key}.setting"), parsed)

    def tier(self, name: str, value, key: str) -> Tier:
        self.obj(value, key, ("description", "metric_convention", "tolerances", "min_speedup", "match_environment", "entries"))
        tol = self.obj(value["tolerances"], f"{key}.tolerances", TOLERANCE_KEYS, tuple(FINE_TOLERANCES))
        tolerances = Tolerances(**{k: self.number(v, f"{key}.tolerances.{k}", 0.0, 1e9 if k == "class_min_pixels" else 100.0)
                                   for k, v in tol.items()})
        speed = value["min_speedup"]
        self.obj(speed, f"{key}.min_speedup", (), tuple(speed) if isinstance(speed, dict) else ())
        min_speedup = {}
        for isa, per_arch in speed.items():
            self.obj(per_arch, f"{key}.min_speedup.{isa}", free=True)
            min_speedup[isa] = {a: self.number(v, f"{key}.min_speedup.{isa}.{a}", 0.0, 1000.0) for a, v in per_arch.items()}
        self.boolean(value["match_environment"], f"{key}.match_environment")
        if not isinstance(value["entries"], list):
            self.fail(f"{key}.entries", "expected a list")
        entries = tuple(self.entry(e, f"{key}.entries[{i}]") for i, e in enumerate(value["entries"]))
        keys = [(frozenset(e.environment.items()) if value["match_environment"] else None, frozenset(e.setting.items()), m)
                for e in entries for m in e.rows]
        if len(keys) != len(set(keys)):
            self.fail(f"{key}.entries", "the same model appears twice for one environment and setting")
        return Tier(
            name,
            self.string(value["description"], f"{key}.description"),
            self.string(value["metric_convention"], f"{key}.metric_convention", CONVENTIONS),
            tolerances,
            min_speedup,
            value["match_environment"],
            entries,
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
            "min_speedup": {}, "match_environment": True, "entries": []}


def record(path, tier: str, environment: dict, groups, template: dict | None = None) -> str:
    """Store rows for this environment, one (setting, {name: Row}) group at a time; return the unified diff written.

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
        target = next((e for e in entries if e["setting"] == setting and e["environment"] == environment), None)
        if target is None:
            target = {"environment": environment, "setting": setting, "rows": {}}
            entries.append(target)
        for name, row in sorted(rows.items()):
            target["rows"][name] = {k: round(getattr(row, k), 4) for k in ROW_KEYS}
        target["rows"] = dict(sorted(target["rows"].items()))
    new_text = dumps(doc)
    parse(new_text, path)
    diff = "".join(
        difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True), str(path), f"{path} (updated)")
    )
    if diff:
        atomic.write_text(path, new_text)
    return diff

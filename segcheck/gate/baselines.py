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
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..config import isa, tolerances
from ..config.networks import check_name
from ..config.recipes import CONVENTIONS, TIERS, CalibRecipe
from ..config.tolerances import Tolerances, ToleranceTable
from ..errors import SegcheckError
from ..measure.environment import UNKNOWN
from ..strict import Reader
from .checks import SEED_PREFIX

SCHEMA = 2  # 2: INT8 keyed apart from FP32 (an entry's "int8"), tolerances with their provenance
ROW_KEYS = ("fp32_latency_ms", "s8_latency_ms", "fp32_pixacc", "fp32_miou", "s8_pixacc", "s8_miou")
# How a recorded environment differs from this run's, nearest first: the same, another ISA key, another MXNet or
# oneDNN (whatever the ISA). The INT8 recipe may differ besides (tier "recipe"); tolerances.ToleranceTable combines them.
DIFFERENCES = ("exact", "isa", "version")
UNRECORDED = "unrecorded"  # the INT8 key of rows migrated from schema 1, which did not record it on the real tier


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
class Entry:
    """Rows recorded in one environment at one setting, their INT8 figures under one INT8 key (the recipe's label, or a
    shipped file's digest)."""

    environment: dict
    setting: dict
    int8: str
    rows: dict  # model name -> Row
    provenance: dict = field(default_factory=dict)  # where they were recorded: oneDNN's ISA level, the cap, the CPU


def difference(recorded: dict, now: dict) -> str:
    """How a recorded environment key differs from this run's: exact, isa, or version (MXNet or oneDNN). A part this
    run could not read (UNKNOWN) is taken to be the recorded one's: an unknown never loosens a comparison."""
    now = {k: recorded.get(k) if v == UNKNOWN else v for k, v in now.items()}
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


def recipe_distance(recorded: str, now: str) -> int:
    """How many parts of two INT8 keys differ (mode, dtype, batches, split, exclusions; a file digest is one part)."""
    a, b = recorded.split("/"), now.split("/")
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


def nearest(entries: list, environment: dict, int8: str | None, match_environment: bool = True):
    """The entry to compare with, of `entries` (objects or parsed dicts holding environment and int8): for INT8 (`int8`
    given) one of this INT8 key before any other; then the nearest environment (nearness); then the nearest INT8 key."""
    def get(e, name):
        return e[name] if isinstance(e, dict) else getattr(e, name)

    def rank(e):
        other = int8 is not None and get(e, "int8") != int8
        env = nearness(get(e, "environment"), environment) if match_environment else ()
        return other, env, recipe_distance(get(e, "int8"), int8) if other else 0

    return min(entries, key=rank)


@dataclass(frozen=True)
class Reference:
    """What a check compared against: a row or golden record, the environment it was recorded in, how that differs
    from this run's (exact, isa, version, published), and for INT8 the recorded INT8 key where it is not this run's."""

    what: str  # "row", "golden records"
    environment: dict
    difference: str  # exact | isa | version | published
    recipe: str | None = None  # the recorded INT8 key, where this run's differs (a new recipe, another shipped file)

    @property
    def differs(self) -> tuple:
        """The tiers of what differs (tolerances.TIERS without exact): ("isa",), ("recipe",), ("version", "recipe")..."""
        env = (self.difference,) if self.difference in ("isa", "version") else ()
        return env + (("recipe",) if self.recipe else ())

    @property
    def compared(self) -> str:
        """How a check compared, as the results count it: exact, isa, version, recipe, isa+recipe, ..., published."""
        if self.difference == "published":
            return "published+recipe" if self.recipe else "published"
        return "+".join(self.differs) or "exact"

    def describe(self) -> str:
        where = ", ".join(f"{k} {v}" for k, v in self.environment.items())
        recipe = f"; INT8 under this run's new recipe against the recorded one, {self.recipe}" if self.recipe else ""
        if self.difference == "published":
            return f"against the published {self.what} ({where}{recipe})"
        tier = "same environment" if not self.differs else f"tolerance tier: {self.compared}"
        return f"against the {self.what} recorded in {where}{recipe} ({tier})"


@dataclass(frozen=True)
class Tier:
    name: str
    description: str
    metric_convention: str
    tolerances: ToleranceTable
    min_speedup: dict  # ISA -> {architecture or model name: minimum INT8/FP32 speed-up}
    match_environment: bool
    entries: tuple

    def least_speedup(self, isa: str, model) -> float | None:
        """The least INT8 / FP32 speed-up of `model` (a ModelConfig) on `isa`: its configuration's, else this tier's for
        the model's name, else for its architecture; None where none is recorded."""
        per_isa = self.min_speedup.get(isa, {})
        return model.min_speedup.get(isa, per_isa.get(model.name, per_isa.get(model.arch)))

    def tolerances_for(self, reference: "Reference | None", own: dict, precision: str = "int8") -> Tolerances:
        """The tolerances of a comparison of `precision` with `reference`: at the tier of what differs from it, with a
        model's own values in place."""
        return self.tolerances.resolve(reference.differs if reference else (), precision, own)


@dataclass(frozen=True)
class Lookup:
    """A row found for this run (in the nearest recorded environment and INT8 key), or the reason there is none."""

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

    def convention(self, tier: str, configured: str | None, config_file) -> str:
        """The mIoU convention of `tier`'s rows: recorded, else the configuration's, else the tier's default (present on
        the synthetic tier, GluonCV's on the real one); a configuration that disagrees with the recorded rows is an error."""
        existing = self.tiers.get(tier)
        if existing and configured and existing.metric_convention != configured:
            raise SegcheckError(f"{config_file}: metric_convention {configured!r} differs from the {tier} tier of "
                                f"{self.path} ({existing.metric_convention!r}); make them agree")
        return existing.metric_convention if existing else configured or ("present" if tier == "synthetic" else "gluoncv")

    def tier_or_new(self, name: str, convention: str) -> Tier:
        """The tier, or the one --update-baselines would create (no rows, unmeasured tolerances) where absent."""
        if name in self.tiers:
            return self.tiers[name]
        return _Reader(self.path).tier(name, new_tier(convention, "not recorded yet"), f"tiers.{name}")

    def lookup(self, tier: str, model: str, environment: dict, setting: dict, int8: str | None = None) -> Lookup:
        """The row for `model` recorded at `setting`: for FP32 (`int8` None) in the nearest recorded environment, whatever
        its INT8 key; for INT8 under the INT8 key `int8` where one was recorded, else under the nearest other one
        (compared at the recipe tier). A tier of published rows (match_environment false) holds one row per setting,
        whatever the environment."""
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
        entry = nearest(at_setting, environment, int8, t.match_environment)
        recipe = entry.int8 if int8 is not None and entry.int8 != int8 else None
        how = difference(entry.environment, environment) if t.match_environment else "published"
        return Lookup(entry.rows[model], entry=entry, reference=Reference("row", entry.environment, how, recipe))


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
        self.obj(value, key, ("environment", "setting", "int8", "rows"), ("provenance",))
        rows = self.obj(value["rows"], f"{key}.rows", (), tuple(value["rows"]) if isinstance(value["rows"], dict) else ())
        parsed = {}
        for name, row in rows.items():
            try:
                check_name(name)
            except SegcheckError as err:
                self.fail(f"{key}.rows.{name}", str(err))
            parsed[name] = self.row(row, f"{key}.rows.{name}")
        int8 = self.string(value["int8"], f"{key}.int8")
        if not int8.strip():
            self.fail(f"{key}.int8", "empty: the INT8 key is the recipe's label or a shipped file's digest")
        return Entry(self.flat(value["environment"], f"{key}.environment"), self.flat(value["setting"], f"{key}.setting"),
                     int8, parsed, self.flat(value.get("provenance", {}), f"{key}.provenance"))

    def tier(self, name: str, value, key: str) -> Tier:
        self.obj(value, key, ("description", "metric_convention", "tolerances", "min_speedup", "match_environment", "entries"))
        table = tolerances.read(self, value["tolerances"], f"{key}.tolerances")
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
        keys = [(frozenset(e.environment.items()) if value["match_environment"] else None, frozenset(e.setting.items()), e.int8, m)
                for e in entries for m in e.rows]
        if len(keys) != len(set(keys)):
            self.fail(f"{key}.entries", "the same model appears twice for one environment, setting and INT8 key")
        return Tier(
            name,
            self.string(value["description"], f"{key}.description"),
            self.string(value["metric_convention"], f"{key}.metric_convention", CONVENTIONS),
            table,
            min_speedup,
            value["match_environment"],
            entries,
        )


def read_beside(path: Path, what: str, remedy: str) -> tuple:
    """(strict reader, parsed JSON) of a machine-written file beside the baseline file (golden records, per-layer
    noise); a file that cannot be read or parsed is one error naming it, `what` it holds and the `remedy`."""
    reader = Reader(path, remedy, BaselineError)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BaselineError(f"{path}: cannot read the {what} ({err}); {remedy}") from None
    reader.obj(doc, "", ("schema", "tiers"))
    return reader, doc


def check_schema(reader: Reader, doc: dict, schema: int, migrate: str) -> None:
    """The document's schema is `schema`; an older one says how to migrate it (`migrate`: the command)."""
    found = doc["schema"]
    if isinstance(found, bool) or not isinstance(found, int) or found > schema or found < 1:
        reader.fail("schema", f"expected {schema}, got {found!r}")
    if found < schema:
        reader.fail("schema", f"{found} is an older schema than this segcheck reads ({schema}): migrate it with `{migrate}` "
                              "(the diff is shown)")


def parse(text: str, path: Path) -> Baselines:
    reader = _Reader(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise BaselineError(
            f"{path}: invalid JSON at line {err.lineno} column {err.colno} ({err.msg}); fix it or restore the file from git"
        ) from None
    reader.obj(doc, "", ("schema", "tiers"))
    check_schema(reader, doc, SCHEMA, f"segcheck migrate {path}")
    tiers = reader.obj(doc["tiers"], "tiers", (), TIERS)
    return Baselines(path, {name: reader.tier(name, value, f"tiers.{name}") for name, value in tiers.items()})


def gate_inputs(project, path) -> list:
    """The files a gate run reads besides its data (the configuration, the baseline file `path`, the golden and per-layer
    noise files beside it, configured weights files): what none of its outputs may be written over."""
    from . import golden, noise

    return [project.path, Path(path), golden.path_for(path), noise.path_for(path),
            *(e.weights for e in project.models if isinstance(e.weights, Path))]


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


def _plain(value) -> bool:
    return not isinstance(value, (dict, list)) or (isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value))


def dumps(doc, indent: int = 0) -> str:
    """The canonical layout of baselines.json and its golden records: objects and lists of plain values (or of plain
    lists) on one line, so a diff shows rows."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(doc, dict) and not all(_plain(v) and not isinstance(v, list) for v in doc.values()):
        body = ",\n".join(f"{inner}{json.dumps(k)}: {dumps(v, indent + 1).lstrip()}" for k, v in doc.items())
        text = f"{pad}{{\n{body}\n{pad}}}"
    elif isinstance(doc, list) and doc and not all(_plain(v) for v in doc):
        text = f"{pad}[\n" + ",\n".join(dumps(v, indent + 1) for v in doc) + f"\n{pad}]"
    else:
        text = pad + json.dumps(doc)
    return text + ("\n" if indent == 0 else "")


def new_tier(convention: str, description: str) -> dict:
    """A tier for a file or tier that does not exist yet: recorded rows, keyed by environment, setting and INT8 key, and
    unmeasured tolerances (segcheck noise measures them)."""
    return {"description": description, "metric_convention": convention, "tolerances": tolerances.unmeasured().to_dict(),
            "min_speedup": {}, "match_environment": True, "entries": []}


def entry_for(entries: list, environment: dict, setting: dict, int8: str, provenance: dict | None, holds: str) -> dict:
    """The entry of `environment`, `setting` and INT8 key `int8` in a parsed file's `entries` (added where absent, holding
    an empty `holds`: rows or models), with `provenance` set where given."""
    target = next((e for e in entries if e["setting"] == setting and e["environment"] == environment and e["int8"] == int8), None)
    if target is None:
        target = {"environment": environment, "setting": setting, "int8": int8, holds: {}}
        entries.append(target)
    if provenance:
        target["provenance"] = provenance
    return target


def write(path, old_text: str, doc: dict) -> str:
    """Write `doc` (validated first) over `path`, whose text was `old_text`, atomically; the unified diff ('' if none)."""
    new_text = dumps(doc)
    parse(new_text, path)
    diff = "".join(
        difflib.unified_diff(old_text.splitlines(True), new_text.splitlines(True), str(path), f"{path} (updated)")
    )
    if diff:
        atomic.write_text(path, new_text)
    return diff


def record(path, tier: str, environment: dict, groups, template: dict | None = None, provenance: dict | None = None) -> str:
    """Store rows for this environment (its key), one (setting, INT8 key, {name: Row}) group at a time; return the
    unified diff written. `provenance` (oneDNN's ISA level, the cap, the CPU) is kept beside the entry; a row's
    xfail_reason, written by a person, is kept when the row is recorded again.

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
    for setting, int8, rows in groups:
        target = entry_for(entries, environment, setting, int8, provenance, "rows")
        for name, row in sorted(rows.items()):
            reason = target["rows"].get(name, {}).get("xfail_reason")
            target["rows"][name] = {k: round(getattr(row, k), 4) for k in ROW_KEYS} | ({"xfail_reason": reason} if reason else {})
        target["rows"] = dict(sorted(target["rows"].items()))
    return write(path, old_text, doc)


def migrated_entry(entry: dict) -> dict:
    """A schema-1 entry (baselines or golden records) as schema 2: the calibration label its setting held becomes its
    INT8 key; where it held none (the real tier), the key is UNRECORDED (compared at the recipe tier until re-recorded)."""
    setting = dict(entry["setting"])
    int8 = setting.pop("calibration", UNRECORDED)
    return {"environment": entry["environment"], "setting": setting, "int8": int8,
            **{k: v for k, v in entry.items() if k not in ("environment", "setting")}}


def read_older(path, schema: int) -> tuple:
    """(text, parsed document) of a file to migrate to `schema`; None for the document when it already is; one error
    naming the file where it cannot be read or is of no schema segcheck migrates."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text)
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such file to migrate; check the path") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BaselineError(f"{path}: cannot read it to migrate ({err}); restore it from git") from None
    if not isinstance(doc, dict):
        raise BaselineError(f"{path}: expected a JSON object, not {type(doc).__name__}; restore it from git")
    if doc.get("schema") == schema:
        return text, None
    if doc.get("schema") != 1:
        raise BaselineError(f"{path}: key 'schema': {doc.get('schema')!r} is not a schema segcheck can migrate")
    return text, doc


# What schema 1 applied where a file did not say: its defaults, and the tiers it widened to across environments.
SCHEMA1_DEFAULTS = {"pixacc_points": 0.5, "miou_points": 1.0, "int8_drop_pixacc_points": 1.0, "int8_drop_miou_points": 2.0,
                    "int8_drop_class_iou_points": 5.0, "range_rtol": 1e-4, "sqnr_drop_db": 3.0, "sqnr_floor_db": 8.0,
                    **tolerances.DEFINITIONS}
SCHEMA1_CROSS = {"isa": {"pixacc_points": 0.5, "miou_points": 1.0, "range_rtol": 1e-3, "sqnr_drop_db": 3.0},
                 "version": {"pixacc_points": 1.0, "miou_points": 2.0, "range_rtol": 0.1, "sqnr_drop_db": 6.0}}
# The recipe of the seed's published INT8 rows: naive calibration on 5 batches of 32 val images (its test.py).
SEED_RECIPE = CalibRecipe(split="val").label()


def migration(path) -> tuple | None:
    """(old text, schema-2 document) of a schema-1 baseline file, nothing written; None where it is schema 2 already.
    The tolerances it held, and the ones schema 1 applied where it held none, become unmeasured values (they were set by
    hand); the seed's published rows get the seed's recipe as their INT8 key."""
    old_text, doc = read_older(path, SCHEMA)
    if doc is None:
        return None
    try:
        return old_text, _migrated(doc)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise BaselineError(f"{path}: not a schema-1 baseline file segcheck can migrate ({type(err).__name__}: {err}); "
                            "restore it from git") from None


def _migrated(doc: dict) -> dict:
    for name, tier in list(doc.get("tiers", {}).items()):
        old = {**SCHEMA1_DEFAULTS, **tier.pop("tolerances", {})}
        cross = {t: {**defaults, **tier.get("cross_environment", {}).get(t, {})} for t, defaults in SCHEMA1_CROSS.items()}
        tier.pop("cross_environment", None)
        values = {"within_run": {k: old[k] for k in tolerances.UNMEASURED["within_run"]}}
        for t in tolerances.TIERS:
            wider = cross.get(t, {})  # schema 1 widened a tier to at least these across environments
            values[t] = {**tolerances.UNMEASURED[t],
                         **{f"{p}_{k}": max(old[k], wider.get(k, 0.0)) for p in ("fp32", "int8") for k in ("pixacc_points", "miou_points")},
                         **{k: max(old[k], wider.get(k, 0.0)) for k in ("range_rtol", "sqnr_drop_db")}}
        table = tolerances.unmeasured("set by hand before segcheck measured its tolerances (schema 1)", values)
        published = not tier.get("match_environment", True)
        migrated = {**tier, "tolerances": {**table.to_dict(), "definitions": {k: old[k] for k in tolerances.DEFINITIONS}},
                    "entries": [migrated_entry(e) | ({"int8": SEED_RECIPE} if published else {}) for e in tier.get("entries", [])]}
        order = ["description", "metric_convention", "tolerances"]  # where schema 1 had its tolerances
        doc["tiers"][name] = {k: migrated[k] for k in order + [k for k in migrated if k not in order]}
    doc["schema"] = SCHEMA
    return doc



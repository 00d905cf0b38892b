"""Golden records of a trusted run, beside each baseline row: the INT8 calibration table, the per-layer SQNR
curve, the digests of the argmax predictions, and per-class IoU.

They live in <baselines>.golden.json (machine-written, too long to read as a table), keyed like the
baseline rows: tier, environment and setting, then model. --update-baselines writes them with the rows.
In a matching environment and setting, two runs agree bit for bit, so any difference is a signal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..strict import Reader
from .baselines import BaselineError, Reference, difference, entry_for, nearness

SCHEMA = 1
KINDS = ("ranges", "sqnr_db", "digest", "class_iou")


def path_for(baselines_path) -> Path:
    p = Path(baselines_path)
    return p.with_name(f"{p.stem}.golden.json")


@dataclass(frozen=True)
class Golden:
    """One model's golden records (any of them may be absent)."""

    ranges: dict = field(default_factory=dict)  # calibration.table()
    sqnr_db: dict = field(default_factory=dict)  # stable layer name -> SQNR
    digest: dict = field(default_factory=dict)  # precision -> {"sha256", "images", "pixels"}
    class_iou: dict = field(default_factory=dict)  # precision -> per-class IoU in percent (None: absent)
    reference: Reference | None = field(default=None, compare=False)  # where they were recorded, against this run

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in KINDS if getattr(self, k)}


def _read(path: Path) -> dict:
    if not path.exists():
        return {"schema": SCHEMA, "tiers": {}}
    reader = Reader(path, "restore it from git, or record it again with --update-baselines", BaselineError)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BaselineError(f"{path}: cannot read the golden records ({err}); restore it from git or record it again "
                            "with --update-baselines") from None
    reader.obj(doc, "", ("schema", "tiers"))
    if doc["schema"] != SCHEMA:
        reader.fail("schema", f"expected {SCHEMA}, got {doc['schema']!r}")
    for tier, value in reader.obj(doc["tiers"], "tiers", free=True).items():
        if not isinstance(value, list):
            reader.fail(f"tiers.{tier}", "expected a list of entries")
        for i, entry in enumerate(value):
            key = f"tiers.{tier}[{i}]"
            reader.obj(entry, key, ("environment", "setting", "models"), ("provenance",))
            reader.flat(entry["environment"], f"{key}.environment")
            reader.flat(entry["setting"], f"{key}.setting")
            for name, golden in reader.obj(entry["models"], f"{key}.models", free=True).items():
                reader.obj(golden, f"{key}.models.{name}", (), KINDS)
    return doc


def lookup(baselines_path, tier: str, model: str, environment: dict, setting: dict) -> Golden | None:
    """The golden records of `model` at this setting, from this environment (key) where recorded, else from the
    nearest recorded one (baselines.nearness); None when none were recorded at this setting."""
    doc = _read(path_for(baselines_path))
    found = [e for e in doc["tiers"].get(tier, []) if e["setting"] == setting and model in e["models"]]
    if not found:
        return None
    entry = min(found, key=lambda e: nearness(e["environment"], environment))
    reference = Reference("golden records", entry["environment"], difference(entry["environment"], environment))
    return Golden(**entry["models"][model], reference=reference)


def record(baselines_path, tier: str, environment: dict, groups, provenance: dict | None = None) -> Path | None:
    """Store golden records for this environment (its key), one (setting, {name: Golden}) group at a time, with
    `provenance` beside them; written atomically."""
    path = path_for(baselines_path)
    doc = _read(path)
    entries = doc["tiers"].setdefault(tier, [])
    for setting, models in groups:
        target = entry_for(entries, environment, setting, provenance, "models")
        for name, golden in sorted(models.items()):
            target["models"][name] = golden.as_dict()
    if not any(e["models"] for entries in doc["tiers"].values() for e in entries):
        return None
    return atomic.write_json(path, doc)

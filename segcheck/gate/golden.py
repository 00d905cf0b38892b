"""Golden records of a trusted run, beside each baseline row: the INT8 calibration table, the per-layer SQNR
curve, the digests of the argmax predictions, and per-class IoU.

They live in <baselines>.golden.json (machine-written, too long to read as a table), keyed like the
baseline rows: tier, environment and setting, then model. --update-baselines writes them with the rows.
In a matching environment and setting, two runs agree bit for bit, so any difference is a signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from .baselines import (BaselineError, Reference, check_schema, difference, dumps, entry_for, migrated_entry, nearest,
                        read_beside, read_older)

SCHEMA = 2  # as baselines.SCHEMA: each entry keyed by its INT8 key too
KINDS = ("ranges", "sqnr_db", "sqnr_per_image", "signal_per_image", "digest", "class_iou", "per_image", "agreement", "output_sqnr")


def path_for(baselines_path) -> Path:
    p = Path(baselines_path)
    return p.with_name(f"{p.stem}.golden.json")


@dataclass(frozen=True)
class Golden:
    """One model's golden records (any of them may be absent)."""

    ranges: dict = field(default_factory=dict)  # calibration.table()
    sqnr_db: dict = field(default_factory=dict)  # stable layer name -> SQNR
    sqnr_per_image: dict = field(default_factory=dict)  # stable layer name -> SQNR on each of the layer images, dB
    signal_per_image: dict = field(default_factory=dict)  # stable layer name -> the FP32 output's energy on each of them
    digest: dict = field(default_factory=dict)  # precision -> {"sha256", "images", "pixels"}
    class_iou: dict = field(default_factory=dict)  # precision -> per-class IoU in percent (None: absent)
    per_image: dict = field(default_factory=dict)  # precision -> each image's confusion matrix, sparse, in order
    agreement: list = field(default_factory=list)  # per image: INT8's pixels equal to FP32's, percent
    output_sqnr: list = field(default_factory=list)  # per image: INT8's output SQNR against FP32, dB
    reference: Reference | None = field(default=None, compare=False)  # where they were recorded, against this run

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in KINDS if getattr(self, k)}


def _read(path: Path) -> dict:
    if not path.exists():
        return {"schema": SCHEMA, "tiers": {}}
    reader, doc = read_beside(path, "golden records", "restore it from git, or record it again with --update-baselines")
    check_schema(reader, doc, SCHEMA, f"segcheck migrate {baselines_of(path)}")
    for tier, value in reader.obj(doc["tiers"], "tiers", free=True).items():
        if not isinstance(value, list):
            reader.fail(f"tiers.{tier}", "expected a list of entries")
        for i, entry in enumerate(value):
            key = f"tiers.{tier}[{i}]"
            reader.obj(entry, key, ("environment", "setting", "int8", "models"), ("provenance",))
            reader.flat(entry["environment"], f"{key}.environment")
            reader.flat(entry["setting"], f"{key}.setting")
            reader.string(entry["int8"], f"{key}.int8")
            for name, golden in reader.obj(entry["models"], f"{key}.models", free=True).items():
                reader.obj(golden, f"{key}.models.{name}", (), KINDS)
    return doc


def baselines_of(golden_path: Path) -> Path:
    """The baseline file a golden file stands beside."""
    return golden_path.with_name(golden_path.name.replace(".golden.json", ".json"))


def lookup(baselines_path, tier: str, model: str, environment: dict, setting: dict, int8: str | None = None) -> Golden | None:
    """The golden records of `model` at this setting, from the nearest recorded environment (baselines.nearest): for the
    FP32 parts (`int8` None) under any INT8 key, for the INT8 parts under this INT8 key where recorded, else the nearest
    other (its reference names it: the recipe tier). None when none were recorded at this setting."""
    doc = _read(path_for(baselines_path))
    found = [e for e in doc["tiers"].get(tier, []) if e["setting"] == setting and model in e["models"]]
    if not found:
        return None
    entry = nearest(found, environment, int8)
    recipe = entry["int8"] if int8 is not None and entry["int8"] != int8 else None
    reference = Reference("golden records", entry["environment"], difference(entry["environment"], environment), recipe)
    return Golden(**entry["models"][model], reference=reference)


def record(baselines_path, tier: str, environment: dict, groups, provenance: dict | None = None) -> Path | None:
    """Store golden records for this environment (its key), one (setting, INT8 key, {name: Golden}) group at a time,
    with `provenance` beside them; written atomically."""
    path = path_for(baselines_path)
    doc = _read(path)
    entries = doc["tiers"].setdefault(tier, [])
    for setting, int8, models in groups:
        target = entry_for(entries, environment, setting, int8, provenance, "models")
        for name, golden in sorted(models.items()):
            target["models"][name] = golden.as_dict()
    if not any(e["models"] for entries in doc["tiers"].values() for e in entries):
        return None
    return atomic.write_text(path, dumps(doc))


def migration(baselines_path) -> tuple | None:
    """(path, schema-2 text) of the schema-1 golden file beside `baselines_path` (baselines.migrated_entry), nothing
    written; None when there is none or it is schema 2 already."""
    path = path_for(baselines_path)
    if not path.exists():
        return None
    _, doc = read_older(path, SCHEMA)
    if doc is None:
        return None
    try:
        tiers = {t: [migrated_entry(e) for e in entries] for t, entries in doc["tiers"].items()}
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise BaselineError(f"{path}: not a schema-1 golden file segcheck can migrate ({type(err).__name__}: {err}); "
                            "restore it from git") from None
    return path, dumps({"schema": SCHEMA, "tiers": tiers})

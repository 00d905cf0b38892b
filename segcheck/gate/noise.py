"""Per-layer noise bands, beside the baseline file (<baselines>.noise.json, machine-written by `segcheck noise --write`).

A layer's SQNR moves by its own amount under benign variation: a layer whose range rests on a few outliers moves by
dB when the calibration images change, most layers by tenths. So each layer of each model carries the spread its SQNR
showed per tier of variation (exact, isa, version, recipe), and its noise band is the tier's factor times that spread
(in quadrature where several tiers differ), as the tier's scalar tolerances are (config.tolerances).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..config.tolerances import TIERS, ToleranceTable, combine, derived
from .baselines import read_beside

SCHEMA = 1
KEY = "sqnr_drop_db"  # the tolerance a layer's own band stands in for


def path_for(baselines_path) -> Path:
    p = Path(baselines_path)
    return p.with_name(f"{p.stem}.noise.json")


@dataclass(frozen=True)
class LayerNoise:
    """model -> tier -> layer -> the spread of the layer's SQNR (dB) under that tier's variation."""

    spreads: dict = field(default_factory=dict)

    def layer_bands(self, model: str, differs: tuple, table: ToleranceTable) -> dict:
        """layer -> its noise band for a comparison whose reference differs in `differs`: the factor of the tiers'
        sqnr_drop_db times the root sum of squares of its spreads, at least the resolution; only layers measured in
        every tier that differs (the others take the tier's scalar band)."""
        tiers = differs or ("exact",)
        measured = [table.tiers[t][KEY] for t in tiers]
        per_tier = [self.spreads.get(model, {}).get(t) for t in tiers]
        if not all(t.measured for t in measured) or not all(per_tier):
            return {}
        layers = set.intersection(*(set(p) for p in per_tier))
        return {n: combine(KEY, [derived(KEY, p[n], t.factor) for p, t in zip(per_tier, measured)]) for n in layers}


def _read(path: Path, remedy: str) -> tuple:
    """(strict reader, document) of an existing per-layer noise file, its schema and tiers checked."""
    reader, doc = read_beside(path, "per-layer noise", remedy)
    if doc["schema"] != SCHEMA:
        reader.fail("schema", f"expected {SCHEMA}, got {doc['schema']!r}")
    reader.obj(doc["tiers"], "tiers", free=True)
    return reader, doc


def load(baselines_path, tier: str) -> LayerNoise:
    """The per-layer spreads of `tier`; none where the file or the tier is absent."""
    path = path_for(baselines_path)
    if not path.exists():
        return LayerNoise()
    reader, doc = _read(path, "restore it from git, or measure again with segcheck noise --write")
    models = reader.obj(doc["tiers"].get(tier, {}), f"tiers.{tier}", free=True)
    spreads = {}
    for model, tiers in models.items():
        for t, layers in reader.obj(tiers, f"tiers.{tier}.{model}", (), TIERS).items():
            for layer, value in reader.obj(layers, f"tiers.{tier}.{model}.{t}", free=True).items():
                reader.number(value, f"tiers.{tier}.{model}.{t}.{layer}", 0.0, 1e3)
        spreads[model] = tiers
    return LayerNoise(spreads)


def recorded(baselines_path, tier: str, spreads: dict) -> dict:
    """The per-layer noise file's document with `spreads` (model -> variation tier -> layer -> dB) in `tier`'s: the
    variation tiers measured now replace a model's, the others (and other models and tiers) are kept, as the tolerances
    of a variation tier no run measured are. Read (a damaged file is one error naming it) before anything is written."""
    path = path_for(baselines_path)
    fresh = {"schema": SCHEMA, "tiers": {}}
    doc = _read(path, "restore it from git, or delete it to write it anew")[1] if path.exists() else fresh
    models = doc["tiers"].setdefault(tier, {})
    for model, measured in spreads.items():  # a variation tier whose runs held no layer keeps what it had
        models[model] = {**models.get(model, {}), **{t: layers for t, layers in measured.items() if layers}}
    return doc


def save(baselines_path, doc: dict) -> Path:
    """Write the per-layer noise file's document (recorded) beside the baseline file, atomically."""
    return atomic.write_json(path_for(baselines_path), doc)

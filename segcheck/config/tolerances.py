"""Tolerances as measurements: each is a stated factor times the spread its figure showed under benign variation (the
noise table, `segcheck noise`), or says why it is unmeasured; how tiers combine when two things differ at once; and
the thresholds of harm a change is judged against.

A comparison with a reference differs from it in what its tier names: nothing (exact: reruns and thread counts back
it), the ISA (isa: oneDNN's ISA caps), MXNet or oneDNN (version: other releases), the INT8 recipe (recipe:
recalibrations on other images of the same distribution). Where several differ, their spreads add in quadrature (the
variations are independent): tolerance = factor x sqrt(sum of their spreads squared), never below the resolution the
figures are recorded at. Tolerances of figures within one run (the INT8 drop, a class's drop, the SQNR floor) do not
depend on a reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

TIERS = ("exact", "isa", "version", "recipe")
# Figures compared with a reference, per tier, and the resolution each is recorded at (a tolerance is never finer).
COMPARED = {
    "fp32_pixacc_points": 1e-4, "fp32_miou_points": 1e-4,  # accuracy, percentage points (rows keep 4 decimals)
    "int8_pixacc_points": 1e-4, "int8_miou_points": 1e-4,
    "agreement_points": 1e-4,  # INT8's pixel agreement with FP32, points
    "output_sqnr_db": 1e-3,  # INT8's output SQNR against FP32, dB
    "sqnr_drop_db": 1e-3,  # a layer's SQNR against FP32, dB
    "range_rtol": 1e-6,  # a calibrated range, relative to its larger bound
}
# Figures within one run: INT8 against FP32 on the same images.
WITHIN_RUN = {"int8_drop_pixacc_points": 1e-4, "int8_drop_miou_points": 1e-4, "int8_drop_class_iou_points": 1e-4,
              "sqnr_floor_db": 1e-3}
# Not measurements but definitions of what is judged.
DEFINITIONS = {"class_min_pixels": 1000.0, "peer_agreement_pct": 99.5}
# What counts as harm: a change that worsens a figure by this much (the harm oracle's frozen thresholds; pixAcc and the
# output SQNR as mIoU and a layer), judged at this confidence.
HARM = {"miou_points": 0.5, "pixacc_points": 0.5, "agreement_points": 0.5, "output_sqnr_db": 6.0, "layer_sqnr_db": 6.0,
        "confidence": 0.95}
# Where a tier was never measured (a new tier, the real tier): the values segcheck used before they were measured.
UNMEASURED = {
    "exact": {"fp32_pixacc_points": 0.5, "fp32_miou_points": 1.0, "int8_pixacc_points": 0.5, "int8_miou_points": 1.0,
              "agreement_points": 0.5, "output_sqnr_db": 3.0, "sqnr_drop_db": 3.0, "range_rtol": 1e-4},
    "isa": {"fp32_pixacc_points": 0.5, "fp32_miou_points": 1.0, "int8_pixacc_points": 0.5, "int8_miou_points": 1.0,
            "agreement_points": 0.5, "output_sqnr_db": 3.0, "sqnr_drop_db": 3.0, "range_rtol": 1e-3},
    "version": {"fp32_pixacc_points": 1.0, "fp32_miou_points": 2.0, "int8_pixacc_points": 1.0, "int8_miou_points": 2.0,
                "agreement_points": 1.0, "output_sqnr_db": 6.0, "sqnr_drop_db": 6.0, "range_rtol": 0.1},
    "recipe": {"fp32_pixacc_points": 0.5, "fp32_miou_points": 1.0, "int8_pixacc_points": 1.0, "int8_miou_points": 2.0,
               "agreement_points": 1.0, "output_sqnr_db": 6.0, "sqnr_drop_db": 6.0, "range_rtol": 0.5},
    "within_run": {"int8_drop_pixacc_points": 1.0, "int8_drop_miou_points": 2.0, "int8_drop_class_iou_points": 5.0,
                   "sqnr_floor_db": 8.0},
}
NOT_MEASURED = "not measured: the values segcheck used before measuring; measure them with segcheck noise"


@dataclass(frozen=True)
class Tolerance:
    """One tolerance and where it comes from: factor x spread (at least the resolution), or a reason it is unmeasured.
    The SQNR floor is the lowest layer SQNR a benign variation showed (`lowest`) less factor x the layers' spread."""

    value: float
    spread: float | None = None
    factor: float | None = None
    unmeasured: str = ""
    lowest: float | None = None

    @property
    def measured(self) -> bool:
        return self.spread is not None

    def to_dict(self) -> dict:
        doc = {"value": self.value}
        if self.measured:
            doc.update(spread=self.spread, factor=self.factor)
            if self.lowest is not None:
                doc["lowest"] = self.lowest
        else:
            doc["unmeasured"] = self.unmeasured
        return doc

    def describe(self) -> str:
        if not self.measured:
            return f"{self.value:g} ({self.unmeasured})"
        if self.lowest is not None:
            return f"{self.value:g} (lowest {self.lowest:g} - {self.factor:g} x spread {self.spread:g})"
        return f"{self.value:g} ({self.factor:g} x spread {self.spread:g})"


def derived(key: str, spread: float, factor: float, lowest: float | None = None) -> Tolerance:
    """The tolerance a measured spread gives: factor x spread, at least the key's resolution (for the SQNR floor: the
    lowest benign SQNR less factor x spread)."""
    if lowest is not None:
        return Tolerance(round(lowest - factor * spread, 3), spread, factor, lowest=lowest)
    resolution = {**COMPARED, **WITHIN_RUN}[key]
    value = max(resolution, factor * spread)
    return Tolerance(float(f"{value:.4g}"), spread, factor)


@dataclass(frozen=True)
class Tolerances:
    """The tolerances of one comparison, resolved: for the precision judged, at the tier of what differs from the
    reference, with a model's own values in place. `tier` names that tier ("exact", "isa+recipe", ...)."""

    pixacc_points: float  # two-sided, against the reference, for the precision judged
    miou_points: float
    int8_drop_pixacc_points: float  # one-sided, INT8 below FP32 in the same run
    int8_drop_miou_points: float
    int8_drop_class_iou_points: float = UNMEASURED["within_run"]["int8_drop_class_iou_points"]
    class_min_pixels: float = DEFINITIONS["class_min_pixels"]
    range_rtol: float = UNMEASURED["exact"]["range_rtol"]
    sqnr_drop_db: float = UNMEASURED["exact"]["sqnr_drop_db"]
    sqnr_floor_db: float = UNMEASURED["within_run"]["sqnr_floor_db"]
    peer_agreement_pct: float = DEFINITIONS["peer_agreement_pct"]
    agreement_points: float = UNMEASURED["exact"]["agreement_points"]
    output_sqnr_db: float = UNMEASURED["exact"]["output_sqnr_db"]
    harm_miou_points: float = HARM["miou_points"]
    harm_pixacc_points: float = HARM["pixacc_points"]
    harm_agreement_points: float = HARM["agreement_points"]
    harm_output_sqnr_db: float = HARM["output_sqnr_db"]
    harm_layer_sqnr_db: float = HARM["layer_sqnr_db"]
    confidence: float = HARM["confidence"]
    tier: str = "exact"

    def with_(self, overrides: dict) -> "Tolerances":
        """These tolerances with a model's own (from its configuration) in place."""
        return replace(self, **overrides)


def combine(key: str, parts: list) -> float:
    """The tolerance of `key` where several tiers differ at once (`parts`: theirs): their spreads in quadrature times
    the largest factor, at least the resolution, where all were measured; else the widest of their values."""
    if len(parts) == 1:
        return parts[0].value
    if all(t.measured for t in parts):
        return max(COMPARED[key], max(t.factor for t in parts) * math.sqrt(sum(t.spread ** 2 for t in parts)))
    return max(t.value for t in parts)


# A model's configuration may set these (each applies to both precisions where the tier has one per precision).
OWN_KEYS = ("pixacc_points", "miou_points", *WITHIN_RUN, *(k for k in COMPARED if not k.startswith(("fp32_", "int8_"))),
            *DEFINITIONS, *(f"harm_{k}" for k in HARM if k != "confidence"))


@dataclass(frozen=True)
class ToleranceTable:
    """A baseline tier's tolerances: per tier of difference (TIERS) and within a run, each with its provenance; the
    definitions; the thresholds of harm."""

    tiers: dict  # tier -> {key of COMPARED: Tolerance}
    within_run: dict  # key of WITHIN_RUN -> Tolerance
    definitions: dict = field(default_factory=lambda: dict(DEFINITIONS))
    harm: dict = field(default_factory=lambda: dict(HARM))

    def combined(self, key: str, differs: tuple) -> float:
        """The tolerance of `key` where `differs` (tiers other than exact) differ from the reference (combine)."""
        return combine(key, [self.tiers[t][key] for t in (differs or ("exact",))])

    def resolve(self, differs: tuple = (), precision: str = "int8", own: dict | None = None) -> Tolerances:
        """The tolerances of a comparison of `precision` whose reference differs in `differs` (("isa", "recipe"), ...)."""
        own = dict(own or {})
        values = {key: self.combined(key, differs) for key in COMPARED}
        figures = {"pixacc_points": values[f"{precision}_pixacc_points"], "miou_points": values[f"{precision}_miou_points"]}
        rest = {k: v for k, v in values.items() if not k.startswith(("fp32_", "int8_"))}
        within = {k: t.value for k, t in self.within_run.items()}
        harm = {(k if k == "confidence" else f"harm_{k}"): v for k, v in self.harm.items()}
        return Tolerances(**figures, **rest, **within, **self.definitions, **harm, tier="+".join(differs) or "exact").with_(own)

    def to_dict(self) -> dict:
        return {**{t: {k: v.to_dict() for k, v in self.tiers[t].items()} for t in TIERS},
                "within_run": {k: v.to_dict() for k, v in self.within_run.items()},
                "definitions": dict(self.definitions), "harm": dict(self.harm)}


def unmeasured(reason: str = NOT_MEASURED, values: dict | None = None) -> ToleranceTable:
    """A table of unmeasured tolerances (UNMEASURED, or `values` of the same shape), each saying `reason`."""
    values = values or UNMEASURED
    return ToleranceTable({t: {k: Tolerance(v, unmeasured=reason) for k, v in values[t].items()} for t in TIERS},
                          {k: Tolerance(v, unmeasured=reason) for k, v in values["within_run"].items()})


def read(reader, value, key: str) -> ToleranceTable:
    """A tier's `tolerances` from parsed JSON (strict.Reader `reader`), each checked: a measured value must be what its
    spread and factor give."""
    reader.obj(value, key, (*TIERS, "within_run", "definitions", "harm"))

    def one(doc, where: str, name: str) -> Tolerance:
        reader.obj(doc, where, ("value",), ("spread", "factor", "unmeasured", "lowest"))
        number = reader.number(doc["value"], f"{where}.value", -1e3 if name == "sqnr_floor_db" else 0.0, 1e3)
        if "unmeasured" in doc:
            if "spread" in doc or "factor" in doc:
                reader.fail(where, "says both unmeasured and spread/factor: keep one")
            if not reader.string(doc["unmeasured"], f"{where}.unmeasured").strip():
                reader.fail(f"{where}.unmeasured", "empty: say why it is not measured")
            return Tolerance(number, unmeasured=doc["unmeasured"])
        if "spread" not in doc and "factor" not in doc:
            reader.fail(where, "holds neither spread and factor (measured) nor unmeasured (why not)")
        for part in ("spread", "factor"):
            if part not in doc:
                reader.fail(f"{where}.{part}", "missing: a tolerance is factor x spread, or says why it is unmeasured")
        spread, factor = reader.number(doc["spread"], f"{where}.spread", 0.0, 1e3), reader.number(doc["factor"], f"{where}.factor", 1.0, 100.0)
        lowest = reader.number(doc["lowest"], f"{where}.lowest", -1e3, 1e3) if "lowest" in doc else None
        if (lowest is not None) != (name == "sqnr_floor_db"):
            reader.fail(f"{where}.lowest", "only the SQNR floor has a lowest value" if lowest is not None else "missing")
        want = derived(name, spread, factor, lowest)
        if abs(want.value - number) > 1e-3 * max(1.0, abs(want.value)):
            reader.fail(where, f"value {number:g} is not what its spread and factor give ({want.describe()}): one of the "
                               "three was changed; correct it, or run segcheck noise --write")
        return want

    tiers = {t: {k: one(d, f"{key}.{t}.{k}", k) for k, d in reader.obj(value[t], f"{key}.{t}", tuple(COMPARED)).items()}
             for t in TIERS}
    within = {k: one(d, f"{key}.within_run.{k}", k) for k, d in reader.obj(value["within_run"], f"{key}.within_run", tuple(WITHIN_RUN)).items()}
    definitions = {k: reader.number(v, f"{key}.definitions.{k}", 0.0, 1e9)
                   for k, v in reader.obj(value["definitions"], f"{key}.definitions", tuple(DEFINITIONS)).items()}
    harm = {k: reader.number(v, f"{key}.harm.{k}", 0.0, 100.0)
            for k, v in reader.obj(value["harm"], f"{key}.harm", tuple(HARM)).items()}
    if not 0.5 <= harm["confidence"] < 1.0:
        reader.fail(f"{key}.harm.confidence", f"{harm['confidence']} is outside [0.5, 1)")
    return ToleranceTable(tiers, within, definitions, harm)

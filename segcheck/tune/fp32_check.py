"""Before tune searches: is FP32 itself what fails? The FP32 model on the gate's own images against its baseline row,
as the gate's FP32 accuracy check judges it (its evaluation, cached, is the gate's); no INT8 recipe can fix a fault in
the FP32 weights."""

from __future__ import annotations

from ..data import loaders
from ..gate import verdicts
from ..models import pipeline
from .trial import Bench, evaluate_fp32


def verdict(bench: Bench, lookup, tier) -> verdicts.Verdict | None:
    """The FP32 model on the gate's own images against its baseline row (`lookup`, of the baseline `tier`), as the
    gate's FP32 accuracy check judges it: a fault in the FP32 weights (saturated weights, wrong BN statistics) is no
    INT8 recipe's to fix. None where there is no row to compare with."""
    if lookup.row is None:
        return None
    mc = bench.config
    val = pipeline.open_split(mc, mc.split)
    ev = evaluate_fp32(mc, bench.fp32, bench.fp32_digest, val, loaders.first(val, mc.num_images),
                         f"checking {mc.name}: FP32 on the gate's images")
    tol = tier.tolerances_for(lookup.reference, mc.tolerances, "fp32")
    return verdicts.against_baseline(f"{mc.name} fp32 on {ev.subset.describe()}", ev.matrix.compute(bench.convention),
                                     lookup.row, "fp32", tol, lookup.reference, ev.per_image)

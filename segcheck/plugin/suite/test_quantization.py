"""The finer INT8 checks: the calibration table against its golden record, per-layer error against FP32,
and the digest of the predictions. In a matching environment and INT8 key two runs agree bit for bit, so these see
any change; against another environment's or recipe's records they compare within the noise band of the tier for
what differs. A change they see but cannot weigh (a range, a digest) takes its verdict from the model's figures."""

import pytest

from segcheck.gate import verdicts
from segcheck.measure import calibration
from segcheck.models import export


@pytest.mark.int8
def test_int8_calibration_table(case, segcheck, request):
    """Every calibrated range (and quantization setting) as recorded, within the noise band of the tier of what differs;
    a moved range is CHANGED, or REGRESSED where the model's INT8 figures regressed. Ranges present, concat inputs
    aligned."""
    text = export.files(case.int8.prefix)[0].read_text()
    table = calibration.table(text)
    segcheck.record(request, case, ranges=table)
    golden = segcheck.golden(case)
    reference = golden.reference if golden and golden.ranges else None
    rtol = segcheck.tolerances(case, reference).range_rtol
    moved = verdicts.range_changes(golden.ranges, table, rtol, reference)[0] if reference else []
    if reference:
        segcheck.record(request, case, ranges_moved=[name for name, _, _ in moved])
    verdict = verdicts.calibration_table(f"{case.name} ({case.int8.source})", table, golden.ranges if reference else None,
                                         calibration.invariants(text), rtol, reference,
                                         segcheck.int8_judgement(case) if moved else None)
    segcheck.judge(request, verdict)


@pytest.mark.int8
def test_int8_layer_error(case, segcheck, request):
    """Per-layer SQNR of INT8 against FP32 on the split's first images (8, or 48 where recording or the reference
    differs): none below the floor; against the golden curve, a layer's own change in pooled SQNR beyond the noise band
    is CHANGED, REGRESSED where it reaches the harm threshold."""
    loc = segcheck.localisation(case)
    segcheck.record(request, case, layers=[{**vars(layer), "upstream": loc.upstream.get(layer.name, [])} for layer in loc.layers],
                    flip={"low_margin": round(loc.flip_low_margin, 5), "all": round(loc.flip_all, 5), "images": loc.images})
    verdict, named = segcheck.layers_verdict(case)
    segcheck.record(request, case, layers_ranked=named)
    segcheck.judge(request, verdict)


def test_outputs_digest(case, precision, segcheck, request):
    """The argmax predictions image after image against the golden run: identical, or within the noise of the tier of
    what differs, PASS; in this environment under this INT8 key a change is CHANGED, or REGRESSED where the precision's
    figures regressed."""
    ev = case.evaluation(precision)
    now = {"images": ev.image_digests, "pixels": ev.predicted}
    segcheck.record(request, case, **{precision: {"digest": ev.digest, "image_digests": ev.image_digests, "predicted": ev.predicted}})
    golden = segcheck.golden(case, precision)
    recorded = golden.digest.get(precision) if golden else None
    reference = golden.reference if recorded else None
    if case.config.run.shard is not None:  # merge judges the whole: it needs the record this shard would compare with
        if recorded:
            segcheck.record(request, case, golden_digest={precision: {**recorded, "reference": vars(reference)}})
        pytest.skip(f"{case.name}: shard {case.config.run.shard[0]}/{case.config.run.shard[1]}'s digest covers its block of "
                    "images only; segcheck merge judges the whole run's")
    changed = recorded is not None and recorded["sha256"] != ev.digest and not reference.differs
    judged = (segcheck.int8_judgement(case) if precision == "int8" else segcheck.accuracy_verdict(
        case, "fp32", ev.matrix.compute(segcheck.convention), ev)[2]) if changed else None
    verdict = verdicts.digest(f"{case.name} {precision} on {ev.subset.describe()}",
                              {**now, "ids": ev.subset.ids, "classes": case.classes}, recorded, reference, judged)
    segcheck.judge(request, verdict)

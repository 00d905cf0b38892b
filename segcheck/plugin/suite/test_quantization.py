"""The finer INT8 checks: the calibration table against its golden record, per-layer error against FP32,
and the digest of the predictions. In a matching environment two runs agree bit for bit, so these see
faults that move mIoU by a tenth of a point; against another environment's records they compare within the
tolerance tier for what differs."""

import pytest

from segcheck.gate import verdicts
from segcheck.measure import calibration
from segcheck.models import export


@pytest.mark.int8
def test_int8_calibration_table(case, segcheck, request):
    """Every calibrated range (and quantization setting) as recorded, ranges present, concat inputs aligned."""
    text = export.files(case.int8.prefix)[0].read_text()
    table = calibration.table(text)
    segcheck.record(request, case, ranges=table)
    golden = segcheck.golden(case)
    reference = golden.reference if golden and golden.ranges else None
    rtol = segcheck.tolerances(case, reference).range_rtol
    if reference:
        segcheck.record(request, case, ranges_moved=[name for name, _, _ in calibration.moved(golden.ranges, table, rtol)])
    verdict = verdicts.calibration_table(f"{case.name} ({case.int8.source})", table, golden.ranges if reference else None,
                                         calibration.invariants(text), rtol, reference)
    segcheck.judge(request, verdict)


@pytest.mark.int8
def test_int8_layer_error(case, segcheck, request):
    """Per-layer SQNR of INT8 against FP32 on a few fixed images: none far below its golden value or the floor."""
    loc = case.localisation
    sqnr = {layer.name: layer.sqnr_db for layer in loc.layers}
    segcheck.record(request, case, layers=[vars(layer) for layer in loc.layers],
                    flip={"low_margin": round(loc.flip_low_margin, 5), "all": round(loc.flip_all, 5), "images": loc.images})
    golden = segcheck.golden(case)
    curve = golden.sqnr_db if golden and golden.sqnr_db else None
    reference = golden.reference if curve else None
    tol = segcheck.tolerances(case, reference)
    named = verdicts.layers_named(sqnr, curve, loc.upstream, tol.sqnr_drop_db, tol.sqnr_floor_db)
    segcheck.record(request, case, layers_ranked=[name for name, _, _ in named])
    what = f"{case.name} on {loc.images} images (low-margin flip rate {100 * loc.flip_low_margin:.1f}%, all {100 * loc.flip_all:.2f}%)"
    segcheck.judge(request, verdicts.layer_error(what, sqnr, curve, loc.upstream, tol.sqnr_drop_db, tol.sqnr_floor_db, reference))


def test_outputs_digest(case, precision, segcheck, request):
    """The argmax predictions image after image: CHANGED where they differ from the golden run (failing only
    under --strict-digest: the accuracy, drop, range and layer checks judge whether a change harms)."""
    ev = case.evaluation(precision)
    now = {"sha256": ev.digest, "images": ev.image_digests, "pixels": ev.predicted}
    segcheck.record(request, case, **{precision: {"digest": ev.digest, "image_digests": ev.image_digests, "predicted": ev.predicted}})
    if case.config.run.shard is not None:
        pytest.skip(f"{case.name}: shard {case.config.run.shard[0]}/{case.config.run.shard[1]}'s digest covers its block of "
                    "images only; the digest check runs on unsharded runs")
    golden = segcheck.golden(case)
    recorded = golden.digest.get(precision) if golden else None
    what = f"{case.name} {precision} on {ev.subset.describe()}"
    verdict = verdicts.digest(what, {**now, "ids": ev.subset.ids, "classes": case.classes}, recorded,
                              bool(segcheck.options.strict_digest), golden.reference if recorded else None)
    segcheck.judge(request, verdict)

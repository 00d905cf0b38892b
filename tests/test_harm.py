"""Whether a change harms (segcheck.gate.harm): the three verdicts of a figure against its reference, the paired
intervals they rest on, and a layer's own change."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcheck.gate import harm, verdicts
from segcheck.gate.baselines import Reference, Row, Tolerances
from segcheck.measure import sqnr
from segcheck.measure.metrics import ConfusionMatrix


def shift(change, low, high, tolerance=0.3, limit=0.5):
    return harm.Shift("INT8 mIoU", "points", 60.0 + change, 60.0, change, low, high, tolerance, limit, 48)


def test_within_the_band_passes_a_fall_that_may_be_harm_regresses_anything_else_is_changed():
    assert shift(-0.2, -0.6, 0.2).status == "PASS"  # the point lies within the band, whatever the interval
    assert shift(-0.5, -0.8, -0.35).status == "REGRESSED"  # beyond the band all along, and a fall of 0.5 inside it
    assert shift(-0.35, -0.45, -0.31).status == "CHANGED"  # a real fall, but the interval excludes harm
    assert shift(-0.4, -0.7, -0.1).status == "CHANGED"  # maybe harm, but maybe no more than noise: reported
    assert shift(-0.4, -0.55, 0.1).status == "CHANGED"  # not even sure it fell
    assert shift(0.8, 0.5, 1.1).status == "CHANGED"  # a rise is never harm
    described = shift(-0.5, -0.8, -0.35).describe()
    assert "INT8 mIoU 60.00 -> 59.50 (-0.50, 95% interval [-0.80, -0.35] over 48 images)" in described
    assert "with confidence, and a fall of 0.5 (harm) is inside the interval" in described
    assert harm.worst([shift(-0.2, -0.6, 0.2), shift(0.8, 0.5, 1.1)]) == "CHANGED"
    assert harm.worst([shift(0.8, 0.5, 1.1), shift(-0.5, -0.8, -0.35)]) == "REGRESSED"


@settings(max_examples=60, deadline=None)
@given(change=st.floats(-5, 5), width=st.floats(0, 3), tolerance=st.floats(0, 2), limit=st.floats(0.01, 3))
def test_the_verdict_follows_its_definition_for_any_figure(change, width, tolerance, limit):
    s = shift(change, change - width, change + width, tolerance, limit)
    if abs(change) <= tolerance:
        assert s.status == "PASS"
    elif -(change + width) > tolerance and -(change - width) >= limit:
        assert s.status == "REGRESSED"
    else:
        assert s.status == "CHANGED"


def _per_image(rng, n, right):
    """n images of a 3-class problem as sparse confusion matrices; each pixel right with probability `right`."""
    out = []
    for _ in range(n):
        label = rng.integers(0, 3, size=400)
        pred = np.where(rng.random(400) < right, label, (label + 1) % 3)
        out.append(ConfusionMatrix(3).update(pred, label).sparse())
    return out


def test_accuracy_is_paired_over_the_same_images_and_alone_is_its_point():
    rng = np.random.default_rng(0)
    then = _per_image(rng, 40, 0.9)
    same = harm.accuracy("int8", (90.0, 80.0), (90.0, 80.0), then, then, 3, "present", (0.1, 0.1), (0.5, 0.5), 0.95)
    assert [(s.low, s.high, s.images) for s in same] == [(0.0, 0.0, 40), (0.0, 0.0, 40)]
    worse = _per_image(np.random.default_rng(1), 40, 0.8)
    whole = lambda images: ConfusionMatrix.from_sparse(3, [c for i in images for c in i]).compute("present").percent()  # noqa: E731
    fell = harm.accuracy("int8", whole(worse), whole(then), worse, then, 3, "present", (0.1, 0.1), (0.5, 0.5), 0.95)
    assert all(s.low <= s.change <= s.high and s.high < 0 for s in fell) and all(s.status == "REGRESSED" for s in fell)
    unpaired = harm.accuracy("int8", (89.0, 79.0), (90.0, 80.0), worse, then[:10], 3, "present", (0.1, 0.1), (0.5, 0.5), 0.95)
    assert [(s.low, s.high, s.images) for s in unpaired] == [(-1.0, -1.0, 0), (-1.0, -1.0, 0)]


def test_a_per_image_figure_is_the_mean_change_with_its_interval():
    now, then = [99.0, 98.0, 99.5, 97.0], [99.5, 99.0, 99.6, 99.0]
    s = harm.per_image("agreement", "points", now, then, 0.2, 0.5, 0.95)
    assert s.change == pytest.approx(np.mean(now) - np.mean(then)) and s.low <= s.change <= s.high
    assert harm.per_image("agreement", "points", now, then[:3], 0.2, 0.5, 0.95) is None


def test_a_layer_is_charged_its_own_change_not_the_one_it_inherits():
    up = {"a": [], "b": ["a"], "c": ["b"]}
    then = {k: (v, [1.0, 2.0]) for k, v in {"a": [30.0, 30.0], "b": [25.0, 25.0], "c": [20.0, 20.0]}.items()}
    now = {k: (v, [1.0, 2.0]) for k, v in {"a": [24.0, 24.0], "b": [19.0, 19.0], "c": [12.0, 12.0]}.items()}
    # a fell 6 dB; b inherits it; c loses 2 dB more
    shifts = {s.figure: s for s in harm.layers(now, then, up, {}, 1.0, 6.0, 0.95)}
    assert shifts["layer a"].change == pytest.approx(-6.0) and shifts["layer a"].status == "REGRESSED"
    assert shifts["layer b"].change == pytest.approx(0.0) and shifts["layer b"].status == "PASS"
    assert shifts["layer c"].change == pytest.approx(-2.0) and shifts["layer c"].status == "CHANGED"
    assert harm.layers(now, then, up, {"c": 2.5}, 1.0, 6.0, 0.95)[-1].status == "PASS"  # c's own band holds it
    assert harm.layers(now, {}, up, {}, 1.0, 6.0, 0.95) == []
    assert harm.layers(now, {k: (v[0], ()) for k, v in then.items()}, up, {}, 1.0, 6.0, 0.95) == []  # no energies to pool


def _clipped(n=48, hot=6, fall=12.0, every=0.0):
    """A layer's (per-image SQNR, energy) on n images: the first `hot` carry 10x the energy; they fall by `fall` dB
    (a range that clips the largest activations), every image by `every` dB (a coarser step)."""
    signal = [10.0] * hot + [1.0] * (n - hot)
    then = [30.0] * n
    now = [30.0 - every - (fall if i < hot else 0.0) for i in range(n)]
    return {"conv0": (now, signal)}, {"conv0": (then, signal)}


def test_a_layer_is_judged_on_its_pooled_sqnr_so_clipping_the_loudest_images_is_harm():
    """Clipping the few images with the largest activations lets their noise rule the layer: the pooled SQNR falls
    by about 9 dB while the mean of per-image dB falls by 1.5; a step coarse on every image alike falls as much pooled
    as per image."""
    now, then = _clipped()
    clipped = harm.layers(now, then, {}, {}, 2.6, 6.0, 0.95)[0]
    assert clipped.change < -8.0 and clipped.status == "REGRESSED"  # a mean of per-image dB would see -1.5
    now, then = _clipped(fall=0.0, every=4.0)
    coarse = harm.layers(now, then, {}, {}, 2.6, 6.0, 0.95)[0]
    assert coarse.change == pytest.approx(-4.0) and coarse.status == "CHANGED"


def test_layers_pair_the_first_images_both_measured():
    """8 images measured now against a record of 48: the first 8 of each (the clipped ones lead), not any other 8."""
    now, then = _clipped(n=48)
    short = {k: (v[0][:8], v[1][:8]) for k, v in now.items()}
    paired = harm.layers(short, then, {}, {}, 2.6, 6.0, 0.95)[0]
    assert paired.images == 8 and paired.change == pytest.approx(10 * np.log10(62 / (60 * 10 ** -1.8 + 2e-3)) - 30.0)


def test_pooled_sqnr_keeps_the_noise_of_an_all_zero_image_and_a_clean_layer_clean():
    one = np.ones((1, 2))
    db = [sqnr.sqnr(0.0, 4.0), sqnr.sqnr(1.0, 0.01)]  # an image whose FP32 output is all zero, but INT8's is not
    assert sqnr.pooled(one, db, [0.0, 1.0])[0] == pytest.approx(10 * np.log10(1.0 / 4.01), abs=1e-3)
    assert sqnr.pooled(one, [sqnr.CLEAN_DB] * 2, [0.0, 0.0])[0] == sqnr.CLEAN_DB  # no noise anywhere: clean, not 0 dB
    assert sqnr.pooled(one, [sqnr.CLEAN_DB, 20.0], [5.0, 1.0])[0] == pytest.approx(10 * np.log10(6.0 / 0.01))


def test_the_accuracy_verdict_names_what_it_compared_and_keeps_an_xfail_row():
    scores = ConfusionMatrix(3, np.diag([800, 100, 100])).compute("present")
    row = Row(10.0, 4.0, 100.0, 100.0, 100.0, 100.0)
    recipe = Reference("row", {"mxnet": "1.9.1"}, "exact", "naive/auto/2x16/train")
    tol = Tolerances(0.5, 1.0, 1.0, 2.0)
    same = verdicts.against_baseline("m int8", scores, row, "int8", tol, recipe)
    assert same.status == "PASS" and same.compared == "recipe" and "INT8 under this run's new recipe" in same.message
    lower = verdicts.against_baseline("m int8", scores, Row(10.0, 4.0, 100.0, 100.0, 100.0, 101.5), "int8", tol, recipe)
    assert lower.status == "REGRESSED" and lower.failed
    higher = verdicts.against_baseline("m int8", scores, Row(10.0, 4.0, 100.0, 100.0, 100.0, 98.0), "int8", tol, recipe)
    assert higher.status == "CHANGED" and not higher.failed and "pytest --update-baselines" in higher.message
    known = Row(10.0, 4.0, 100.0, 100.0, 100.0, 101.5, xfail_reason="AVX2 saturates")
    assert verdicts.against_baseline("m int8", scores, known, "int8", tol).status == "XFAIL"

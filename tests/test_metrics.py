"""Property tests of the confusion-matrix metrics (segcheck.metrics)."""

from dataclasses import astuple

import mxnet as mx
import numpy as np
import pytest
from gluoncv.utils.metrics import SegmentationMetric
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segcheck.config.recipes import CONVENTIONS
from segcheck.measure.metrics import IGNORE_LABELS, ConfusionMatrix


@st.composite
def batches(draw, min_classes=1, max_classes=12):
    """(num_classes, pred, label): label maps with ignore pixels, predictions in [0, num_classes)."""
    n = draw(st.integers(min_classes, max_classes))
    shape = draw(hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9))
    dtype = draw(st.sampled_from([np.int32, np.int64]))
    label = draw(hnp.arrays(dtype, shape, elements=st.sampled_from(list(range(n)) + list(IGNORE_LABELS))))
    pred = draw(hnp.arrays(dtype, shape, elements=st.integers(0, n - 1)))
    return n, pred, label


def matrix_of(n, pred, label):
    return ConfusionMatrix(n).update(pred, label)


def gluoncv_scores(n, pred, label):
    """pixAcc and mIoU from GluonCV's SegmentationMetric, fed one-hot logits whose argmax is `pred`."""
    logits = np.eye(n, dtype=np.float32)[pred].transpose(0, 3, 1, 2)
    target = np.where(label == 255, -1, label).astype(np.float32)
    metric = SegmentationMetric(n)
    metric.update(mx.nd.array(target), mx.nd.array(logits))
    return metric.get()


@given(batches())
def test_equals_gluoncv_segmentation_metric(batch):
    n, pred, label = batch
    scores = matrix_of(n, pred, label).compute("gluoncv")
    pix_acc, miou = gluoncv_scores(n, pred, label)
    assert scores.pix_acc == pytest.approx(pix_acc, rel=1e-9, abs=1e-12)
    assert scores.miou == pytest.approx(miou, rel=1e-9, abs=1e-12)


@given(batches(), st.data())
def test_merging_shards_in_any_split_and_order_equals_whole(batch, data):
    n, pred, label = batch
    flat_pred, flat_label = pred.ravel(), label.ravel()
    order = data.draw(st.permutations(range(flat_pred.size)))
    cuts = sorted(data.draw(st.lists(st.integers(0, flat_pred.size), max_size=4)))
    shards = np.split(np.asarray(order, dtype=np.int64), cuts)
    merged = sum(matrix_of(n, flat_pred[idx], flat_label[idx]) for idx in data.draw(st.permutations(shards)))
    np.testing.assert_array_equal(merged.matrix, matrix_of(n, pred, label).matrix)


@given(batches(), st.data())
def test_permuting_images_changes_nothing(batch, data):
    n, pred, label = batch
    perm = np.asarray(data.draw(st.permutations(range(pred.shape[0]))), dtype=np.int64)
    np.testing.assert_array_equal(matrix_of(n, pred[perm], label[perm]).matrix, matrix_of(n, pred, label).matrix)


@given(batches(), st.data())
def test_relabelling_classes_permutes_per_class_iou(batch, data):
    n, pred, label = batch
    perm = np.asarray(data.draw(st.permutations(range(n))), dtype=np.int64)
    counted = (label >= 0) & (label < n)
    relabelled = np.where(counted, perm[np.clip(label, 0, n - 1)], label)
    for convention in CONVENTIONS:
        before = np.asarray(matrix_of(n, pred, label).compute(convention).iou)
        after = np.asarray(matrix_of(n, perm[pred], relabelled).compute(convention).iou)
        np.testing.assert_array_equal(after[perm], before)


@given(batches())
def test_perfect_prediction_scores_one(batch):
    n, _, label = batch
    counted = (label >= 0) & (label < n)
    assume(counted.any())
    pred = np.where(counted, label, 0)
    for convention in CONVENTIONS:
        scores = matrix_of(n, pred, label).compute(convention)
        assert scores.pix_acc == 1.0
        assert scores.mean_class_acc == 1.0
        present = np.isin(np.arange(n), label[counted])
        assert np.all(np.asarray(scores.iou)[present] == 1.0)
    assert matrix_of(n, pred, label).compute("present").miou == 1.0


@given(batches(), st.data())
def test_ignored_pixels_never_change_any_number(batch, data):
    n, pred, label = batch
    ignored = np.isin(label, IGNORE_LABELS)
    noise = data.draw(hnp.arrays(pred.dtype, pred.shape, elements=st.integers(0, n - 1)))
    repredicted = np.where(ignored, noise, pred)
    extra_label = np.full((1,) + label.shape[1:], data.draw(st.sampled_from(IGNORE_LABELS)), dtype=label.dtype)
    extra_pred = data.draw(hnp.arrays(pred.dtype, extra_label.shape, elements=st.integers(0, n - 1)))
    base = matrix_of(n, pred, label)
    padded = matrix_of(n, np.concatenate([repredicted, extra_pred]), np.concatenate([label, extra_label]))
    np.testing.assert_array_equal(padded.matrix, base.matrix)
    for convention in CONVENTIONS:
        np.testing.assert_equal(astuple(padded.compute(convention)), astuple(base.compute(convention)))


@given(batches())
def test_every_value_lies_in_unit_interval(batch):
    n, pred, label = batch
    for convention in CONVENTIONS:
        scores = matrix_of(n, pred, label).compute(convention)
        iou = np.asarray(scores.iou)
        defined = iou[~np.isnan(iou)]
        for value in (scores.pix_acc, scores.miou, scores.mean_class_acc, *defined):
            assert 0.0 <= value <= 1.0


@given(batches())
def test_present_convention_averages_only_classes_with_a_union(batch):
    n, pred, label = batch
    scores = matrix_of(n, pred, label).compute("present")
    iou = np.asarray(scores.iou)
    assume(not np.all(np.isnan(iou)))
    assert scores.miou == pytest.approx(np.nanmean(iou))
    gluoncv = matrix_of(n, pred, label).compute("gluoncv").miou
    assert gluoncv == pytest.approx(np.nan_to_num(iou).sum() / n)


@pytest.mark.parametrize(
    "pred, label, message",
    [
        (np.zeros((1, 2, 3), np.int64), np.zeros((1, 3, 2), np.int64), r"prediction shape \(1, 2, 3\) differs from label shape \(1, 3, 2\)"),
        (np.zeros((1, 2, 2), np.int64), np.array([[[0, 5], [21, 0]]]), r"label values \[21\] are outside \[0, 21\)"),
        (np.zeros((1, 2, 2), np.int64), np.array([[[0, -2], [0, 0]]]), r"label values \[-2\] are outside"),
        (np.array([[[0, 22], [0, 0]]]), np.zeros((1, 2, 2), np.int64), r"prediction values \[22\] are outside \[0, 21\)"),
        (np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), np.int64), r"prediction must hold integer class indices, got dtype float32"),
        (np.zeros((1, 2, 2), np.int64), np.zeros((1, 2, 2), np.float64), r"label must hold integer class indices, got dtype float64"),
        (np.zeros((1, 2, 2), np.int64), np.zeros((1, 2, 2), bool), r"label must hold integer class indices, got dtype bool"),
    ],
    ids=["shape-mismatch", "label-too-large", "label-negative", "pred-out-of-range", "float-pred", "float-label", "bool-label"],
)
def test_bad_input_raises_clear_value_error(pred, label, message):
    with pytest.raises(ValueError, match=message):
        ConfusionMatrix(21).update(pred, label)


def test_unknown_convention_and_class_count_mismatch_are_refused():
    with pytest.raises(ValueError, match="unknown mIoU convention 'mean'"):
        ConfusionMatrix(3).compute("mean")
    with pytest.raises(ValueError, match="cannot merge 3-class and 4-class"):
        ConfusionMatrix(3) + ConfusionMatrix(4)


def test_known_example_by_hand():
    """Two classes: label [0 0 1 1 255], prediction [0 1 1 1 0]."""
    cm = ConfusionMatrix(3).update(np.array([[0, 1, 1, 1, 0]]), np.array([[0, 0, 1, 1, 255]]))
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 0], [0, 0, 0]])
    gluon, present = cm.compute("gluoncv"), cm.compute("present")
    assert gluon.pix_acc == pytest.approx(3 / 4)
    assert present.miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert gluon.miou == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert gluon.mean_class_acc == pytest.approx((1 / 2 + 1) / 2)

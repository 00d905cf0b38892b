"""Latency of the metric update at the seed's evaluation size (pytest-benchmark)."""

import numpy as np
import pytest

from segcheck.measure.metrics import ConfusionMatrix


@pytest.mark.bench
def test_confusion_matrix_update_16x480x480_21_classes(benchmark):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 21, size=(16, 480, 480), dtype=np.int64)
    label[:, :, :8] = 255  # VOC-style void border, never counted
    pred = rng.integers(0, 21, size=label.shape, dtype=np.int64)
    benchmark.group = "metrics"
    benchmark.extra_info.update(shape=list(label.shape), num_classes=21)
    cm = benchmark(lambda: ConfusionMatrix(21).update(pred, label))
    assert cm.num_pixels == 16 * 480 * (480 - 8)

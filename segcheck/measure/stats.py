"""How sure a figure on a subset is: a seeded, paired bootstrap over images of the INT8 - FP32 drop.

Images are resampled with replacement, the same draw for both precisions (the drop is paired), and pixAcc
and mIoU recomputed from the resampled per-image confusion matrices, in the run's mIoU convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import ConfusionMatrix, ratios

RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """The drop (FP32 - INT8, points) and its bootstrap interval, for pixAcc and mIoU."""

    pixacc: tuple
    miou: tuple
    confidence: float
    resamples: int
    images: int


def per_image_stats(per_image: list, num_classes: int) -> np.ndarray:
    """images x 3 x classes: true positives, labelled and predicted pixels of each image, from sparse matrices."""
    out = np.zeros((len(per_image), 3, num_classes), dtype=np.float64)
    for i, cells in enumerate(per_image):
        m = ConfusionMatrix.from_sparse(num_classes, cells).matrix
        out[i] = np.diag(m), m.sum(axis=1), m.sum(axis=0)
    return out


def scores(sums: np.ndarray, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixAcc, mIoU) in percent of each row of summed stats (resamples x 3 x classes)."""
    pix, miou, _ = ratios(sums[:, 0], sums[:, 1], sums[:, 2], convention)
    return 100 * pix, 100 * miou


def paired_drop(fp32: np.ndarray, int8: np.ndarray, convention: str, resamples: int = RESAMPLES,
                confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """The FP32 - INT8 drop with a percentile interval from `resamples` paired resamplings of the images."""
    n = len(fp32)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    def resampled(per_image):  # resamples x 3 x classes: one matrix product, not a loop over resamples
        return (weights @ per_image.reshape(n, -1)).reshape((resamples,) + per_image.shape[1:])

    f_pix, f_miou = scores(resampled(fp32), convention)
    q_pix, q_miou = scores(resampled(int8), convention)
    whole_f, whole_q = scores(fp32.sum(axis=0)[None], convention), scores(int8.sum(axis=0)[None], convention)
    tail = (1 - confidence) / 2 * 100

    def interval(drops, point):
        lo, hi = np.percentile(drops, [tail, 100 - tail])
        return round(float(point), 4), round(float(lo), 4), round(float(hi), 4)

    return Interval(interval(f_pix - q_pix, whole_f[0][0] - whole_q[0][0]), interval(f_miou - q_miou, whole_f[1][0] - whole_q[1][0]),
                    confidence, resamples, n)


def evaluation_drop(fp32, int8, num_classes: int, convention: str) -> Interval:
    """The paired FP32 - INT8 drop interval of two evaluations (measure.evaluate.Evaluation) of the same images."""
    return paired_drop(per_image_stats(fp32.per_image, num_classes), per_image_stats(int8.per_image, num_classes), convention)

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


def resampling(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """resamples x n weights of a seeded bootstrap over n images (how often each image is drawn): one draw serves every
    figure of a comparison, so that paired figures stay paired."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def percentiles(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The two-sided percentile interval of resampled values."""
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def resampled_scores(weights: np.ndarray, per_image: np.ndarray, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixAcc, mIoU) of each resampling of per-image stats (images x 3 x classes): one matrix product, no loop."""
    n = len(per_image)
    return scores((weights @ per_image.reshape(n, -1)).reshape((len(weights),) + per_image.shape[1:]), convention)


def paired_drop(fp32: np.ndarray, int8: np.ndarray, convention: str, resamples: int = RESAMPLES,
                confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """The FP32 - INT8 drop with a percentile interval from `resamples` paired resamplings of the images."""
    n = len(fp32)
    weights = resampling(n, resamples, seed)
    f_pix, f_miou = resampled_scores(weights, fp32, convention)
    q_pix, q_miou = resampled_scores(weights, int8, convention)
    whole_f, whole_q = scores(fp32.sum(axis=0)[None], convention), scores(int8.sum(axis=0)[None], convention)

    def interval(drops, point):
        lo, hi = percentiles(drops, confidence)
        return round(float(point), 4), round(lo, 4), round(hi, 4)

    return Interval(interval(f_pix - q_pix, whole_f[0][0] - whole_q[0][0]), interval(f_miou - q_miou, whole_f[1][0] - whole_q[1][0]),
                    confidence, resamples, n)


def evaluation_drop(fp32, int8, num_classes: int, convention: str) -> Interval:
    """The paired FP32 - INT8 drop interval of two evaluations (measure.evaluate.Evaluation) of the same images."""
    return paired_drop(per_image_stats(fp32.per_image, num_classes), per_image_stats(int8.per_image, num_classes), convention)

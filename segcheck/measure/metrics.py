"""Segmentation metrics from one int64 confusion matrix: state that merges by addition, then compute.

Rows are ground-truth classes, columns predicted classes. Pixels labelled with an ignore label
(VOC's 255, which GluonCV's loader turns into -1) are never counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config.recipes import CONVENTIONS
from ..data.kinds import IGNORE_LABELS


def _check_int_array(name: str, arr) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must hold integer class indices, got dtype {arr.dtype}; "
            "take the argmax over the class axis of the logits first"
        )
    return arr


@dataclass
class ConfusionMatrix:
    """Accumulated (num_classes x num_classes) pixel counts; merge shards with `+`."""

    num_classes: int
    matrix: np.ndarray = field(default=None)

    def __post_init__(self):
        if not isinstance(self.num_classes, (int, np.integer)) or not 1 <= self.num_classes <= 255:
            raise ValueError(f"num_classes must be an integer in [1, 255], got {self.num_classes!r}")
        self.num_classes = int(self.num_classes)
        if self.matrix is None:
            self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        else:
            self.matrix = np.asarray(self.matrix)
            if self.matrix.shape != (self.num_classes, self.num_classes) or self.matrix.dtype != np.int64:
                raise ValueError(
                    f"matrix must be int64 of shape {(self.num_classes, self.num_classes)}, "
                    f"got {self.matrix.dtype} {self.matrix.shape}"
                )

    def update(self, pred, label) -> "ConfusionMatrix":
        """Count one batch of predicted and true label maps of the same shape (any number of images)."""
        pred = _check_int_array("prediction", pred)
        label = _check_int_array("label", label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
        n = self.num_classes
        counted = (label >= 0) & (label < n)
        ignored = np.isin(label, IGNORE_LABELS)
        if not np.all(counted | ignored):
            bad = np.unique(label[~(counted | ignored)])[:10].tolist()
            raise ValueError(
                f"label values {bad} are outside [0, {n}) and are not an ignore label {IGNORE_LABELS}"
            )
        p = pred[counted]
        if p.size and (p.min() < 0 or p.max() >= n):
            bad = np.unique(p[(p < 0) | (p >= n)])[:10].tolist()
            raise ValueError(f"prediction values {bad} are outside [0, {n})")
        index = label[counted].astype(np.int64) * n + p.astype(np.int64)
        self.matrix += np.bincount(index, minlength=n * n).reshape(n, n)
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {self.num_classes}-class and {other.num_classes}-class matrices")
        return ConfusionMatrix(self.num_classes, self.matrix + other.matrix)

    def __radd__(self, other):
        if other == 0:  # lets sum() start from 0
            return ConfusionMatrix(self.num_classes, self.matrix.copy())
        return NotImplemented

    @property
    def num_pixels(self) -> int:
        return int(self.matrix.sum())

    def sparse(self) -> list:
        """[[row, column, count], ...] of the non-zero cells: an image's matrix in a few numbers, for JSON."""
        rows, cols = np.nonzero(self.matrix)
        return [[int(r), int(c), int(self.matrix[r, c])] for r, c in zip(rows, cols)]

    @classmethod
    def from_sparse(cls, num_classes: int, cells) -> "ConfusionMatrix":
        matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        for r, c, n in cells:
            matrix[r, c] += n
        return cls(num_classes, matrix)

    def compute(self, convention: str = "gluoncv") -> "Scores":
        return Scores.from_matrix(self.matrix, convention)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0."""
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def ratios(tp: np.ndarray, labelled: np.ndarray, predicted: np.ndarray, convention: str) -> tuple:
    """(pixAcc, mIoU, per-class IoU) as fractions from per-class pixel counts, over any leading axes (the last is
    the class): the one place the mIoU conventions are written, for a whole matrix and for bootstrap resamples."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown mIoU convention {convention!r}; choose one of {CONVENTIONS}")
    union = labelled + predicted - tp
    iou = _ratio(tp, union)
    total = labelled.sum(axis=-1)
    pix_acc = np.divide(tp.sum(axis=-1), total, out=np.zeros(total.shape), where=total > 0)
    if convention == "gluoncv":
        miou = np.nan_to_num(iou, nan=0.0).mean(axis=-1)
    else:
        present = (union > 0).sum(axis=-1)
        miou = np.divide(np.nan_to_num(iou, nan=0.0).sum(axis=-1), present, out=np.zeros(present.shape), where=present > 0)
    return pix_acc, miou, iou


@dataclass(frozen=True)
class Scores:
    """Figures derived from a confusion matrix; fractions in [0, 1], NaN where undefined."""

    convention: str
    pix_acc: float
    miou: float
    mean_class_acc: float
    iou: tuple  # per class, NaN where the class is absent from both label and prediction

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, convention: str) -> "Scores":
        tp = np.diag(matrix).astype(np.float64)
        labelled = matrix.sum(axis=1).astype(np.float64)
        predicted = matrix.sum(axis=0).astype(np.float64)
        pix_acc, miou, iou = ratios(tp, labelled, predicted, convention)
        class_acc = _ratio(tp, labelled)
        mean_class_acc = float(np.nanmean(class_acc)) if np.any(labelled > 0) else 0.0
        return cls(convention, float(pix_acc), float(miou), mean_class_acc, tuple(float(v) for v in iou))

    def percent(self) -> tuple[float, float]:
        """(pixAcc, mIoU) in percent, the seed's units."""
        return 100.0 * self.pix_acc, 100.0 * self.miou

    def figures(self) -> dict:
        """pixAcc, mIoU and per-class IoU in percent, as a run's results hold them (None for an absent class)."""
        pixacc, miou = self.percent()
        return {"pixacc": round(pixacc, 4), "miou": round(miou, 4),
                "iou": [None if np.isnan(v) else round(100 * v, 2) for v in self.iou]}

"""Run a model over a split and accumulate its confusion matrix, with a progress bar."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ..data import loaders
from ..models.build import logits
from .metrics import ConfusionMatrix


def predict(model, x: mx.nd.NDArray) -> np.ndarray:
    return logits(model, x).argmax(axis=1).asnumpy().astype(np.int64)


@dataclass
class Evaluation:
    """The confusion matrix of a model on a subset, and one per image (merged, they give the first)."""

    matrix: ConfusionMatrix
    subset: loaders.Subset
    skipped: list = field(default_factory=list)
    per_image: list = field(default_factory=list)  # each image's matrix, sparse ([[row, column, count], ...]), in order
    digest: str = ""  # sha256 of the argmax predictions, image after image
    image_digests: list = field(default_factory=list)  # a short digest of each image's predictions
    predicted: list = field(default_factory=list)  # predicted pixels per class, over whole images
    cached: bool = False  # read from the FP32 evaluation cache (fp32_cache), not evaluated in this run

    def to_dict(self) -> dict:
        return {"matrix": self.matrix.matrix.tolist(), "split": self.subset.split, "ids": list(self.subset.ids),
                "skipped": self.skipped, "per_image": self.per_image, "digest": self.digest,
                "image_digests": self.image_digests, "predicted": self.predicted}

    @classmethod
    def from_dict(cls, doc: dict, cached: bool = False) -> "Evaluation":
        matrix = np.asarray(doc["matrix"], dtype=np.int64)
        return cls(ConfusionMatrix(len(matrix), matrix), loaders.Subset(doc["split"], tuple(doc["ids"])), doc["skipped"],
                   doc["per_image"], doc["digest"], doc["image_digests"], doc["predicted"], cached)


class Accumulator:
    """An evaluation built image by image from predicted and true label maps, whatever made the predictions."""

    def __init__(self, num_classes: int, split: str):
        self.num_classes, self.split = num_classes, split
        self.matrix, self.per_image, self.ids, self.digests = ConfusionMatrix(num_classes), [], [], []
        self.whole, self.predicted = hashlib.sha256(), np.zeros(num_classes, dtype=np.int64)

    def add(self, pred: np.ndarray, label: np.ndarray, image_id: str) -> None:
        image = ConfusionMatrix(self.num_classes).update(pred, label)
        self.matrix = self.matrix + image
        self.per_image.append(image.sparse())
        raw = pred.astype(np.uint8).tobytes()
        self.whole.update(raw)
        self.digests.append(hashlib.sha1(raw).hexdigest()[:12])
        self.predicted += np.bincount(pred.ravel(), minlength=self.num_classes)[:self.num_classes]
        self.ids.append(image_id)

    def evaluation(self, skipped: list) -> Evaluation:
        return Evaluation(self.matrix, loaders.Subset(self.split, tuple(self.ids)), skipped, self.per_image,
                          self.whole.hexdigest(), self.digests, self.predicted.tolist())


def evaluate(model, split: loaders.Split, indices, batch_size: int = 1, skip_bad: bool = False,
             desc: str | None = None) -> Evaluation:
    """pixAcc/mIoU state of `model` on the samples at `indices`, in order, kept per image too."""
    acc, skipped = Accumulator(split.num_classes, split.split), []
    with tqdm(total=len(indices), desc=desc, unit="img", leave=False, disable=desc is None) as bar:
        for x, y, batch_ids in loaders.batches(split, indices, batch_size, skip_bad, skipped):
            for pred, label, image_id in zip(predict(model, x), y, batch_ids):
                acc.add(pred, label, image_id)
            bar.update(len(batch_ids))
    return acc.evaluation(skipped)

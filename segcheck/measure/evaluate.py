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


def evaluate(model, split: loaders.Split, indices, batch_size: int = 1, skip_bad: bool = False,
             desc: str | None = None) -> Evaluation:
    """pixAcc/mIoU state of `model` on the samples at `indices`, in order, kept per image too."""
    n = split.num_classes
    matrix, per_image, ids, skipped, digests = ConfusionMatrix(n), [], [], [], []
    whole, predicted = hashlib.sha256(), np.zeros(n, dtype=np.int64)
    with tqdm(total=len(indices), desc=desc, unit="img", leave=False, disable=desc is None) as bar:
        for x, y, batch_ids in loaders.batches(split, indices, batch_size, skip_bad, skipped):
            for pred, label in zip(predict(model, x), y):
                image = ConfusionMatrix(n).update(pred, label)
                matrix = matrix + image
                per_image.append(image.sparse())
                raw = pred.astype(np.uint8).tobytes()
                whole.update(raw)
                digests.append(hashlib.sha1(raw).hexdigest()[:12])
                predicted += np.bincount(pred.ravel(), minlength=n)[:n]
            ids.extend(batch_ids)
            bar.update(len(batch_ids))
    return Evaluation(matrix, loaders.Subset(split.split, tuple(ids)), skipped, per_image, whole.hexdigest(), digests,
                      predicted.tolist())

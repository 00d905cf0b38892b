"""Run a model over a split and accumulate its confusion matrix, with a progress bar; keep the FP32 outputs of the first
images, and compare INT8's outputs with them image by image (pixel agreement, output SQNR)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ..data import loaders
from ..models.build import logits
from .sqnr import sqnr
from .metrics import ConfusionMatrix


def predict(model, x: mx.nd.NDArray) -> np.ndarray:
    return logits(model, x).argmax(axis=1).asnumpy().astype(np.int64)


COMPARED_IMAGES = 48  # the images whose FP32 outputs INT8 is compared with, at most
KEPT_VALUES = 32 << 20  # ... and at most this many logits kept (64 MB in float16: 6 images at 480 px, 21 classes)


def compared_images(num_classes: int, crop_size: int, images: int) -> int:
    """How many of an evaluation's first images keep their FP32 outputs for INT8 to be compared with."""
    return max(1, min(COMPARED_IMAGES, images, KEPT_VALUES // (num_classes * crop_size * crop_size)))


@dataclass
class Outputs:
    """A model's outputs on the first images of an evaluation: classes (uint8) and logits (float16), image after image."""

    classes: np.ndarray  # images x H x W
    logits: np.ndarray  # images x C x H x W

    def save(self, path) -> None:
        np.savez(path, classes=self.classes, logits=self.logits)

    @classmethod
    def load(cls, path) -> "Outputs":
        with np.load(path) as found:
            return cls(found["classes"], found["logits"])


def compare(reference: Outputs, index: int, out: np.ndarray) -> tuple[float, float]:
    """(percent of pixels whose class equals the reference's, output SQNR in dB against the reference's logits) of one
    image's logits `out` (C x H x W) against the reference's image `index`."""
    ref = reference.logits[index].astype(np.float64)
    agreement = 100.0 * float((out.argmax(axis=0) == reference.classes[index]).mean())
    return round(agreement, 4), round(sqnr(float((ref ** 2).sum()), float(((ref - out) ** 2).sum())), 3)


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
    cached: bool = False  # read from the evaluation cache (evaluation_cache), not evaluated in this run
    outputs: Outputs | None = None  # the first images' outputs, kept where asked (FP32's, for INT8 to be compared with)
    agreement: list = field(default_factory=list)  # per compared image: pixels whose class equals the reference's, %
    output_sqnr: list = field(default_factory=list)  # per compared image: SQNR of the logits against the reference's, dB

    def to_dict(self) -> dict:
        """Everything but the kept outputs (Outputs.save), as JSON."""
        return {"matrix": self.matrix.matrix.tolist(), "split": self.subset.split, "ids": list(self.subset.ids),
                "skipped": self.skipped, "per_image": self.per_image, "digest": self.digest,
                "image_digests": self.image_digests, "predicted": self.predicted, "agreement": self.agreement,
                "output_sqnr": self.output_sqnr}

    @classmethod
    def from_dict(cls, doc: dict, cached: bool = False, outputs: Outputs | None = None) -> "Evaluation":
        matrix = np.asarray(doc["matrix"], dtype=np.int64)
        return cls(ConfusionMatrix(len(matrix), matrix), loaders.Subset(doc["split"], tuple(doc["ids"])), doc["skipped"],
                   doc["per_image"], doc["digest"], doc["image_digests"], doc["predicted"], cached, outputs,
                   doc["agreement"], doc["output_sqnr"])


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
             desc: str | None = None, keep: int = 0, reference: Outputs | None = None) -> Evaluation:
    """pixAcc/mIoU state of `model` on the samples at `indices`, in order, kept per image too; the outputs of the first
    `keep` images kept; each of the first images compared with `reference`'s outputs (agreement, output SQNR)."""
    acc, skipped, kept, compared = Accumulator(split.num_classes, split.split), [], [], []
    with tqdm(total=len(indices), desc=desc, unit="img", leave=False, disable=desc is None) as bar:
        for x, y, batch_ids in loaders.batches(split, indices, batch_size, skip_bad, skipped):
            out = logits(model, x).asnumpy()
            for image, label, image_id in zip(out, y, batch_ids):
                if len(kept) < keep:
                    kept.append(image)
                if reference is not None and len(compared) < len(reference.classes):
                    compared.append(compare(reference, len(compared), image))
                acc.add(image.argmax(axis=0).astype(np.int64), label, image_id)
            bar.update(len(batch_ids))
    found = acc.evaluation(skipped)
    if kept:
        stacked = np.stack(kept)
        found.outputs = Outputs(stacked.argmax(axis=1).astype(np.uint8), stacked.astype(np.float16))
    found.agreement, found.output_sqnr = [a for a, _ in compared], [s for _, s in compared]
    return found

"""Pascal VOC and COCO through GluonCV's own loaders, in the seed's protocol (mode=val, batch 1).

mode=val resizes the short side to the crop size and takes the centre crop; images are normalised
with the ImageNet mean and std. The same code reads real datasets and the synthetic ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mxnet as mx
import numpy as np
from PIL import Image, ImageFile

from .catalog import NUM_CLASSES
from .errors import BadSample, MissingResource, SegcheckError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

ROOT_ENV = {"voc": "SEGCHECK_VOC_ROOT", "coco": "SEGCHECK_COCO_ROOT"}
ROOT_OPTION = {"voc": "--voc-root", "coco": "--coco-root"}
GLUONCV_DEFAULT_ROOT = {"voc": "~/.mxnet/datasets/voc", "coco": "~/.mxnet/datasets/coco"}
PREPARE = {
    "voc": "extract VOCtrainval_11-May-2012.tar so that <root>/VOC2012/ exists (GluonCV's scripts/datasets/pascal_voc.py does this)",
    "coco": "place annotations/instances_val2017.json and val2017/ from COCO 2017 under <root> (GluonCV's scripts/datasets/mscoco.py does this)",
}


class BadSampleWarning(UserWarning):
    """A sample left out under --skip-bad."""


def resolve_root(dataset: str, option: str | None, environ=os.environ) -> tuple[Path, str]:
    """Where `dataset` lives: the command-line option, then the environment variable, then GluonCV's default."""
    if option:
        return Path(option).expanduser(), ROOT_OPTION[dataset]
    if environ.get(ROOT_ENV[dataset]):
        return Path(environ[ROOT_ENV[dataset]]).expanduser(), f"${ROOT_ENV[dataset]}"
    return Path(GLUONCV_DEFAULT_ROOT[dataset]).expanduser(), "GluonCV's default root"


def _missing(dataset: str, looked_at: Path, source: str) -> MissingResource:
    return MissingResource(
        f"{dataset.upper()} data not found: looked for {looked_at} (root from {source}); "
        f"{PREPARE[dataset]}, then pass {ROOT_OPTION[dataset]} or set ${ROOT_ENV[dataset]}"
    )


def _image_transform():
    from mxnet.gluon.data.vision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def _decode(path: Path, what: str) -> Image.Image:
    """Fully decode an image; truncation is an error (importing gluoncv.data sets PIL to accept it)."""
    tolerant, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(path) as img:
            img.load()
        return img
    except FileNotFoundError:
        raise BadSample(f"{path}: {what} file is missing; restore it or remove the sample from its split") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadSample(f"{path}: cannot read {what} ({err}); re-extract the dataset or remove the sample") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant


def _voc_dataset_class():
    from gluoncv.data import VOCSegmentation
    from gluoncv.data.segbase import SegmentationDataset

    class VOCList(VOCSegmentation):
        """GluonCV's VOCSegmentation over an explicit, already validated list of samples.

        GluonCV maps split='train' to trainval.txt (which holds val); reading the list here lets
        any split file (train, val, trainval) be used with GluonCV's own sample loading.
        """

        def __init__(self, root, images, masks, crop_size):
            SegmentationDataset.__init__(self, root, "val", "val", _image_transform(), base_size=crop_size, crop_size=crop_size)
            self.images, self.masks = list(images), list(masks)

    return VOCList


@dataclass
class Split:
    """One split of a dataset, opened through GluonCV's loader, samples in a fixed order."""

    dataset: str
    root: Path
    split: str
    crop_size: int
    ids: tuple
    loader: object = field(repr=False)
    source: Path = None  # the split file or annotation json

    def __len__(self):
        return len(self.ids)

    def load(self, index: int) -> tuple[mx.nd.NDArray, np.ndarray]:
        """(normalised 3 x crop x crop image, crop x crop int64 label with -1 for ignore)."""
        if self.dataset == "voc":
            self._check_voc(index)
        else:
            self._check_coco(index)
        try:
            image, label = self.loader[index]
        except (OSError, SyntaxError, ValueError) as err:
            raise BadSample(f"{self.describe(index)}: GluonCV's loader failed ({err}); remove the sample or repair it") from None
        return image, label.asnumpy().astype(np.int64)

    def describe(self, index: int) -> str:
        if self.dataset == "voc":
            return str(self.loader.images[index])
        return f"{self.source} image id {self.ids[index]}"

    def _check_voc(self, index):
        image_path, mask_path = Path(self.loader.images[index]), Path(self.loader.masks[index])
        image = _decode(image_path, "image")
        mask = _decode(mask_path, "mask")
        if image.size != mask.size:
            raise BadSample(
                f"{mask_path}: mask is {mask.size[0]}x{mask.size[1]} but its image {image_path.name} is "
                f"{image.size[0]}x{image.size[1]}; the pair does not belong together"
            )
        values = np.unique(np.asarray(mask))
        bad = [int(v) for v in values if v >= NUM_CLASSES and v != 255]
        if bad:
            raise BadSample(f"{mask_path}: label values {bad[:10]} are outside 0..{NUM_CLASSES - 1} and 255 (ignore)")

    def _check_coco(self, index):
        meta = self.loader.coco.loadImgs(self.loader.ids[index])[0]
        image_path = Path(self.loader.root) / meta["file_name"]
        image = _decode(image_path, "image")
        if image.size != (meta["width"], meta["height"]):
            raise BadSample(
                f"{image_path}: image is {image.size[0]}x{image.size[1]} but {self.source} says "
                f"{meta['width']}x{meta['height']}; its masks would not line up"
            )


def _read_list(path: Path, dataset: str, source: str) -> list:
    if not path.is_file():
        raise _missing(dataset, path, source)
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise SegcheckError(f"{path}: cannot read the split list ({err}); restore it from the dataset archive") from None
    if not names:
        raise SegcheckError(f"{path}: the split list is empty; restore it from the dataset archive or pick another split")
    return names


def open_voc(root, split: str, crop_size: int, source: str = "the configuration") -> Split:
    root = Path(root)
    base = root / "VOC2012"
    names = _read_list(base / "ImageSets" / "Segmentation" / f"{split}.txt", "voc", source)
    images = [base / "JPEGImages" / f"{n}.jpg" for n in names]
    masks = [base / "SegmentationClass" / f"{n}.png" for n in names]
    loader = _voc_dataset_class()(str(root), [str(p) for p in images], [str(p) for p in masks], crop_size)
    return Split("voc", root, split, crop_size, tuple(names), loader, base / "ImageSets" / "Segmentation" / f"{split}.txt")


def _coco_root_with_writable_ids(root: Path, split: str, cache_dir: Path) -> Path:
    """GluonCV writes annotations/<split>_ids.mx on first use: point it at a writable copy if need be."""
    annotations = root / "annotations"
    if (annotations / f"{split}_ids.mx").is_file() or os.access(annotations, os.W_OK):
        return root
    shadow = Path(cache_dir) / "coco-ids" / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    (shadow / "annotations").mkdir(parents=True, exist_ok=True)
    for link, target in (
        (shadow / "annotations" / f"instances_{split}2017.json", annotations / f"instances_{split}2017.json"),
        (shadow / f"{split}2017", root / f"{split}2017"),
    ):
        if not link.is_symlink():
            link.symlink_to(target.resolve())
    return shadow


def open_coco(root, split: str, crop_size: int, cache_dir, source: str = "the configuration") -> Split:
    if split not in ("train", "val"):
        raise SegcheckError(f"unknown COCO split {split!r}; GluonCV's COCO loader reads 'train' (train2017) or 'val' (val2017)")
    if importlib.util.find_spec("pycocotools") is None:
        raise SegcheckError("pycocotools is not installed; install the pinned requirements (pip install -r requirements.txt)")
    from gluoncv.data import COCOSegmentation

    root = Path(root)
    ann = root / "annotations" / f"instances_{split}2017.json"
    if not ann.is_file():
        raise _missing("coco", ann, source)
    if not (root / f"{split}2017").is_dir():
        raise _missing("coco", root / f"{split}2017", source)
    readable_root = _coco_root_with_writable_ids(root, split, cache_dir)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            loader = COCOSegmentation(str(readable_root), split=split, mode="val", transform=_image_transform(),
                                      base_size=crop_size, crop_size=crop_size)
    except json.JSONDecodeError as err:
        raise SegcheckError(f"{ann}: annotation file is not valid JSON (line {err.lineno} column {err.colno}: {err.msg}); re-extract it") from None
    except (KeyError, TypeError, IndexError, AssertionError) as err:
        raise SegcheckError(f"{ann}: annotation file does not follow the COCO format ({type(err).__name__}: {err}); re-extract it") from None
    if not loader.ids:
        raise SegcheckError(f"{ann}: no image has more than 1000 labelled pixels of the VOC classes; nothing to evaluate")
    return Split("coco", root, split, crop_size, tuple(str(i) for i in loader.ids), loader, ann)


def open_split(dataset: str, root, split: str, crop_size: int, cache_dir, source: str = "the configuration") -> Split:
    if dataset == "voc":
        return open_voc(root, split, crop_size, source)
    return open_coco(root, split, crop_size, cache_dir, source)


@dataclass(frozen=True)
class Subset:
    """The images a figure was measured on: named by count and a hash of their ids."""

    split: str
    ids: tuple

    @property
    def digest(self) -> str:
        return hashlib.sha1("\n".join(self.ids).encode()).hexdigest()[:10]

    def describe(self) -> str:
        return f"{self.split}: {len(self.ids)} images, ids sha1 {self.digest}"


def first(split: Split, num_images: int | None) -> list:
    """Indices of the first `num_images` samples in the split's fixed order (all when None)."""
    if num_images is not None and num_images > len(split):
        raise SegcheckError(
            f"{split.source}: {num_images} images requested but the {split.split} split holds {len(split)}; "
            "ask for fewer with --num-images"
        )
    return list(range(len(split) if num_images is None else num_images))


def batches(split: Split, indices, batch_size: int, skip_bad: bool = False, skipped: list | None = None):
    """Yield (images NDArray B x 3 x crop x crop, labels int64 B x crop x crop, ids) in order.

    A bad sample raises BadSample naming its file; with skip_bad it is left out with a
    BadSampleWarning and its id appended to `skipped`.
    """
    images, labels, ids = [], [], []
    for index in indices:
        try:
            image, label = split.load(index)
        except BadSample as err:
            if not skip_bad:
                raise
            warnings.warn(BadSampleWarning(f"left out: {err}"))
            if skipped is not None:
                skipped.append(split.ids[index])
            continue
        images.append(image)
        labels.append(label)
        ids.append(split.ids[index])
        if len(images) == batch_size:
            yield mx.nd.stack(*images), np.stack(labels), tuple(ids)
            images, labels, ids = [], [], []
    if images:
        yield mx.nd.stack(*images), np.stack(labels), tuple(ids)


def dummy_input(batch_size: int, crop_size: int, seed: int = 0) -> mx.nd.NDArray:
    """Data-independent input for the seed's --benchmark mode: uniform in [-1, 1), fixed seed."""
    rng = np.random.default_rng(seed)
    return mx.nd.array(rng.uniform(-1.0, 1.0, size=(batch_size, 3, crop_size, crop_size)).astype(np.float32))

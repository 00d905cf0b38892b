"""GluonCV's segmentation datasets through GluonCV's own loaders, in the seed's protocol (mode=val, batch 1).

Pascal VOC, SBD (pascal_aug), COCO, ADE20K and Cityscapes. mode=val resizes the short side to the crop
size and takes the centre crop; images are normalised with the ImageNet mean and std. Samples come in a
fixed order (sorted where GluonCV lists a folder), so subsets and figures are reproducible.
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

from ..errors import BadSample, BadSampleWarning, MissingResource, SegcheckError
from .kinds import ALL, IGNORE_LABELS, DatasetKind

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def missing(kind: DatasetKind, looked_at: Path, source: str) -> MissingResource:
    return MissingResource(
        f"{kind.key} data not found: looked for {looked_at} (root from {source}); "
        f"{kind.prepare}, then pass {kind.option} or set ${kind.env}"
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


def _raw_labels(kind: DatasetKind) -> tuple[set, str]:
    """The values a mask file of `kind` may hold, and how to say so."""
    n = kind.num_classes
    if kind.key == "ade20k":
        return set(range(n + 1)), f"0..{n} (0: unlabelled)"
    if kind.key == "citys":
        return set(range(34)), "the Cityscapes label ids 0..33"
    return set(range(n)) | {255}, f"0..{n - 1} and 255"


def _listed(cls, root, images, masks, crop_size):
    """A GluonCV dataset of class `cls` over an explicit, already validated list of samples.

    GluonCV maps split='train' of VOC and SBD to trainval.txt (which holds val); reading the list here
    lets any split file be used with GluonCV's own sample loading.
    """
    from gluoncv.data.segbase import SegmentationDataset

    loader = cls.__new__(cls)
    SegmentationDataset.__init__(loader, root, "val", "val", _image_transform(), base_size=crop_size, crop_size=crop_size)
    loader.images, loader.masks = list(images), list(masks)
    return loader


@dataclass
class Split:
    """One split of a dataset, opened through GluonCV's loader, samples in a fixed order."""

    kind: DatasetKind
    root: Path
    split: str
    crop_size: int
    ids: tuple
    loader: object = field(repr=False)
    source: Path = None  # the split file, annotation json or image folder

    def __len__(self):
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return self.kind.num_classes

    def _pair(self, index: int) -> tuple[Path, Path | None]:
        masks = getattr(self.loader, "masks", None) or getattr(self.loader, "mask_paths", None)
        return Path(self.loader.images[index]), Path(masks[index])

    def load(self, index: int) -> tuple[mx.nd.NDArray, np.ndarray]:
        """(normalised 3 x crop x crop image, crop x crop int64 label with -1 or 255 for ignore)."""
        if self.kind.key == "coco":
            self._check_coco(index)
        else:
            self._check_files(index)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                image, label = self.loader[index]
        except (OSError, SyntaxError, ValueError, AssertionError, KeyError) as err:
            raise BadSample(f"{self.describe(index)}: GluonCV's loader failed ({type(err).__name__}: {err}); "
                            "remove the sample or repair it") from None
        label = label.asnumpy().astype(np.int64)
        values = np.unique(label)
        bad = [int(v) for v in values if not (0 <= v < self.num_classes or v in IGNORE_LABELS)]
        if bad:
            raise BadSample(f"{self.describe(index)}: labels {bad[:10]} lie outside the {self.num_classes} classes of {self.kind.key}")
        return image, label

    def files(self, indices) -> list:
        """The files the samples at `indices` are read from: image and mask of each (COCO: each image, and the
        annotation file, which holds every mask)."""
        if self.kind.key == "coco":
            metas = self.loader.coco.loadImgs([self.loader.ids[i] for i in indices])
            return [Path(self.loader.root) / meta["file_name"] for meta in metas] + [self.source]
        return [path for i in indices for path in self._pair(i)]

    def describe(self, index: int) -> str:
        if self.kind.key == "coco":
            return f"{self.source} image id {self.ids[index]}"
        return str(self._pair(index)[0])

    def _check_files(self, index):
        image_path, mask_path = self._pair(index)
        image = _decode(image_path, "image")
        if mask_path.suffix == ".mat":
            return  # SBD masks are MATLAB files: GluonCV's loader reads and checks them
        mask = _decode(mask_path, "mask")
        if image.size != mask.size:
            raise BadSample(
                f"{mask_path}: mask is {mask.size[0]}x{mask.size[1]} but its image {image_path.name} is "
                f"{image.size[0]}x{image.size[1]}; the pair does not belong together"
            )
        allowed, said = _raw_labels(self.kind)
        bad = [int(v) for v in np.unique(np.asarray(mask)) if int(v) not in allowed]
        if bad:
            raise BadSample(f"{mask_path}: label values {bad[:10]} are outside {said}")

    def _check_coco(self, index):
        meta = self.loader.coco.loadImgs(self.loader.ids[index])[0]
        image_path = Path(self.loader.root) / meta["file_name"]
        image = _decode(image_path, "image")
        if image.size != (meta["width"], meta["height"]):
            raise BadSample(
                f"{image_path}: image is {image.size[0]}x{image.size[1]} but {self.source} says "
                f"{meta['width']}x{meta['height']}; its masks would not line up"
            )


def _read_list(path: Path, kind: DatasetKind, source: str) -> list:
    if not path.is_file():
        raise missing(kind, path, source)
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise SegcheckError(f"{path}: cannot read the split list ({err}); restore it from the dataset archive") from None
    if not names:
        raise SegcheckError(f"{path}: the split list is empty; restore it from the dataset archive or pick another split")
    return names


def _open_listed(kind, root: Path, split, crop_size, source) -> Split:
    from gluoncv.data import VOCAugSegmentation, VOCSegmentation

    if kind.key == "pascal_voc":
        base, images, masks, ext, cls = root / "VOC2012", "JPEGImages", "SegmentationClass", ".png", VOCSegmentation
    else:
        base, images, masks, ext, cls = root / "VOCaug" / "dataset", "img", "cls", ".mat", VOCAugSegmentation
    (list_file,) = kind.layout(root, split)
    names = _read_list(list_file, kind, source)
    loader = _listed(cls, str(root), [str(base / images / f"{n}.jpg") for n in names],
                     [str(base / masks / f"{n}{ext}") for n in names], crop_size)
    return Split(kind, root, split, crop_size, tuple(names), loader, list_file)


def _open_folder(kind, root: Path, split, crop_size, source) -> Split:
    """ADE20K and Cityscapes: GluonCV lists their folders; segcheck sorts the pairs by image path."""
    from gluoncv.data import ADE20KSegmentation, CitySegmentation

    cls = ADE20KSegmentation if kind.key == "ade20k" else CitySegmentation
    folder = kind.layout(root, split)[0]
    absent = kind.absent(root, split)
    if absent is not None:
        raise missing(kind, absent, source)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            loader = cls(str(root), split=split, mode="val", transform=_image_transform(), base_size=crop_size, crop_size=crop_size)
    except (AssertionError, RuntimeError, OSError) as err:
        raise SegcheckError(f"{folder}: GluonCV's {cls.__name__} found no image with its mask ({err or type(err).__name__}); "
                            f"{kind.prepare}") from None
    mask_attr = "masks" if hasattr(loader, "masks") else "mask_paths"
    pairs = sorted(zip(loader.images, getattr(loader, mask_attr)))
    loader.images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    setattr(loader, mask_attr, masks)
    ids = tuple(Path(p).stem for p in loader.images)
    return Split(kind, root, split, crop_size, ids, loader, folder)


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


def _open_coco(kind, root: Path, split, crop_size, source, cache_dir) -> Split:
    if importlib.util.find_spec("pycocotools") is None:
        raise SegcheckError("pycocotools is not installed; install the pinned requirements (pip install -r requirements.txt)")
    from gluoncv.data import COCOSegmentation

    absent = kind.absent(root, split)
    if absent is not None:
        raise missing(kind, absent, source)
    ann = kind.layout(root, split)[0]
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
    return Split(kind, root, split, crop_size, tuple(str(i) for i in loader.ids), loader, ann)


def open_split(kind: DatasetKind, root, split: str, crop_size: int, cache_dir, source: str = "the configuration") -> Split:
    """`split` of dataset `kind` under `root`, read by GluonCV's loader at `crop_size` in mode=val (which resizes the
    short side to the crop size: GluonCV's base size acts only in its training transform, so it is the crop size here)."""
    if split not in kind.splits:
        raise SegcheckError(f"unknown {kind.key} split {split!r}; segcheck reads {', '.join(kind.splits)}")
    root = Path(root)
    if kind.key in ("pascal_voc", "pascal_aug"):
        return _open_listed(kind, root, split, crop_size, source)
    if kind.key == "coco":
        return _open_coco(kind, root, split, crop_size, source, cache_dir)
    return _open_folder(kind, root, split, crop_size, source)


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


def first(split: Split, num_images) -> list:
    """Indices of the first `num_images` samples in the split's fixed order (every one for 'all')."""
    return list(range(counted(split.source, split.split, len(split), num_images)))


def counted(source: str, split: str, held: int, num_images) -> int:
    """How many images `num_images` (a count, ALL or None: every one) asks of a split of `held` images; more than it
    holds is an error naming `source`."""
    if num_images == ALL or num_images is None:
        return held
    if num_images > held:
        raise SegcheckError(f"{source}: {num_images} images requested but the {split} split holds {held}; "
                            "ask for fewer with --num-images")
    return num_images


def shard(indices: list, shard_spec) -> list:
    """Shard K of N of `indices`: the K-th of N contiguous blocks, sizes differing by at most one.

    Contiguous blocks in shard order give back the whole list in its order, so merged figures are in image order. A
    shard that would hold no image is an error: its run would evaluate nothing.
    """
    if shard_spec is None:
        return list(indices)
    k, n = shard_spec
    part = list(indices[(k - 1) * len(indices) // n: k * len(indices) // n])
    if not part:
        raise SegcheckError(f"--shard {k}/{n} of {len(indices)} images holds none; " + (
            f"split them into at most {len(indices)} shards" if len(indices) else "there are no images to split"))
    return part


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

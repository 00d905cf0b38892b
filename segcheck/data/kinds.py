"""What segcheck knows about datasets by name: GluonCV's segmentation datasets, their splits, classes and roots."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..errors import SegcheckError

IGNORE_LABELS = (-1, 255)  # the labels no metric counts: VOC's 255 border, -1 after GluonCV's mask transform
ALL = "all"  # --num-images all: every image of the split, whatever the tier's default


def choose(kind: str, value: str, allowed) -> str:
    if value not in allowed:
        raise SegcheckError(f"unknown {kind} {value!r}; choose one of: {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class DatasetKind:
    """One of GluonCV's segmentation datasets: its folder, how to lay it out, its splits and classes."""

    key: str  # gluoncv.data.get_segmentation_dataset's name
    marker: str  # pytest marker of its cases
    option: str  # the option naming its root
    env: str  # the environment variable naming its root
    default_root: str  # GluonCV's default folder
    acronym: str  # its suffix in GluonCV's model names (fcn_resnet101_voc)
    splits: tuple  # the splits segcheck reads
    prepare: str  # how to lay the folder out

    @cached_property
    def classes(self) -> tuple:
        """Class names in label order, from GluonCV's own dataset class."""
        from gluoncv.data import datasets

        return tuple(datasets[self.key].CLASSES)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def layout(self, root, split: str) -> tuple:
        """The files and folders split `split` needs under `root`, in the order they are looked for: the one
        description of each layout, which the loaders read, `plan` checks and the synthetic writer lays out."""
        root = Path(root)
        if self.key == "pascal_voc":
            return (root / "VOC2012" / "ImageSets" / "Segmentation" / f"{split}.txt",)
        if self.key == "pascal_aug":
            return (root / "VOCaug" / "dataset" / f"{split}.txt",)
        if self.key == "coco":
            return (root / "annotations" / f"instances_{split}2017.json", root / f"{split}2017")
        if self.key == "ade20k":
            return (root / "ADEChallengeData2016" / "images" / ("training" if split == "train" else "validation"),)
        return tuple(root / "leftImg8bit" / part for part in (("train", "val") if split == "trainval" else (split,)))

    def absent(self, root, split: str) -> Path | None:
        """The first file (a name with a suffix) or folder of split `split`'s layout missing under `root`, or None."""
        return next((path for path in self.layout(root, split) if not (path.is_file() if path.suffix else path.is_dir())), None)


DATASETS = {d.key: d for d in (
    DatasetKind("pascal_voc", "voc", "--voc-root", "SEGCHECK_VOC_ROOT", "~/.mxnet/datasets/voc", "voc",
                ("train", "val", "trainval"),
                "extract VOCtrainval_11-May-2012.tar so that <root>/VOC2012/ exists (segcheck fetch voc, or GluonCV's "
                "scripts/datasets/pascal_voc.py)"),
    DatasetKind("pascal_aug", "pascal_aug", "--pascal-aug-root", "SEGCHECK_PASCAL_AUG_ROOT", "~/.mxnet/datasets/voc",
                "voc", ("train", "val", "trainval"),
                "extract the SBD benchmark so that <root>/VOCaug/dataset/{img,cls,train.txt,val.txt} exist (GluonCV's "
                "scripts/datasets/pascal_voc.py)"),
    DatasetKind("coco", "coco", "--coco-root", "SEGCHECK_COCO_ROOT", "~/.mxnet/datasets/coco", "coco", ("train", "val"),
                "place annotations/instances_val2017.json and val2017/ from COCO 2017 under <root> (segcheck fetch coco, "
                "or GluonCV's scripts/datasets/mscoco.py)"),
    DatasetKind("ade20k", "ade20k", "--ade20k-root", "SEGCHECK_ADE20K_ROOT", "~/.mxnet/datasets/ade", "ade",
                ("train", "val"),
                "extract ADEChallengeData2016.zip so that <root>/ADEChallengeData2016/{images,annotations}/ exist "
                "(GluonCV's scripts/datasets/ade20k.py)"),
    DatasetKind("citys", "citys", "--citys-root", "SEGCHECK_CITYS_ROOT", "~/.mxnet/datasets/citys", "citys",
                ("train", "val", "trainval"),
                "extract leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip so that <root>/leftImg8bit/ and "
                "<root>/gtFine/ exist (GluonCV's scripts/datasets/cityscapes.py)"),
)}
ALIASES = {"voc": "pascal_voc", "mscoco": "coco", "ade": "ade20k", "cityscapes": "citys", **{k: k for k in DATASETS}}
BY_ACRONYM = {"voc": "pascal_voc", "coco": "coco", "ade": "ade20k", "citys": "citys"}


def dataset(name: str) -> DatasetKind:
    """A dataset by GluonCV's name or a common alias (voc, pascal_voc, coco, ade20k, citys, ...)."""
    return DATASETS[ALIASES[choose("dataset", name, tuple(ALIASES))]]

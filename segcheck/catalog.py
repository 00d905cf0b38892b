"""What segcheck knows by name: GluonCV's segmentation datasets, and the networks it can build or import."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import SegcheckError

PRECISIONS = ("fp32", "int8")
# Architectures segcheck can initialise from a seed and fit on its synthetic data (the synthetic tier).
SEEDED_ARCHITECTURES = ("fcn", "psp", "deeplab")
SEEDED_BACKBONES = ("resnet50", "resnet101", "resnet152")
# get_segmentation_model's networks (GluonCV 0.10), and the backbones its get_backbone offers.
SEGMENTATION_MODELS = ("fcn", "psp", "deeplab", "deeplabplus", "deeplabplusv3b", "icnet", "fastscnn", "danet")
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnest50", "resnest101", "resnest200", "resnest269")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


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


def zoo_names() -> tuple:
    """GluonCV model-zoo names of segmentation networks with floating-point weights."""
    from gluoncv.model_zoo.model_zoo import _models

    prefixes = tuple(f"{m}_" for m in SEGMENTATION_MODELS)
    return tuple(sorted(n for n in _models if n.startswith(prefixes) and not n.endswith("_int8")))


@dataclass(frozen=True)
class Network:
    """A network to gate: a model-zoo name, a get_segmentation_model pair, or an exported FP32 model.

    `arch` is the architecture (fcn, psp, ...) or "export"; `dataset` the GluonCV dataset whose classes
    the classifier predicts (empty for an export, which carries its own).
    """

    arch: str
    backbone: str = ""
    dataset: str = ""
    zoo: str = ""
    export: Path | None = None

    @property
    def name(self) -> str:
        if self.export is not None:
            return self.export.name
        return self.zoo or f"{self.arch}_{self.backbone}_{DATASETS[self.dataset].acronym}"

    @property
    def store_name(self) -> str:
        """The name of its weights in GluonCV's model store."""
        return self.name

    @property
    def seedable(self) -> bool:
        return self.arch in SEEDED_ARCHITECTURES and self.backbone in SEEDED_BACKBONES and self.dataset in ("pascal_voc", "coco")

    @classmethod
    def from_zoo(cls, name: str) -> "Network":
        if name not in zoo_names():
            raise SegcheckError(f"unknown model-zoo network {name!r}; GluonCV's segmentation networks are: {', '.join(zoo_names())}")
        parts = name.split("_")
        if parts[-1] not in BY_ACRONYM:
            raise SegcheckError(f"model-zoo network {name!r} is for a dataset segcheck does not read ({parts[-1]}); "
                                f"choose one for {', '.join(sorted(BY_ACRONYM))}")
        return cls(parts[0], "_".join(parts[1:-1]), BY_ACRONYM[parts[-1]], zoo=name)

    @classmethod
    def from_parts(cls, model: str, backbone: str, dataset_name: str) -> "Network":
        choose("model", model, SEGMENTATION_MODELS)
        choose("backbone", backbone, BACKBONES)
        return cls(model, backbone, dataset(dataset_name).key)

    @classmethod
    def from_export(cls, prefix) -> "Network":
        return cls("export", export=Path(prefix))


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SegcheckError(f"{what} {name!r} must start with a letter or digit and hold only letters, digits and _ . + -")
    return name


def seed_networks() -> tuple:
    """The tutorial's six models: ResNet-101 FCN, PSPNet and DeepLabV3 on VOC and COCO."""
    return tuple(Network(a, "resnet101", d) for a in SEEDED_ARCHITECTURES for d in ("pascal_voc", "coco"))

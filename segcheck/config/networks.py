"""What segcheck knows about networks by name: GluonCV's segmentation models and backbones, the networks it
can build, seed or import, and the names a model may take."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..data.kinds import BY_ACRONYM, DATASETS, choose, dataset
from ..errors import SegcheckError

# Architectures segcheck can initialise from a seed and fit on its synthetic data (the synthetic tier).
SEEDED_ARCHITECTURES = ("fcn", "psp", "deeplab")
SEEDED_BACKBONES = ("resnet50", "resnet101", "resnet152")
# get_segmentation_model's networks (GluonCV 0.10), and the backbones its get_backbone offers.
SEGMENTATION_MODELS = ("fcn", "psp", "deeplab", "deeplabplus", "deeplabplusv3b", "icnet", "fastscnn", "danet")
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnest50", "resnest101", "resnest200", "resnest269")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def zoo_names() -> tuple:
    """GluonCV model-zoo names of segmentation networks with floating-point weights."""
    from gluoncv.model_zoo.model_zoo import _models

    prefixes = tuple(f"{m}_" for m in SEGMENTATION_MODELS)
    return tuple(sorted(n for n in _models if n.startswith(prefixes) and not n.endswith("_int8")))


def classes_mismatch(network: "Network", kind) -> str | None:
    """Why `network` cannot be evaluated on dataset `kind` (its classifier predicts another number of classes), or None."""
    if network.dataset and network.dataset != kind.key and DATASETS[network.dataset].num_classes != kind.num_classes:
        return f"{network.name} predicts {DATASETS[network.dataset].num_classes} classes but {kind.key} has {kind.num_classes}"
    return None


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

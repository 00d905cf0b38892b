"""The models and datasets segcheck knows by name, and how their names are spelled."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SegcheckError

ARCHITECTURES = ("fcn", "psp", "deeplab")
BACKBONES = ("resnet50", "resnet101")
DATASETS = ("voc", "coco")
PRECISIONS = ("fp32", "int8")

# The seed's --dataset accepts GluonCV's long names too.
DATASET_ALIASES = {"voc": "voc", "pascal_voc": "voc", "coco": "coco", "mscoco": "coco"}
# GluonCV's dataset keys, used by the model constructors.
GLUONCV_DATASET = {"voc": "pascal_voc", "coco": "coco"}

VOC_CLASSES = (
    "background", "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorcycle", "person", "potted-plant", "sheep", "sofa", "train", "tv",
)
NUM_CLASSES = len(VOC_CLASSES)


def _choose(kind: str, value: str, allowed) -> str:
    if value not in allowed:
        raise SegcheckError(f"unknown {kind} {value!r}; choose one of: {', '.join(allowed)}")
    return value


@dataclass(frozen=True, order=True)
class ModelSpec:
    """One architecture x backbone x dataset, named as GluonCV names it (fcn_resnet101_voc)."""

    arch: str
    backbone: str
    dataset: str

    def __post_init__(self):
        _choose("model", self.arch, ARCHITECTURES)
        _choose("backbone", self.backbone, BACKBONES)
        _choose("dataset", self.dataset, DATASETS)

    @property
    def name(self) -> str:
        return f"{self.arch}_{self.backbone}_{self.dataset}"

    @classmethod
    def parse(cls, name: str) -> "ModelSpec":
        parts = name.split("_")
        if len(parts) != 3:
            raise SegcheckError(
                f"unknown model name {name!r}; expected <model>_<backbone>_<dataset> such as fcn_resnet101_voc"
            )
        return cls(*parts)


def dataset_key(name: str) -> str:
    """Normalise a dataset name from the command line (voc, pascal_voc, coco)."""
    return DATASET_ALIASES[_choose("dataset", name, tuple(DATASET_ALIASES))]


# The seed's six models: ResNet-101 for the three architectures on both datasets.
SEED_MODELS = tuple(ModelSpec(a, "resnet101", d) for a in ARCHITECTURES for d in DATASETS)

"""How a run measures, as plain data importable without MXNet: the calibration recipe (CalibRecipe), the seeded
fit (FitRecipe), the crops the architectures take, and the mIoU conventions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from ..errors import SegcheckError

# Two mIoU conventions. "gluoncv": mean over all classes, a class absent from both prediction and
# label counting 0 (gluoncv.utils.metrics.SegmentationMetric, the seed's table). "present": mean over
# classes whose union is non-zero (mmsegmentation, torchmetrics >= 1.0, OpenVINO accuracy checker).
CONVENTIONS = ("gluoncv", "present")
# The tiers: seeded models on generated data, or the configured weights and data. A configuration that names no
# tier is for the real tier (a team's own models); the segcheck command without weights flags runs the synthetic one.
TIERS = ("synthetic", "real")
PEERS = ("onnxruntime", "openvino")  # the runtimes a model may also be gated on, exported to ONNX (segcheck.peers)
DEFAULT_TIER = "real"

CALIB_MODES = ("naive", "entropy", "none")
QUANTIZED_DTYPES = ("auto", "int8", "uint8")

# Layers kept in FP32 per architecture, as dotted Gluon child paths. Empty, as in the seed's test.py:
# measured on the synthetic tier, excluding the classifier changed INT8 accuracy by less than the noise.
EXCLUDE_LAYERS = {"fcn": (), "psp": (), "deeplab": ()}


@dataclass(frozen=True)
class CalibRecipe:
    """The seed's default is naive on 5 batches x 32 images."""

    mode: str = "naive"
    dtype: str = "auto"
    num_batches: int = 5
    batch_size: int = 32
    split: str = "train"  # disjoint from the evaluated val images; "val" reproduces the seed
    exclude: tuple = field(default=())  # extra dotted layer paths kept in FP32
    start: int = 0  # the split's first image calibrated on: other images of the same distribution from another start

    def __post_init__(self):
        if self.mode not in CALIB_MODES:
            raise SegcheckError(f"unknown calibration mode {self.mode!r}; choose one of {', '.join(CALIB_MODES)}")
        if self.dtype not in QUANTIZED_DTYPES:
            raise SegcheckError(f"unknown quantized dtype {self.dtype!r}; choose one of {', '.join(QUANTIZED_DTYPES)}")
        for name in ("num_batches", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SegcheckError(f"calibration {name} must be a positive integer, got {value!r}")
        if isinstance(self.start, bool) or not isinstance(self.start, int) or self.start < 0:
            raise SegcheckError(f"calibration start must be a non-negative integer, got {self.start!r}")

    @property
    def num_examples(self) -> int:
        return 0 if self.mode == "none" else self.num_batches * self.batch_size

    @property
    def images(self) -> range:
        """The indices, in the calibration split, of the images calibrated on."""
        return range(self.start, self.start + self.num_examples)

    def check_fits(self, source: str, held: int) -> None:
        """The images calibrated on are within a calibration split of `held` images (`source` names it); else an error
        saying which option to lower."""
        if self.images.stop > held:
            at = f" from image {self.start}" if self.start else ""
            raise SegcheckError(
                f"{source}: calibration needs {self.num_examples} images ({self.num_batches} batches x "
                f"{self.batch_size}){at} but the {self.split} split holds {held}; lower --calib-batches, "
                "--calib-batch-size or --calib-start"
            )

    def label(self) -> str:
        """The whole recipe in one line, the key of its INT8 rows and golden records: mode/dtype/BxN/split, @start where
        it does not start at the split's first image, and the layers kept in FP32 where there are any
        (naive/auto/2x16/train@32/exclude=head.block.4)."""
        head = f"none/{self.dtype}" if self.mode == "none" else (
            f"{self.mode}/{self.dtype}/{self.num_batches}x{self.batch_size}/{self.split}" + (f"@{self.start}" if self.start else ""))
        return head + (f"/exclude={'+'.join(sorted(self.exclude))}" if self.exclude else "")

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FitRecipe:
    """How the synthetic tier's seeded models are initialised and fitted (models.fit), and the numerics the fit runs
    under: oneDNN capped at `isa`, `threads` OpenMP threads and OpenBLAS's `blas` kernels on one thread, the same on
    every x86 machine with AVX2, so that the fitted weights, like a weights file, do not depend on the machine."""

    seed: int = 0
    crop_size: int = 64  # fitted at this crop whatever the evaluation crop: weights do not depend on it
    num_images: int = 48
    samples_per_image: int = 128
    residual_gamma: float = 0.05
    ridge: float = 0.1
    isa: str = "avx2"
    threads: int = 2
    blas: str = "Haswell"

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:8]


OUTPUT_STRIDE = 8  # GluonCV's dilated ResNet backbones
MIN_CROP = 32


def check_crop(crop_size) -> int:
    """A crop the architectures can take: GluonCV's heads derive feature sizes as crop // 8."""
    if isinstance(crop_size, bool) or not isinstance(crop_size, int):
        raise SegcheckError(f"crop size must be an integer number of pixels, got {crop_size!r}")
    if crop_size < MIN_CROP or crop_size % OUTPUT_STRIDE:
        raise SegcheckError(
            f"crop size {crop_size} cannot be taken: GluonCV's PSP and DeepLab heads assume feature maps of "
            f"crop/{OUTPUT_STRIDE} pixels, so use a multiple of {OUTPUT_STRIDE} of at least {MIN_CROP} (e.g. 64 or 480)"
        )
    return crop_size

"""One configuration object for a run, passed down explicitly; tier defaults live here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import SegcheckError
from .models.build import check_crop, mxnet_home
from .models.cache import default_dir
from .models.fit import FitRecipe
from .models.quantize import CalibRecipe
from .synthetic import SyntheticSpec

TIERS = ("synthetic", "real")

# Sized for a 2-core machine: the synthetic gate must run cold within 10 minutes. The real tier keeps
# the seed's protocol: 480x480, every val image, naive calibration on 5 batches x 32 images.
TIER_DEFAULTS = {
    "synthetic": dict(crop_size=64, num_images=48, calib=CalibRecipe(num_batches=2, batch_size=16)),
    "real": dict(crop_size=480, num_images=None, calib=CalibRecipe()),
}


def _defaults(tier: str) -> dict:
    if tier not in TIERS:
        raise SegcheckError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    return TIER_DEFAULTS[tier]


def calib_for(tier: str, **given) -> CalibRecipe:
    """The tier's calibration recipe with the fields given (not None) replaced."""
    return replace(_defaults(tier)["calib"], **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class RunConfig:
    tier: str = "synthetic"
    crop_size: int = 64
    num_images: int | None = 48  # None: the whole val split
    batch_size: int = 1
    calib: CalibRecipe = field(default_factory=CalibRecipe)
    fit: FitRecipe = field(default_factory=FitRecipe)
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    cache_dir: Path = field(default_factory=default_dir)
    mxnet_home: Path = field(default_factory=mxnet_home)
    voc_root: str | None = None
    coco_root: str | None = None
    skip_bad: bool = False

    def __post_init__(self):
        _defaults(self.tier)
        check_crop(self.crop_size)
        if self.num_images is not None and (isinstance(self.num_images, bool) or self.num_images < 1):
            raise SegcheckError(f"--num-images must be a positive integer, got {self.num_images!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SegcheckError(f"--batch-size must be a positive integer, got {self.batch_size!r}")

    @classmethod
    def for_tier(cls, tier: str = "synthetic", **overrides) -> "RunConfig":
        """The tier's defaults, with any field given explicitly (not None) taking precedence."""
        values = {**_defaults(tier), **{k: v for k, v in overrides.items() if v is not None}}
        return cls(tier=tier, **values)

    def with_(self, **changes) -> "RunConfig":
        return replace(self, **changes)

    def setting(self) -> dict:
        """What a baseline row depends on besides the environment (compared for equality)."""
        common = {"mode": "val", "crop_size": self.crop_size, "batch_size": self.batch_size,
                  "num_images": "all" if self.num_images is None else self.num_images}
        if self.tier == "real":
            return common
        return {**common, "calibration": self.calib.label(), "seed": self.fit.seed,
                "fit": self.fit.digest(), "data": self.synthetic.digest()}

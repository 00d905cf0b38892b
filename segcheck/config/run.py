"""A run's configuration (RunConfig), and each configured model resolved against it (ModelConfig).

Precedence, field by field: a command-line option, then the model's configuration entry, then the tier's
default. The synthetic tier replaces weights and data by seeded models fitted on generated datasets; the
real tier uses what the configuration names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data.kinds import ALL, DATASETS, DatasetKind
from ..data.synthetic import SyntheticSpec
from ..errors import MissingResource, SegcheckError
from .networks import Network
from .options import ROOTS, GateOptions
from .project import STORE, ModelEntry
from .recipes import TIERS, CalibRecipe, FitRecipe, check_crop


def mxnet_home() -> Path:
    """$MXNET_HOME, else ~/.mxnet: where GluonCV's model store keeps pretrained weights."""
    return Path(os.environ.get("MXNET_HOME", "~/.mxnet")).expanduser()


def default_dir() -> Path:
    """$SEGCHECK_CACHE_DIR, else the user's cache folder (~/.cache/segcheck on Linux)."""
    import platformdirs

    return Path(os.environ.get("SEGCHECK_CACHE_DIR") or platformdirs.user_cache_dir("segcheck")).expanduser()


# Sized for a 2-core machine: the synthetic gate must run cold within minutes. The real tier keeps
# the seed's protocol: 480x480, every val image, naive calibration on 5 batches x 32 images.
TIER_DEFAULTS = {
    "synthetic": dict(crop_size=64, num_images=48, calib=CalibRecipe(num_batches=2, batch_size=16)),
    "real": dict(crop_size=480, num_images=ALL, calib=CalibRecipe()),
}
# CalibRecipe field <- option dest
CALIB_OPTIONS = {"mode": "calib_mode", "dtype": "calib_dtype", "num_batches": "calib_batches",
                 "batch_size": "calib_batch_size", "split": "calib_split", "start": "calib_start"}


def tier_defaults(tier: str) -> dict:
    if tier not in TIERS:
        raise SegcheckError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    return TIER_DEFAULTS[tier]


@dataclass(frozen=True)
class RunConfig:
    """What one run applies to every model: the tier, the options given (None: not given), caches."""

    tier: str
    crop_size: int | None = None
    num_images: int | str | None = None  # ALL: the whole split
    batch_size: int = 1
    shard: tuple | None = None  # (K, N): evaluate shard K of N of the images
    calib: dict = field(default_factory=dict)  # CalibRecipe fields given as options
    roots: dict = field(default_factory=dict)  # dataset key -> root given as an option
    cache_dir: Path = field(default_factory=default_dir)
    mxnet_home: Path = field(default_factory=mxnet_home)
    skip_bad: bool = False
    eval_cache: bool = True  # evaluations read from the cache where the key matches (measure.evaluation_cache)
    case_timeout: float | None = None  # seconds a case's backend work may take (None: scaled to the work, guard.limit)
    # --peer: the peer runtimes of every model (None: each model's configured ones); which peers a run adds changes none
    # of a model's parts, so two runs that differ only there hand their models over to each other (compare=False)
    peers: tuple | None = field(default=None, compare=False)
    fit: FitRecipe = field(default_factory=FitRecipe)
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)

    def __post_init__(self):
        tier_defaults(self.tier)
        if self.crop_size is not None:
            check_crop(self.crop_size)
        if self.num_images not in (None, ALL) and (isinstance(self.num_images, bool) or not isinstance(self.num_images, int) or self.num_images < 1):
            raise SegcheckError(f"--num-images must be a positive integer or 'all', got {self.num_images!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SegcheckError(f"--batch-size must be a positive integer, got {self.batch_size!r}")

    @classmethod
    def from_options(cls, options: GateOptions, tier: str) -> "RunConfig":
        """A run from the options given (None where not given)."""
        cache = options.segcheck_cache
        return cls(
            tier=tier, crop_size=options.crop_size,
            num_images=options.num_images, batch_size=options.batch_size or 1, shard=options.shard,
            calib={f: getattr(options, o) for f, o in CALIB_OPTIONS.items() if getattr(options, o) is not None},
            roots={key: Path(getattr(options, dest)).expanduser() for dest, key in ROOTS.items() if getattr(options, dest)},
            cache_dir=Path(cache).expanduser() if cache else default_dir(), skip_bad=bool(options.skip_bad),
            eval_cache=not options.no_eval_cache, peers=options.peer, case_timeout=options.case_timeout,
        )

    def with_(self, **changes) -> "RunConfig":
        return replace(self, **changes)


@dataclass(frozen=True)
class Weights:
    """Where FP32 weights come from: GluonCV's model store, a params file, an export, or a seeded fit."""

    kind: str  # store | params | export | seeded
    path: Path | None = None

    def describe(self) -> str:
        return {"store": "GluonCV's model store", "seeded": "seeded and fitted on the synthetic tier"}.get(self.kind, str(self.path))


@dataclass(frozen=True)
class ModelConfig:
    """One model of a run, everything resolved: the object the pipeline, the cases and the gate are given."""

    name: str
    network: Network
    weights: Weights
    dataset: str  # GluonCV dataset key
    root: Path | None  # None: the synthetic tier's generated data
    root_source: str
    split: str
    crop_size: int
    num_images: int | str
    calib: CalibRecipe | None  # None when the INT8 side is a shipped export
    int8_export: Path | None
    run: RunConfig
    tolerances: dict = field(default_factory=dict)
    min_speedup: dict = field(default_factory=dict)
    peers: tuple = field(default=(), compare=False)  # the peer runtimes it is also gated on (--peer, else its configuration's)

    @property
    def tier(self) -> str:
        return self.run.tier

    @property
    def kind(self) -> DatasetKind:
        return DATASETS[self.dataset]

    @property
    def arch(self) -> str:
        return self.network.arch

    def with_(self, **changes) -> "ModelConfig":
        return replace(self, **changes)

    def setting(self) -> dict:
        """What a baseline row's FP32 figures depend on besides the environment (compared for equality). The INT8 figures
        depend on the INT8 key too (the recipe, or the shipped file: cases.ModelCase.int8_key), which is kept apart, so
        that a changed recipe compares FP32 exactly and INT8 with the recipe it replaces."""
        common = {"mode": "val", "crop_size": self.crop_size, "batch_size": self.run.batch_size, "num_images": self.num_images}
        if self.split != "val":
            common["split"] = self.split
        if self.tier == "real":
            return common
        return {**common, "seed": self.run.fit.seed, "fit": self.run.fit.digest(), "data": self.run.synthetic.digest()}


def resolve_root(kind: DatasetKind, option: Path | None, configured: Path | None, config_file: str = "the configuration",
                 environ=os.environ) -> tuple[Path, str]:
    """(root, where it came from): the option, then the configuration, then the environment, then GluonCV's default."""
    if option:
        return Path(option), kind.option
    if configured:
        return Path(configured), config_file
    if environ.get(kind.env):
        return Path(environ[kind.env]).expanduser(), f"${kind.env}"
    return Path(kind.default_root).expanduser(), "GluonCV's default root"


def _recipe(entry: ModelEntry, run: RunConfig) -> CalibRecipe | None:
    """The entry's calibration recipe in `run`; a --calib-split its dataset does not have is refused here, not first
    when the calibration images are read (the configuration's int8.split is checked by its loader)."""
    if entry.int8_export is not None:
        return None
    split, splits = run.calib.get("split"), DATASETS[entry.data.name].splits
    if split is not None and split not in splits:
        raise SegcheckError(f"--calib-split {split!r}: {entry.data.name} has the splits {', '.join(splits)}; choose one")
    return replace(tier_defaults(run.tier)["calib"], **{**entry.recipe, **run.calib})


def weights_of(entry: ModelEntry) -> Weights:
    """The weights the entry names: its export's, GluonCV's model store, or a params file."""
    if entry.network.export is not None:
        return Weights("export", entry.network.export)
    return Weights("store") if entry.weights == STORE else Weights("params", entry.weights)


def configure(entry: ModelEntry, run: RunConfig, weights: Weights, root: Path | None, root_source: str) -> ModelConfig:
    """The model `entry` in `run` with the given weights and data root (None: the synthetic tier's data)."""
    defaults = tier_defaults(run.tier)
    crop = check_crop(run.crop_size or entry.data.crop_size or defaults["crop_size"])
    return ModelConfig(
        name=entry.name, network=entry.network, weights=weights, dataset=entry.data.name, root=root,
        root_source=root_source, split=entry.data.split, crop_size=crop,
        num_images=run.num_images or entry.data.num_images or defaults["num_images"],
        calib=_recipe(entry, run), int8_export=entry.int8_export, run=run,
        tolerances=entry.tolerances, min_speedup=entry.min_speedup,
        peers=run.peers if run.peers is not None else entry.peers,
    )


def resolve(entry: ModelEntry, run: RunConfig, config_file: str = "the configuration") -> ModelConfig:
    """The model `entry` in `run`; MissingResource where the synthetic tier has no stand-in for it."""
    kind = DATASETS[entry.data.name]
    if run.tier == "synthetic":
        own = [what for what, mine in (("weights file", isinstance(entry.weights, Path)), ("dataset root", entry.data.root),
                                      ("INT8 export", entry.int8_export), ("exported network", entry.network.export)) if mine]
        if own or not entry.network.seedable or kind.key not in ("pascal_voc", "coco"):
            why = f"its own {', '.join(own)}" if own else "no seeded stand-in (fcn/psp/deeplab on ResNet, VOC or COCO only)"
            raise MissingResource(f"{entry.name}: the synthetic tier has {why}; run it with --tier real")
        return configure(entry, run, Weights("seeded"), None, "the synthetic tier")
    root, source = resolve_root(kind, run.roots.get(kind.key), entry.data.root, config_file)
    return configure(entry, run, weights_of(entry), root, source)


def resolve_all(entries, run: RunConfig, config_file: str = "the configuration") -> dict:
    """name -> ModelConfig, or the MissingResource that skips it, for every entry in `run`."""
    models = {}
    for entry in entries:
        try:
            models[entry.name] = resolve(entry, run, config_file)
        except MissingResource as err:
            models[entry.name] = err
    return models

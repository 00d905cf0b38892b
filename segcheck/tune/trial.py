"""One trial of `segcheck tune`: a calibration recipe calibrated, then judged as the gate judges INT8 (the drop below
FP32 with its interval, the class drop, the per-layer SQNR floor) on tuning images disjoint from the gate's, with its
latency measured beside FP32's in the same process. Trials are cached, so a rerun or a larger budget resumes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import atomic
from ..config import isa
from ..config.recipes import CalibRecipe
from ..config.run import ModelConfig
from ..config.tolerances import Tolerances
from ..data import loaders
from ..errors import SegcheckError
from ..gate import verdicts
from ..gate.checks import FAILING, PASS
from ..measure import calibration, guard, latency, layers, stats
from ..measure.environment import threads
from ..measure.evaluate import evaluate
from ..models import build, cache, pipeline, quantize

FORMAT = 1  # of a cached trial: a change to how trials are judged makes the old ones stale
LAYER_IMAGES = 8  # tuning images the per-layer SQNR is measured on (the gate's per-layer check takes 8 too)
TIMED = 10  # timed forward passes of each precision per trial, after 2 untimed


@dataclass(frozen=True)
class Judged:
    """One check of a trial, as the gate would judge it."""

    check: str  # int8-drop, int8-class-drop, int8-layers
    status: str
    message: str


@dataclass(frozen=True)
class Trial:
    """A recipe judged on the tuning images: its figures, verdicts and speed; `why` says why it was tried."""

    recipe: dict  # CalibRecipe.as_dict()
    label: str
    why: str
    drop_pixacc: float  # FP32 - INT8, points (a fall is positive)
    drop_miou: float
    miou_interval: tuple  # (low, high) of the mIoU drop at the gate's confidence
    class_drop: float  # the largest per-class IoU drop judged, points
    worst_layer: str
    worst_sqnr_db: float
    sqnr: dict  # stable layer name -> SQNR (dB) over the layer images
    upstream: dict  # stable layer name -> the quantized layers feeding it
    fp32_ms: float
    int8_ms: float
    verdicts: tuple  # Judged
    fp32_convs: int  # convolutions left in FP32
    cached: bool = field(default=False, compare=False)

    @property
    def passed(self) -> bool:
        return all(v.status not in FAILING for v in self.verdicts)

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms else 0.0

    @property
    def calib(self) -> CalibRecipe:
        return CalibRecipe(**{**self.recipe, "exclude": tuple(self.recipe["exclude"])})

    def failing(self) -> list:
        return [v for v in self.verdicts if v.status in FAILING]

    def excess(self, tol: Tolerances) -> float:
        """How far the trial is from passing: each judged figure's excess over its tolerance, relative to it, summed
        (0 for a trial that passes); what the search minimises."""
        parts = ((self.drop_pixacc, tol.int8_drop_pixacc_points), (self.drop_miou, tol.int8_drop_miou_points),
                 (self.class_drop, tol.int8_drop_class_iou_points),
                 (tol.sqnr_floor_db - self.worst_sqnr_db + abs(tol.sqnr_floor_db), abs(tol.sqnr_floor_db) or 1.0))
        return sum(max(0.0, value / limit - 1.0) for value, limit in parts if limit > 0)

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc.pop("cached")
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> "Trial":
        return cls(**{**doc, "miou_interval": tuple(doc["miou_interval"]),
                      "verdicts": tuple(Judged(**v) for v in doc["verdicts"]), "cached": True})


@dataclass
class Bench:
    """What every trial of one model shares: the FP32 model and its evaluation on the tuning images, the images the
    layers are compared on, the tolerances and where trials are cached."""

    config: ModelConfig
    tolerances: Tolerances
    convention: str
    split: loaders.Split
    indices: list
    fp32: object = None
    fp32_evaluation: object = None
    layer_images: list = field(default_factory=list)
    paths: dict = field(default_factory=dict)  # stable layer name -> dotted Gluon path (what a recipe excludes)

    @property
    def images(self) -> loaders.Subset:
        return loaders.Subset(self.split.split, tuple(self.split.ids[i] for i in self.indices))

    def folder(self) -> Path:
        return self.config.run.cache_dir / "tune" / self.config.name

    def key(self, recipe: CalibRecipe) -> str:
        """The cache key of a trial: everything its figures depend on."""
        _, fp32_digest = pipeline.fp32_weights(self.config)
        fields = {"format": FORMAT, "model": self.config.network.name, "fp32": fp32_digest, "crop": self.config.crop_size,
                  "recipe": recipe.as_dict(), "images": self.images.digest,
                  "files": atomic.files_digest(self.split.files(self.indices)), "convention": self.convention,
                  "tolerances": asdict(self.tolerances), "versions": cache.versions(), "isa": isa.effective_level(),
                  "threads": threads()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:20]


def tuning_indices(split: loaders.Split, count: int, calibrated: range) -> list:
    """The last `count` images of the calibration split: never calibrated on by the recipes tried, never the gate's."""
    if count > len(split):
        raise SegcheckError(f"{split.source}: tuning needs {count} images of the {split.split} split, which holds "
                            f"{len(split)}; lower --tune-images")
    indices = list(range(len(split) - count, len(split)))
    if calibrated.stop > indices[0]:
        raise SegcheckError(f"{split.source}: the recipe calibrates on images {calibrated.start}-{calibrated.stop - 1} of "
                            f"the {split.split} split, which overlap the last {count} that tuning judges on; lower "
                            "--tune-images or calibrate on fewer images")
    return indices


def prepare(config: ModelConfig, tolerances: Tolerances, convention: str, count: int) -> Bench:
    """The shared part of every trial: the FP32 model, evaluated once on the tuning images."""
    recipe = config.calib
    split = pipeline.open_split(config, recipe.split)
    if recipe.split == config.split:
        raise SegcheckError(f"{config.name}: the recipe calibrates on the {recipe.split} split, which the gate evaluates: "
                            "tuning on it would choose a recipe on the gate's own images; calibrate on another split "
                            "(int8.split, --calib-split train)")
    bench = Bench(config, tolerances, convention, split, tuning_indices(split, count, recipe.images))
    net = build.build(config.network, config.crop_size, config.base_size)
    bench.paths = {calibration.stable(name): path for path, name in quantize.conv_names(net).items()}
    unknown = [path for path in recipe.exclude if path not in bench.paths.values()]
    if unknown:
        raise SegcheckError(f"{config.name}: int8.exclude names {unknown[0]!r}, which is no convolution of "
                            f"{config.network.name}; name one by its dotted Gluon path, such as {next(iter(bench.paths.values()))}")
    bench.fp32 = pipeline.fp32_net(config)
    keep = min(len(bench.indices), 48)
    bench.fp32_evaluation = evaluate(bench.fp32, split, bench.indices, config.run.batch_size, config.run.skip_bad,
                                     desc=f"tuning {config.name}: FP32", keep=keep)
    bench.layer_images = [x for x, _, _ in loaders.batches(split, bench.indices[:LAYER_IMAGES], 1)]
    return bench


def judge(bench: Bench, recipe: CalibRecipe, why: str) -> Trial:
    """The trial of `recipe`, from the cache where it was judged before, else calibrated and judged now."""
    path = bench.folder() / f"{bench.key(recipe)}.json"
    if path.is_file():
        try:
            return replace(Trial.from_dict(json.loads(path.read_text())), why=why)
        except (ValueError, TypeError, KeyError):
            pass  # a damaged entry is judged again and replaced
    trial = _judged(bench, recipe, why)
    atomic.write_json(path, trial.to_dict())
    return trial


def _judged(bench: Bench, recipe: CalibRecipe, why: str) -> Trial:
    mc = bench.config.with_(calib=recipe)
    limit = guard.limit(recipe.num_examples + 1, mc.crop_size, mc.run.case_timeout)
    def calibrate() -> None:  # in a forked child, as the gate calibrates: a backend crash stays there
        pipeline.int8_model(mc, recipe)

    guard.isolated(f"{mc.name} INT8 calibration ({recipe.label()})", calibrate, limit)
    int8 = pipeline.int8_model(mc, recipe)
    tol, classes, fp32_ev = bench.tolerances, mc.kind.classes, bench.fp32_evaluation
    ev = evaluate(int8.block, bench.split, bench.indices, mc.run.batch_size, mc.run.skip_bad,
                  desc=f"tuning {mc.name}: {recipe.label()}", reference=fp32_ev.outputs)
    fp32_scores, int8_scores = fp32_ev.matrix.compute(bench.convention), ev.matrix.compute(bench.convention)
    interval = stats.evaluation_drop(fp32_ev, ev, len(classes), bench.convention)
    what = f"{mc.name} on the tuning images {bench.images.describe()}"
    drop = verdicts.int8_drop(what, fp32_scores, int8_scores, tol, classes, interval)
    labelled = fp32_ev.matrix.matrix.sum(axis=1)
    class_drop = verdicts.class_drop(what, fp32_scores, int8_scores, labelled, classes, tol)
    loc = layers.localise(bench.fp32, int8.block, bench.layer_images)
    sqnr = {layer.name: layer.sqnr_db for layer in loc.layers}
    worst = min(sqnr, key=sqnr.get) if sqnr else ""
    floor, _ = verdicts.layer_error(what, sqnr, {}, None, loc.upstream, tol)
    if floor.status not in FAILING:
        floor = Judged("int8-layers", PASS, f"{what}: every layer above the {tol.sqnr_floor_db:g} dB floor, worst {worst} "
                                            f"at {sqnr.get(worst, 0.0):.1f} dB")
    x = bench.layer_images[0]
    fp32_t = latency.measure(bench.fp32, x, TIMED, 2)
    int8_t = latency.measure(int8.block, x, TIMED, 2)
    f, q = fp32_scores.percent(), int8_scores.percent()
    judged = [c for c, n in enumerate(labelled) if n >= tol.class_min_pixels]
    return Trial(
        recipe=recipe.as_dict(), label=recipe.label(), why=why, drop_pixacc=round(f[0] - q[0], 4),
        drop_miou=round(f[1] - q[1], 4), miou_interval=(round(interval.miou[1], 4), round(interval.miou[2], 4)),
        class_drop=round(max((100 * (np.nan_to_num(fp32_scores.iou[c]) - np.nan_to_num(int8_scores.iou[c])) for c in judged),
                             default=0.0), 4),
        worst_layer=worst, worst_sqnr_db=sqnr.get(worst, 0.0), sqnr=sqnr, upstream=dict(loc.upstream),
        fp32_ms=round(1e3 * fp32_t.mean, 3), int8_ms=round(1e3 * int8_t.mean, 3),
        verdicts=(Judged("int8-drop", drop.status, drop.message), Judged("int8-class-drop", class_drop.status, class_drop.message),
                  Judged("int8-layers", floor.status, floor.message)),
        fp32_convs=int8.graph.fp32_convs)


def fp32_verdict(bench: Bench, lookup, tier):
    """The FP32 model on the gate's own images against its baseline row (`lookup`, of the baseline `tier`), as the
    gate's FP32 accuracy check judges it: a fault in the FP32 weights (saturated weights, wrong BN statistics) is no
    INT8 recipe's to fix. None where there is no row to compare with."""
    if lookup.row is None:
        return None
    mc = bench.config
    val = pipeline.open_split(mc, mc.split)
    ev = evaluate(bench.fp32, val, loaders.first(val, mc.num_images), mc.run.batch_size, mc.run.skip_bad,
                  desc=f"checking {mc.name}: FP32 on the gate's images")
    tol = tier.tolerances_for(lookup.reference, mc.tolerances, "fp32")
    return verdicts.against_baseline(f"{mc.name} fp32 on {ev.subset.describe()}", ev.matrix.compute(bench.convention),
                                     lookup.row, "fp32", tol, lookup.reference, ev.per_image)


SPEED_ROUNDS = 40  # interleaved rounds per model when the chosen recipe is timed against the configured one


@dataclass(frozen=True)
class SpeedCost:
    """The chosen recipe's INT8 latency against the configured recipe's, timed interleaved in one process."""

    chosen_ms: float  # median of the rounds
    configured_ms: float
    chosen_iqr_ms: float
    configured_iqr_ms: float
    rounds: int
    crop_size: int

    @property
    def ratio(self) -> float:
        """How much slower the chosen INT8 runs (1.05: 5% slower)."""
        return self.chosen_ms / self.configured_ms

    def describe(self) -> str:
        return (f"INT8 {self.chosen_ms:.2f} ms with the chosen recipe against {self.configured_ms:.2f} ms with the "
                f"configured one at {self.crop_size} px: {self.ratio:.3f}x ({self.rounds} interleaved rounds each, "
                f"interquartile ranges {self.chosen_iqr_ms:.2f} and {self.configured_iqr_ms:.2f} ms)")


def speed_cost(bench: Bench, chosen: CalibRecipe, configured: CalibRecipe, rounds: int = SPEED_ROUNDS) -> SpeedCost:
    """Time both INT8 models (from the model cache) round after round, alternating, so that drift of the machine falls
    on both alike: at 64 px one layer kept in FP32 costs less than one benchmark's precision."""
    mc = bench.config
    models = [pipeline.int8_model(mc.with_(calib=r), r).block for r in (chosen, configured)]
    x = bench.layer_images[0]
    for model in models:
        latency.measure(model, x, 0, 3)
    times = [[], []]
    for _ in range(rounds):
        for k, model in enumerate(models):
            times[k].extend(latency.measure(model, x, 1, 0).times)
    ms = [1e3 * np.asarray(t) for t in times]
    iqr = [float(np.subtract(*np.percentile(m, [75, 25]))) for m in ms]
    return SpeedCost(round(float(np.median(ms[0])), 3), round(float(np.median(ms[1])), 3), round(iqr[0], 3),
                     round(iqr[1], 3), rounds, mc.crop_size)

"""One trial of `segcheck tune`: a calibration recipe calibrated, then judged as the gate judges INT8 (the drop below
FP32 with its interval, the class drop, the per-layer SQNR floor) on tuning images disjoint from the gate's, with its
latency measured beside FP32's in the same process. Trials are cached, so a rerun or a larger budget resumes."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import atomic
from ..config import isa
from ..config.recipes import EXCLUDE_LAYERS, CalibRecipe
from ..config.run import ModelConfig
from ..config.tolerances import Tolerances
from ..data import loaders
from ..errors import RefusedRanges, SegcheckError
from ..gate import verdicts
from ..gate.checks import ERROR, FAILING, PASS
from ..measure import calibration, evaluation_cache, guard, latency, layers, stats
from ..measure.environment import threads
from ..measure.evaluate import evaluate
from ..models import build, cache, pipeline

FORMAT = 2  # of a cached trial: a change to how trials are judged makes the old ones stale
LAYER_IMAGES = 8  # tuning images the per-layer SQNR is measured on, to rank layers (the gate judges on up to 48)
TIMED = 10  # timed forward passes of each precision per trial, after 2 untimed


@dataclass(frozen=True)
class Judged:
    """One check of a trial, as the gate would judge it."""

    check: str  # int8-drop, int8-class-drop, int8-layers
    status: str
    message: str


@dataclass(frozen=True)
class Trial:
    """A recipe judged on the tuning images: its figures, verdicts and speed; `why` says why it was tried; `error`, what
    stopped it (its calibration failed or crashed: it is not cached, and a rerun tries again)."""

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
    error: str = ""
    blamed: tuple = ()  # dotted paths of the layers whose ranges made MXNet refuse the graph (errors.RefusedRanges)
    cached: bool = field(default=False, compare=False)

    @classmethod
    def failed(cls, recipe: CalibRecipe, why: str, error: str, blamed: tuple = ()) -> "Trial":
        return cls(recipe.as_dict(), recipe.label(), why, 0.0, 0.0, (0.0, 0.0), 0.0, "", 0.0, {}, {}, 0.0, 0.0,
                   (Judged("int8-model", ERROR, error),), 0, error, tuple(blamed))

    @property
    def passed(self) -> bool:
        return not self.error and all(v.status not in FAILING for v in self.verdicts)

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
        (0 for a trial within every tolerance; infinite for one that errored); what the search minimises."""
        if self.error:
            return math.inf
        parts = ((self.drop_pixacc, tol.int8_drop_pixacc_points), (self.drop_miou, tol.int8_drop_miou_points),
                 (self.class_drop, tol.int8_drop_class_iou_points), (-self.worst_sqnr_db, -tol.sqnr_floor_db))
        return sum(max(0.0, value - limit) / max(abs(limit), 1.0) for value, limit in parts)

    def shortfall(self, tol: Tolerances) -> tuple:
        """What orders trials from closest to passing: the excess, then the mIoU drop."""
        return self.excess(tol), self.drop_miou

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc.pop("cached")
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> "Trial":
        return cls(**{**doc, "miou_interval": tuple(doc["miou_interval"]), "blamed": tuple(doc.get("blamed", ())),
                      "verdicts": tuple(Judged(**v) for v in doc["verdicts"]), "cached": True})


@dataclass(frozen=True)
class Bench:
    """What every trial of one model shares: the FP32 model and its evaluation on the tuning images, the images the
    layers are compared on, the gate's tolerances and minimum speed-up, and the Gluon paths a recipe may exclude."""

    config: ModelConfig
    tolerances: Tolerances
    convention: str
    min_speedup: float | None  # the gate's minimum INT8 speed-up on this ISA (None: not gated here)
    split: loaders.Split  # the calibration split, whose last images tune on
    indices: tuple
    fp32: object  # the fused FP32 block
    fp32_evaluation: object  # measure.evaluate.Evaluation of FP32 on the tuning images
    fp32_digest: str
    layer_images: tuple
    paths: dict  # stable layer name -> dotted Gluon path (what a recipe excludes); empty for an exported network

    @property
    def images(self) -> loaders.Subset:
        return loaders.Subset(self.split.split, tuple(self.split.ids[i] for i in self.indices))

    def folder(self) -> Path:
        return self.config.run.cache_dir / "tune" / self.config.name

    def key(self, recipe: CalibRecipe) -> str:
        """The cache key of a trial: everything its figures depend on."""
        mc = self.config
        calibrated = atomic.files_digest(self.split.files(recipe.images)) if recipe.num_examples else ""
        fields = {"format": FORMAT, "model": mc.network.name, "fp32": self.fp32_digest, "crop": mc.crop_size,
                  "batch": mc.run.batch_size, "skip_bad": mc.run.skip_bad,
                  "recipe": recipe.as_dict(), "always_fp32": list(EXCLUDE_LAYERS.get(mc.arch, ())),
                  "calibration_files": calibrated, "images": self.images.digest,
                  "files": atomic.files_digest(self.split.files(self.indices)), "convention": self.convention,
                  "tolerances": asdict(self.tolerances), "min_speedup": self.min_speedup, "versions": cache.versions(),
                  "isa": isa.effective_level(), "threads": threads()}
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


def prepare(config: ModelConfig, tolerances: Tolerances, convention: str, count: int,
            min_speedup: float | None = None) -> Bench:
    """The shared part of every trial: the FP32 model, evaluated once on the tuning images."""
    recipe = config.calib
    split = pipeline.open_split(config, recipe.split)
    if recipe.split == config.split:
        raise SegcheckError(f"{config.name}: the recipe calibrates on the {recipe.split} split, which the gate evaluates: "
                            "tuning on it would choose a recipe on the gate's own images; calibrate on another split "
                            "(int8.split, --calib-split train)")
    indices = tuning_indices(split, count, recipe.images)
    paths = {}
    if config.network.export is None:
        net = build.build(config.network, config.crop_size)
        paths = {name: path for path, name in calibration.conv_layers(net).items()}
    unknown = [path for path in recipe.exclude if path not in paths.values()]
    if unknown:
        raise SegcheckError(f"{config.name}: int8.exclude names {unknown[0]!r}, which is no convolution of "
                            f"{config.network.name}; name one by its dotted Gluon path, such as {next(iter(paths.values()))}")
    fp32, weights = pipeline.fp32_net(config), pipeline.fp32_weights(config)[1]
    evaluation = evaluate_fp32(config, fp32, weights, split, indices, f"tuning {config.name}: FP32")
    layer_images = tuple(x for x, _, _ in loaders.batches(split, indices[:LAYER_IMAGES], 1))
    return Bench(config, tolerances, convention, min_speedup, split, tuple(indices), fp32, evaluation, weights,
                 layer_images, paths)


def evaluate_fp32(mc: ModelConfig, fp32, weights: str, split: loaders.Split, indices, desc: str):
    """FP32 (the fused block of weights digest `weights`) on `split`'s images at `indices`, as the gate evaluates it
    (its first outputs kept): read from the evaluation cache where an entry of the same key holds it, else kept there."""
    indices = list(indices)
    return evaluation_cache.evaluation(mc, "fp32", fp32, split, indices, lambda keep: evaluate(
        fp32, split, indices, mc.run.batch_size, mc.run.skip_bad, desc=desc, keep=keep), weights)


def judge(bench: Bench, recipe: CalibRecipe, why: str) -> Trial:
    """The trial of `recipe`, from the cache where it was judged before, else calibrated and judged now; a recipe that
    cannot be calibrated or run is a failed trial (not cached)."""
    path = bench.folder() / f"{bench.key(recipe)}.json"
    if path.is_file():
        try:
            return replace(Trial.from_dict(json.loads(path.read_text())), why=why)
        except (ValueError, TypeError, KeyError):
            pass  # a damaged entry is judged again and replaced
    try:
        trial = _judged(bench, recipe, why)
    except SegcheckError as err:  # guard.BackendCrash too: a crash or a hang of the backend
        return Trial.failed(recipe, why, str(err), err.layers if isinstance(err, RefusedRanges) else ())
    atomic.write_json(path, trial.to_dict())
    return trial


def _judged(bench: Bench, recipe: CalibRecipe, why: str) -> Trial:
    """Calibrate `recipe` (in a forked child, as the gate does), then judge its INT8 on the tuning images: the drop, the
    class drop, the per-layer SQNR floor, and the speed-up over FP32 timed here."""
    mc = bench.config.with_(calib=recipe)
    limit = guard.limit(recipe.num_examples + 1, mc.crop_size, mc.run.case_timeout)

    def calibrate() -> None:  # in a forked child, as the gate calibrates: a backend crash stays there
        pipeline.int8_model(mc, recipe)

    guard.isolated(f"{mc.name} INT8 calibration ({recipe.label()})", calibrate, limit)
    int8 = pipeline.int8_model(mc, recipe)
    tol, classes, fp32_ev = bench.tolerances, mc.kind.classes, bench.fp32_evaluation
    ev = evaluate(int8.block, bench.split, list(bench.indices), mc.run.batch_size, mc.run.skip_bad,
                  desc=f"tuning {mc.name}: {recipe.label()}", reference=fp32_ev.outputs)
    fp32_scores, int8_scores = fp32_ev.matrix.compute(bench.convention), ev.matrix.compute(bench.convention)
    interval = stats.evaluation_drop(fp32_ev, ev, len(classes), bench.convention)
    what = f"{mc.name} on the tuning images {bench.images.describe()}"
    drop = verdicts.int8_drop(what, fp32_scores, int8_scores, tol, classes, interval)
    labelled = fp32_ev.matrix.matrix.sum(axis=1)
    class_drop = verdicts.class_drop(what, fp32_scores, int8_scores, labelled, classes, tol)
    loc = layers.localise(bench.fp32, int8.block, list(bench.layer_images))
    sqnr = {layer.name: layer.sqnr_db for layer in loc.layers}
    worst = min(sqnr, key=sqnr.get) if sqnr else ""
    floor = verdicts.layer_error(what, sqnr, {}, None, loc.upstream, tol)[0]
    if sqnr and floor.status not in FAILING:  # the floor is tune's only per-layer check: every layer was compared with it
        floor = Judged("int8-layers", PASS, f"{what}: every layer above the {tol.sqnr_floor_db:g} dB floor, "
                                            f"worst {worst} at {sqnr[worst]:.1f} dB")
    x = bench.layer_images[0]
    fp32_t, int8_t = latency.alternating([bench.fp32, int8.block], x, TIMED, warmup=2)  # in turn, as the gate times
    speed = verdicts.speedup(mc.name, 1e3 * fp32_t.min, 1e3 * int8_t.min, bench.min_speedup, isa.effective_level())
    f, q = fp32_scores.percent(), int8_scores.percent()
    return Trial(
        recipe=recipe.as_dict(), label=recipe.label(), why=why, drop_pixacc=round(f[0] - q[0], 4),
        drop_miou=round(f[1] - q[1], 4), miou_interval=(round(interval.miou[1], 4), round(interval.miou[2], 4)),
        class_drop=round(max((d for d, _ in verdicts.class_drops(fp32_scores, int8_scores, labelled, tol)), default=0.0), 4),
        worst_layer=worst, worst_sqnr_db=sqnr.get(worst, 0.0), sqnr=sqnr, upstream=dict(loc.upstream),
        fp32_ms=round(1e3 * fp32_t.min, 3), int8_ms=round(1e3 * int8_t.min, 3),
        verdicts=(Judged("int8-drop", drop.status, drop.message), Judged("int8-class-drop", class_drop.status, class_drop.message),
                  Judged("int8-layers", floor.status, floor.message),
                  Judged("int8-speedup", speed.status, speed.message)),
        fp32_convs=int8.graph.fp32_convs)

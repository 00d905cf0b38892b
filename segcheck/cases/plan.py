"""What a run will do, what is missing (with the command that fetches it), and what it will cost: `segcheck plan`
and the real tier's pytest header both print it.

The cost comes from a short probe on this machine: per network and crop, the seconds per image of the
fused FP32 forward, the INT8 forward and the unfused FP32 forward that calibration runs. Probes are kept
in the cache, keyed by environment, so the real tier's pytest header can quote them without probing.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .. import atomic
from ..config.run import ModelConfig, RunConfig
from ..data.kinds import ALL
from ..errors import MissingResource, SegcheckError

# Images in the val splits as published, for estimates before the data is there (COCO: before GluonCV's filter).
PUBLISHED_VAL = {"pascal_voc": 1449, "coco": 5000, "ade20k": 2000, "citys": 500}
OVERHEAD_S = 15.0  # per model and run: loading, binding, fusing, the latency benchmarks
SHARDS = (1, 4, 16)


@dataclass(frozen=True)
class Cost:
    """Seconds per image on this machine: fused FP32, INT8, and the unfused FP32 forward calibration runs; and the MB
    the network's FP32, INT8 and fused FP32 graphs took at the crop (the probe's forked child, beyond its parent)."""

    fp32_s: float
    int8_s: float
    calib_s: float
    memory_mb: float | None = None  # None: probed before memory was


def _missing(mc: ModelConfig) -> list:
    """What the model needs and this machine lacks: (what, where, how to get it)."""
    from ..models import build, export

    found = []
    w = mc.weights
    if w.kind == "store":
        try:
            path = build.store_path(mc.network, mc.run.mxnet_home)
            if not path.is_file():
                found.append(("weights", path, f"segcheck fetch weights {mc.network.store_name}"))
        except MissingResource as err:
            found.append(("weights", "none published", str(err)))
    elif w.kind in ("params", "export"):
        path = export.files(w.path)[1] if w.kind == "export" else w.path
        if not Path(path).is_file():
            found.append(("weights", path, "copy your weights there or fix the configuration"))
    if mc.int8_export is not None and not export.files(mc.int8_export)[0].is_file():
        found.append(("INT8 model", export.files(mc.int8_export)[0], "copy the INT8 model you ship there"))
    if mc.root is not None:
        splits = {mc.split} | ({mc.calib.split} if mc.calib and mc.calib.mode != "none" else set())
        for split in sorted(splits):
            marker = mc.kind.absent(mc.root, split)
            if marker is not None:
                fetch = {"pascal_voc": f"segcheck fetch voc --root {mc.root}",
                         "coco": f"segcheck fetch coco --root {mc.root} --parts annotations,{split}"}.get(mc.dataset, mc.kind.prepare)
                found.append((f"{mc.dataset} {split}", marker, fetch))
    return found


def images(mc: ModelConfig) -> tuple[int | None, str]:
    """(images the run evaluates, where that count comes from)."""
    from ..data import loaders
    from ..models import pipeline

    try:
        split = pipeline.open_split(mc, mc.split)
        return len(loaders.first(split, mc.num_images)), f"{mc.split} split on disk"
    except (MissingResource, SegcheckError):
        published = PUBLISHED_VAL.get(mc.dataset)
        if mc.num_images != ALL:
            return mc.num_images, "the setting"
        return published, f"published {mc.dataset} val size" + (" before GluonCV's filter" if mc.dataset == "coco" else "")


def _probe_key(mc: ModelConfig) -> str:
    """Networks of one architecture, backbone and class count cost the same: one probe serves them all."""
    what = mc.network.name if mc.network.export is not None else f"{mc.arch}_{mc.network.backbone}_{mc.kind.num_classes}classes"
    return f"{what}@{mc.crop_size}x{mc.run.batch_size}"


def _probe_path(run: RunConfig, environment) -> Path:
    key = "-".join(str(v) for v in environment.key().values()).replace(" ", "_")
    return Path(run.cache_dir) / f"probe-{key}.json"


def stored_costs(run: RunConfig, environment) -> dict:
    try:
        return {k: Cost(**v) for k, v in json.loads(_probe_path(run, environment).read_text()).items()}
    except (OSError, ValueError, TypeError):
        return {}


def probe(mc: ModelConfig, repeats: int = 3) -> Cost:
    """Time one image through the network at the model's crop: unfused FP32, INT8 (calibrated on one image), fused FP32;
    in a forked child, whose footprint is what the three graphs take."""
    from ..measure import guard

    footprint = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MXNet's notes on an exported graph's input types
        forwards = 3 * (repeats + 1) + 1  # three graphs timed, and the one-image calibration
        cost = guard.isolated(f"{mc.name} cost probe", lambda: _probe(mc, repeats),
                              guard.limit(forwards * mc.run.batch_size, mc.crop_size, mc.run.case_timeout), footprint)
    return replace(cost, memory_mb=round(footprint.get(f"{mc.name} cost probe", 0.0), 1) or None)


def _probe(mc: ModelConfig, repeats: int) -> Cost:
    from ..config.recipes import CalibRecipe
    from ..data import loaders
    from ..measure import latency
    from ..models import build, pipeline, quantize

    crop, x = mc.crop_size, loaders.dummy_input(mc.run.batch_size, mc.crop_size)
    if mc.network.export is not None:
        net = pipeline.fp32_net(mc, fused=False)
    else:  # random weights: the cost of a forward does not depend on their values
        net = build.build(mc.network, crop)
        build.random_weights(net, crop)
    net.hybridize(static_alloc=True, static_shape=True)
    calib = latency.measure(net, x, repeats, warmup=1).min
    qnet = quantize.quantize(net, mc.arch, CalibRecipe(num_batches=1, batch_size=mc.run.batch_size), [x], crop)
    int8 = latency.measure(qnet, x, repeats, warmup=1).min
    fused = build.fuse(net, crop)
    fp32 = latency.measure(fused, x, repeats, warmup=1).min
    n = mc.run.batch_size
    return Cost(fp32 / n, int8 / n, calib / n)


@dataclass(frozen=True)
class Estimate:
    name: str
    images: int | None
    calib_images: int
    cost: Cost

    @property
    def calibration(self) -> float:
        return self.calib_images * self.cost.calib_s

    @property
    def fp32_evaluation(self) -> float:
        return (self.images or 0) * self.cost.fp32_s

    def wall(self, shards: int = 1, calibrated: bool = False) -> float:
        """Wall time of the largest of `shards` shards: each calibrates (unless `calibrated`: a shared cache),
        then evaluates its block of images."""
        block = math.ceil((self.images or 0) / shards)
        return OVERHEAD_S + (0 if calibrated else self.calibration) + block * (self.cost.fp32_s + self.cost.int8_s)


def span(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def suggest_shards(estimates: list, target_s: float, calibrated: bool = False) -> int | None:
    """The fewest shards whose slowest one fits in `target_s` (all models run in each shard), or None beyond 256."""
    for n in range(1, 257):
        if sum(e.wall(n, calibrated) for e in estimates) <= target_s:
            return n
    return None


def plan(models: dict, environment, run: RunConfig, do_probe: bool = True) -> tuple[list, list]:
    """(report lines, estimates) for resolved models (name -> ModelConfig, or MissingResource when skipped)."""
    lines, estimates = [], []
    costs = stored_costs(run, environment)
    for name, mc in models.items():
        if isinstance(mc, MissingResource):
            lines.append(f"- {name}: skipped: {mc}")
            continue
        count, source = images(mc)
        calib = mc.calib.num_examples if mc.calib is not None else 0
        int8 = f"calibrated {mc.calib.label()}" if mc.calib is not None else f"shipped {mc.int8_export}"
        lines.append(f"- {name}: FP32 + INT8 ({int8}), {count if count is not None else 'unknown'} images ({source}), "
                     f"crop {mc.crop_size}, batch {mc.run.batch_size}")
        for what, where, how in _missing(mc):
            lines.append(f"    missing {what}: {where}; {how}")
        key = _probe_key(mc)
        if do_probe and key not in costs:
            costs[key] = probe(mc)
            atomic.write_json(_probe_path(run, environment), {k: asdict(v) for k, v in costs.items()})
        if key in costs:
            estimates.append(Estimate(name, count, calib, costs[key]))
    return lines, estimates


def fp32_cached(run: RunConfig, models: dict) -> set:
    """Models (of `models`, name -> ModelConfig) with an FP32 evaluation on the split the gate evaluates in the cache
    that this code can read (its key also holds graph, weights, files, environment and code; an entry of an older
    format is never read again; tune's, on the split it tunes on, are not the gate's)."""
    from ..measure.evaluation_cache import FORMAT
    from ..models import cache

    found = set()
    for entry in cache.entries(run.cache_dir, "fp32-eval"):
        try:
            manifest = json.loads((entry / "manifest.json").read_text())
            mc = models.get(manifest["model"])
            if mc is None or isinstance(mc, MissingResource):
                continue
            if manifest["fields"]["format"] == FORMAT and manifest["split"] == mc.split:
                found.add(manifest["model"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def memory_needed(estimates: list, base_mb: float) -> str:
    """What a gate run of these models needs, from the probes: the process's own `base_mb`, the largest model's
    networks (the gate holds one model's at a time) and a forked work beside them, which can reach about as much."""
    unprobed = [e.name for e in estimates if not e.cost.memory_mb]
    if unprobed:
        return (f"memory: not probed for {', '.join(unprobed)} (probed in this process, SEGCHECK_IN_PROCESS=1, or before "
                "segcheck measured memory: remove the probe-*.json files of the segcheck cache to probe again)")
    largest = max(estimates, key=lambda e: e.cost.memory_mb)
    need = base_mb + 2 * largest.cost.memory_mb
    return (f"memory: the largest model's networks take {largest.cost.memory_mb / 1024:.2f} GB here ({largest.name}), beside "
            f"the process's own {base_mb / 1024:.2f} GB; the gate holds one model's at a time, and a forked work (calibration, "
            f"an evaluation) can add about as much again while it runs: a runner needs about {need / 1024:.1f} GB")


def summary(estimates: list, environment, target_s: float | None = None, cached: frozenset = frozenset(),
            base_mb: float | None = None) -> list:
    """The plan's cost lines: per image and per model, the run's wall time by shards, the memory it needs (`base_mb`:
    the process's own, default this one's peak), and shards for `target_s`."""
    from ..measure import memory

    lines = [f"per image on this machine ({environment.isa}, oneDNN {environment.onednn}):"]
    for e in estimates:
        lines.append(f"- {e.name}: FP32 {e.cost.fp32_s:.3f} s, INT8 {e.cost.int8_s:.3f} s, calibration {e.cost.calib_s:.3f} s "
                     f"x {e.calib_images} images; one shard of {e.images} images: {span(e.wall())}")
    if estimates:
        lines.append(memory_needed(estimates, memory.peak_mb() if base_mb is None else base_mb))
    if any(e.images is None for e in estimates):
        lines.append("(models of unknown image count count as 0 images below)")
    for calibrated, how in ((False, "each shard calibrates"), (True, "calibration shared through the cache")):
        walls = ", ".join(f"{n} shard{'s' if n > 1 else ''}: {span(sum(e.wall(n, calibrated) for e in estimates))}" for n in SHARDS)
        lines.append(f"estimated wall time of the whole run, {how}: {walls}")
    lines.append(f"(sharing: one job calibrates every model first, {span(sum(e.calibration for e in estimates))} here, and "
                 "the shards start from a copy of its --segcheck-cache)")
    saved = sum(e.fp32_evaluation for e in estimates if e.name in cached)
    lines.append(f"FP32 evaluations are reused from the cache when only the INT8 side changes (a calibration recipe, a "
                 f"shipped INT8 file): up to {span(sum(e.fp32_evaluation for e in estimates))} of a run; cached here now for "
                 f"{len([e for e in estimates if e.name in cached])} of {len(estimates)} models, saving {span(saved)} (a "
                 "second run of the same models also reads INT8's evaluation and the per-layer comparison)")
    if target_s is not None:
        calibration = sum(e.calibration for e in estimates)
        for calibrated, how in ((False, "each shard calibrating"), (True, "with the calibration shared")):
            n = suggest_shards(estimates, target_s, calibrated)
            if n:
                advice = f"--shard K/{n}, {n} jobs"
            elif not calibrated and calibration >= target_s:
                advice = f"not reachable: calibration alone takes {span(calibration)} per job; share it through the cache"
            else:
                advice = "more than 256 shards; use a smaller --num-images or crop"
            lines.append(f"for {span(target_s)} per job, {how}: {advice}")
    return lines


def header(models: dict, environment, run: RunConfig) -> str:
    """One line for the start of a real-tier pytest run: what runs, what is missing, what it costs (if probed)."""
    lines, estimates = plan(models, environment, run, do_probe=False)
    missing = sum(1 for line in lines if line.startswith("    missing"))
    cost = (f"estimated {span(sum(e.wall() for e in estimates))} here" if len(estimates) == len(models)
            else "no cost probed here yet")
    return (f"segcheck: {run.tier} tier, {len(models)} models x FP32 + INT8, {missing} inputs missing, {cost}; "
            "`segcheck plan` lists them with the fetch commands and the shard counts")

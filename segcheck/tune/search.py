"""The search of `segcheck tune`, cheapest first, as NNCF's accuracy control and Intel Neural Compressor's basic
strategy search: the configured recipe (where MXNet refuses its graph for some layers' ranges, next the same recipe with
those layers in FP32); then at most three other recipes (the other calibration mode, int8 throughout, twice the
images); then layers kept in FP32 one at a time, greedily from the best recipe, ranked by how much SQNR each loses by
itself (the layers the failing verdict names first), with leave-one-in-FP32 trials over the top few only and
re-ranking when a revert does not help. It stops at the first trial the gate's INT8 checks pass, or at the budget."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from tqdm import tqdm

from ..config.recipes import CalibRecipe
from .trial import Bench, Trial, judge

RECIPE_TRIALS = 3  # other recipes tried before any layer is kept in FP32
TOP = 3  # layers measured left in FP32 one by one per ranking
SKIPPED_UINT8 = ("uint8 is not tried: it needs non-negative input, and the normalised images have negative values "
                 "(their mean is subtracted)")


@dataclass(frozen=True)
class Budget:
    max_trials: int = 20
    seconds: float = float("inf")


@dataclass(frozen=True)
class Outcome:
    trials: tuple  # Trial, in the order judged
    chosen: Trial | None  # the first that passes, else None
    reason: str  # why the search stopped
    notes: tuple = ()
    left: str = ""  # what a larger budget would try next, where the budget stopped it


def recipe_candidates(recipe: CalibRecipe, room: int) -> list:
    """(recipe, why) of the other recipes, cheapest first; `room`: images the calibration split holds before the tuning
    images (more images may not reach into them)."""
    other = "entropy" if recipe.mode == "naive" else "naive"
    found = [(replace(recipe, mode=other), f"{other} calibration")]
    if recipe.dtype != "int8":
        found.append((replace(recipe, dtype="int8"), "int8 throughout (auto and uint8 take uint8 after a ReLU)"))
    doubled = replace(recipe, num_batches=2 * recipe.num_batches, mode=recipe.mode if recipe.mode != "none" else "naive")
    if doubled.images.stop <= room:
        found.append((doubled, f"twice the calibration images ({doubled.num_examples})"))
    return found[:RECIPE_TRIALS]


INPUT_DB = 6.02 * 8 + 1.76  # the SQNR of an 8-bit quantized input: the most a layer fed by the image alone can keep


def ranked(trial: Trial, paths: dict, floor_db: float) -> list:
    """Layers of `trial` that a recipe can keep in FP32 (`paths`: stable name -> Gluon path), most to blame first: the
    layers below the SQNR floor (what the failing verdict names) before the others, each group by the SQNR it loses by
    itself (the lowest SQNR among its quantized inputs, or the quantized image's for a layer fed by the image alone,
    less its own): a layer that breaks drags every layer after it under the floor, but loses the most itself."""
    sqnr = trial.sqnr
    floored = {n for n, v in sqnr.items() if v < floor_db}

    def own_loss(name):
        inputs = [sqnr[u] for u in trial.upstream.get(name, []) if u in sqnr]
        return (min(inputs) if inputs else INPUT_DB) - sqnr[name]

    names = [n for n in sqnr if n in paths and paths[n] not in trial.recipe["exclude"]]
    return sorted(names, key=lambda n: (n not in floored, -own_loss(n), sqnr[n]))


def search(bench: Bench, budget: Budget, progress: bool = True) -> Outcome:
    """Trials from the configured recipe until one passes the gate's INT8 checks, or the budget ends."""
    started, trials, tol = time.monotonic(), [], bench.tolerances
    bar = tqdm(total=budget.max_trials, desc=f"tuning {bench.config.name}", unit="trial", disable=not progress)

    def run(recipe: CalibRecipe, why: str) -> Trial:
        trial = judge(bench, recipe, why)
        trials.append(trial)
        bar.update(1)
        bar.set_postfix_str(f"{trial.label}: mIoU drop {trial.drop_miou:+.2f}")
        return trial

    def out_of_budget() -> str:
        if len(trials) >= budget.max_trials:
            return f"the budget of {budget.max_trials} trials is spent (--max-trials)"
        if time.monotonic() - started >= budget.seconds:
            return f"the time budget of {budget.seconds:g} s is spent (--time-budget)"
        return ""

    def done(chosen, reason, left="") -> Outcome:
        bar.close()
        return Outcome(tuple(trials), chosen, reason, (SKIPPED_UINT8,) if len(trials) > 1 else (), left)

    configured = run(bench.config.calib, "the configured recipe")
    if configured.passed:
        return done(configured, "the configured recipe passes the gate's INT8 checks: nothing to tune")
    start = configured
    if configured.blamed:  # MXNet refused the graph for these layers' ranges: no layer was measured, they go first
        if spent := out_of_budget():
            return done(None, spent, f"{', '.join(configured.blamed)} kept in FP32, then other recipes")
        kept = tuple(sorted({*configured.calib.exclude, *configured.blamed}))
        trial = run(replace(configured.calib, exclude=kept),
                    f"{', '.join(configured.blamed)} kept in FP32: MXNet refused the graph for their ranges")
        if trial.passed:
            return done(trial, f"keeping {', '.join(kept)} in FP32 passes the gate's INT8 checks")
        start = configured if trial.error else trial  # the other recipes keep them too: the fault is in every recipe
    candidates = recipe_candidates(start.calib, bench.indices[0])
    for k, (recipe, why) in enumerate(candidates):
        if spent := out_of_budget():
            return done(None, spent, f"{len(candidates) - k} other recipes, then layers kept in FP32")
        if run(recipe, why).passed:
            return done(trials[-1], f"{why} passes the gate's INT8 checks")
    base = min(trials, key=lambda t: t.shortfall(tol))
    tried = set()
    while True:
        queue = [n for n in ranked(base, bench.paths, tol.sqnr_floor_db) if bench.paths[n] not in tried]
        if not queue:
            return done(None, "no layer is left to keep in FP32")
        measured = []
        for k, name in enumerate(queue[:TOP]):
            if spent := out_of_budget():
                shown = ", ".join(f"{bench.paths[n]} ({base.sqnr[n]:.1f} dB)" for n in queue[k:k + 3])
                return done(None, spent, f"{len(queue) - k} layers of {base.label} not yet kept in FP32, next {shown}")
            path = bench.paths[name]
            tried.add(path)
            recipe = replace(base.calib, exclude=tuple(sorted({*base.calib.exclude, path})))
            trial = run(recipe, f"{path} ({name}, {base.sqnr[name]:.1f} dB) kept in FP32")
            if trial.passed:
                return done(trial, f"keeping {', '.join(recipe.exclude)} in FP32 passes the gate's INT8 checks")
            measured.append(trial)
        better = min(measured, key=lambda t: t.shortfall(tol))
        if better.shortfall(tol) < base.shortfall(tol):
            base, tried = better, set()  # keep the revert that helped most and rank again from its layers

"""What a run refuses before any work, under pytest, in `segcheck plan` / `tune` and the seed's command alike: an
option that would change nothing, a cache that is not a folder, and, on the synthetic tier, whose splits' sizes are
known, images its splits do not hold."""

from __future__ import annotations

from pathlib import Path

from ..data import loaders
from ..errors import SegcheckError
from .options import CALIBRATION, ROOTS, GateOptions, flag_of
from .project import Project
from .run import ModelConfig, RunConfig


def no_effect(options: GateOptions, run: RunConfig, project: Project) -> None:
    """An option that would change nothing in this run is an error, never silently ignored."""
    entries = project.models
    for dest, key in ROOTS.items():
        if getattr(options, dest) is None:
            continue
        if run.tier == "synthetic":
            raise SegcheckError(f"{flag_of(dest)} has no effect on the synthetic tier (its data is generated); add --tier real")
        if all(e.data.name != key for e in entries):
            raise SegcheckError(f"{flag_of(dest)} has no effect: no configured model uses {key}")
    calib = [d for d in CALIBRATION if getattr(options, d) is not None]
    calibrating = [e for e in entries if e.int8_export is None]
    if calib and not calibrating:
        raise SegcheckError(f"{flag_of(calib[0])} has no effect: every configured model's INT8 side is a shipped export")
    any_run(options, run, {options.calib_mode or e.recipe.get("mode", "naive") for e in calibrating})
    if options.require_real and run.tier == "synthetic":
        raise SegcheckError("--require-real has no effect on the synthetic tier (nothing is missing there); add --tier real")
    if options.peer is not None and run.shard is not None:
        raise SegcheckError("--peer with --shard: the peer cases run on all the images, unsharded; run them apart")
    if options.update_baselines and run.shard is not None:
        raise SegcheckError("--update-baselines with --shard: a shard's figures are not a row; record from an unsharded run")


def any_run(options: GateOptions, run: RunConfig, modes: set, to_real: str = "add --tier real") -> None:
    """What no run takes, configured or the seed's command (`modes`: the calibration modes its models use; `to_real`:
    how the command is pointed at real data)."""
    if options.skip_bad and run.tier == "synthetic":
        raise SegcheckError(f"--skip-bad has no effect on the synthetic tier: its generated samples are never unreadable; {to_real}")
    sized = [d for d in ("calib_batches", "calib_batch_size", "calib_split", "calib_start") if getattr(options, d) is not None]
    if sized and modes == {"none"}:
        raise SegcheckError(f"{flag_of(sized[0])} has no effect with calibration mode none")
    if Path(run.cache_dir).exists() and not Path(run.cache_dir).is_dir():
        raise SegcheckError(f"segcheck's cache {run.cache_dir} is a file; name a folder with --segcheck-cache or $SEGCHECK_CACHE_DIR")


def beyond_the_splits(models: dict) -> None:
    """On the synthetic tier, images asked of a split that does not hold them (to evaluate, to calibrate on, or a shard
    left empty) are one error before the run, not the same error from every case once its data is read."""
    for mc in models.values():
        if not isinstance(mc, ModelConfig) or mc.root is not None:
            continue
        held = {"train": mc.run.synthetic.num_train, "val": mc.run.synthetic.num_val}
        where = f"{mc.name} on the synthetic tier"
        if mc.split in held:
            count = loaders.counted(where, mc.split, held[mc.split], mc.num_images)
            try:
                loaders.shard(range(count), mc.run.shard)
            except SegcheckError as err:  # its message names the shard, not the model
                raise SegcheckError(f"{where}: {err}") from None
        recipe = mc.calib
        if recipe is not None and recipe.mode != "none" and recipe.split in held:
            recipe.check_fits(where, held[recipe.split])

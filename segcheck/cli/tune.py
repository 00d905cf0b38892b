"""`segcheck tune [MODEL]`: when INT8 fails the gate, search for a recipe it passes (segcheck.tune.search), print the
trials with their speed cost, draw them (--png), write the chosen recipe into the configuration (--write) and verify it
with a real gate run of the model.

Trials are judged on tuning images, the last of the calibration split, disjoint from the gate's images and from every
recipe's calibration images; the gate's own images verify the choice."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import tomlkit

from ..config import options
from ..config.project import Project
from ..config.run import RunConfig, tier_defaults
from ..errors import MissingResource, SegcheckError
from .configured import configured
from .plan import parse_budget

DEFAULT_IMAGES = {"synthetic": 48, "real": 300}  # the real tier's: NNCF's ranking subset
VERIFY_TIMEOUT_S = 3600


def _positive_budget(text: str) -> float:
    seconds = parse_budget(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration such as 90m or 2h, got {text!r}")
    return seconds


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segcheck tune", description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("models", nargs="*", metavar="MODEL", help="configured models to tune (default: every one)")
    p.add_argument("--tier", choices=("synthetic", "real"), help="default: the configuration's tier")
    p.add_argument("--segcheck-config", help="segcheck.toml or pyproject.toml (default: found from this folder)")
    p.add_argument("--max-trials", type=options.positive, default=20, help="trials per model at most (default 20)")
    p.add_argument("--time-budget", type=_positive_budget, metavar="DURATION", help="stop starting trials after this (90m, 2h)")
    p.add_argument("--tune-images", type=options.positive, metavar="N",
                   help="the last N images of the calibration split judge the trials (synthetic tier 48, real tier 300)")
    p.add_argument("--write", action="store_true", help="write the chosen recipe into the model's [[models]].int8 table")
    p.add_argument("--png", help="also draw the trials (speed-up against INT8 drop) as a PNG here")
    p.add_argument("--json", dest="json_out", metavar="PATH", help="also write the trials, the choice and its speed cost here")
    p.add_argument("--no-verify", action="store_true", help="skip the gate run that verifies the chosen recipe")
    options.add_to_argparse(p, [o for o in options.RUN if o.dest != "shard"])
    return p


def _table(outcome, out) -> None:
    print(f"{'#':>2}  {'recipe':<46} {'mIoU drop [95%]':<22} {'pixAcc':>7} {'worst layer':>12} {'speed-up':>8}  verdict",
          file=out)
    for number, t in enumerate(outcome.trials, 1):
        interval = f"{t.drop_miou:+.2f} [{t.miou_interval[0]:+.2f}, {t.miou_interval[1]:+.2f}]"
        verdict = "PASS" if t.passed else "FAIL " + ", ".join(v.check for v in t.failing())
        print(f"{number:>2}  {t.label:<46} {interval:<22} {t.drop_pixacc:>+7.2f} {t.worst_sqnr_db:>9.1f} dB "
              f"{t.speedup:>7.2f}x  {verdict}{' (cached)' if t.cached else ''}", file=out)
        print(f"    {t.why}", file=out)


def _verify_config(project: Project, model: str, recipe, defaults) -> Path:
    """A copy of the configuration beside it (its relative paths stay right) with `recipe` written in."""
    from ..tune import recipe_file

    text = recipe_file.with_recipe(project.path.read_text(), project.path, model, recipe, defaults)
    if project.path.name == "pyproject.toml":
        text = tomlkit.dumps(tomlkit.parse(text)["tool"]["segcheck"])
    handle, name = tempfile.mkstemp(prefix=".segcheck-tune-", suffix=".toml", dir=project.folder)
    with os.fdopen(handle, "w") as f:
        f.write(text)
    return Path(name)


def verify(project: Project, run: RunConfig, model: str, recipe, defaults, out) -> int:
    """The model's INT8 gate and its latency benchmarks (pytest on segcheck's suite) run with `recipe`: its exit status."""
    path = _verify_config(project, model, recipe, defaults)
    try:
        args = [sys.executable, "-m", "pytest", "--pyargs", "segcheck.plugin.suite", "-q", "-p", "no:cacheprovider",
                "--segcheck-config", str(path), "--tier", run.tier, "--segcheck-cache", str(run.cache_dir),
                "-k", f"{model} and (int8 or test_latency) and not peer"]
        print(f"verifying with the gate: {' '.join(args[1:])}", file=out)
        done = subprocess.run(args, cwd=project.folder, capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S)
    finally:
        path.unlink(missing_ok=True)
    lines = done.stdout.strip().splitlines()
    print("\n".join(f"  | {line}" for line in lines[-12:]), file=out)
    return done.returncode


def main(argv, out=None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    project, run, models = configured(args)
    unknown = [m for m in args.models if m not in models]
    if unknown:
        raise SegcheckError(f"{project.path}: no configured model is named {unknown[0]!r}; choose among {', '.join(models)}")
    if args.png and len(args.models) != 1:
        raise SegcheckError("--png draws one model's trials: name one MODEL")
    from .. import atomic
    from ..gate import baselines
    from ..gate.checks import REGRESSED
    from ..measure.environment import fingerprint
    from ..tune import chart, search, trial

    table = baselines.load(project.baselines, missing_ok=True)
    convention = table.convention(run.tier, project.metric_convention, project.path)
    tier = table.tier_or_new(run.tier, convention)
    environment = fingerprint(run.cache_dir).key()
    status, report = 0, {}
    for name in args.models or list(models):
        mc = models[name]
        if isinstance(mc, MissingResource):
            raise SegcheckError(str(mc))
        if mc.calib is None:
            print(f"{name}: gated on the shipped INT8 export {mc.int8_export}, which segcheck cannot recalibrate: nothing "
                  "to tune (tune the recipe that made it where it was made)", file=out)
            continue
        tol = tier.tolerances_for(None, mc.tolerances, "int8")
        bench = trial.prepare(mc, tol, convention, args.tune_images or DEFAULT_IMAGES[run.tier])
        fp32 = trial.fp32_verdict(bench, table.lookup(run.tier, name, environment, mc.setting()), tier)
        if fp32 is not None and fp32.status == REGRESSED:
            print(f"{name}: the FP32 model itself fails its baseline, which no INT8 recipe can fix: not searched. "
                  f"{fp32.message}", file=out)
            status = 1
            continue
        outcome = search.search(bench, search.Budget(args.max_trials, args.time_budget or float("inf")))
        report[name] = {"trials": [{**t.to_dict(), "passed": t.passed, "speedup": round(t.speedup, 3)} for t in outcome.trials],
                        "chosen": outcome.chosen.label if outcome.chosen else None, "stopped": outcome.reason,
                        "left": outcome.left}
        print(f"segcheck tune {name}: {len(outcome.trials)} trials on {len(bench.indices)} tuning images "
              f"({bench.images.describe()}); allowed INT8 drop pixAcc {tol.int8_drop_pixacc_points:g}, mIoU "
              f"{tol.int8_drop_miou_points:g}, class IoU {tol.int8_drop_class_iou_points:g} points; SQNR floor "
              f"{tol.sqnr_floor_db:g} dB", file=out)
        _table(outcome, out)
        for note in outcome.notes:
            print(f"note: {note}", file=out)
        print(f"stopped: {outcome.reason}", file=out)
        if args.png:
            print(f"chart: {chart.draw(outcome, tol.int8_drop_miou_points, name, args.png)}", file=out)
        if outcome.chosen is None:
            best = min(outcome.trials, key=lambda t: (t.excess(tol), t.drop_miou))
            print(f"{name}: no recipe passed; the closest is trial {outcome.trials.index(best) + 1}, {best.label}"
                  + (f"; left untried: {outcome.left}" if outcome.left else ""), file=out)
            status = 1
        elif outcome.chosen is not outcome.trials[0]:
            status = max(status, _adopt(outcome.chosen, bench, project, run, name, args, report[name], out))
        else:
            print(f"{name}: chosen {outcome.chosen.label}, as configured", file=out)
    if args.json_out:
        print(f"trials: {atomic.write_json(Path(args.json_out), report)}", file=out)
    return status


def _adopt(chosen, bench, project: Project, run: RunConfig, name: str, args, report: dict, out) -> int:
    """The chosen recipe's speed cost against the configured one's, the verifying gate run, then --write."""
    from ..tune import recipe_file, trial

    cost = trial.speed_cost(bench, chosen.calib, bench.config.calib)
    report["speed_cost"] = {**vars(cost), "ratio": round(cost.ratio, 4)}
    print(f"{name}: chosen {chosen.label} (mIoU drop {chosen.drop_miou:+.2f}); speed cost: {cost.describe()}", file=out)
    defaults = tier_defaults(run.tier)["calib"]
    if not args.no_verify:
        report["verified"] = verify(project, run, name, chosen.calib, defaults, out) == 0
        if not report["verified"]:
            print(f"{name}: the gate run with the chosen recipe failed: not written", file=out)
            return 1
    if args.write:
        print(recipe_file.write(project.path, name, chosen.calib, defaults) or f"{project.path}: already holds it", file=out)
    return 0

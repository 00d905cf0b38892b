"""`segcheck tune [MODEL]`: when INT8 fails the gate, search for a recipe it passes (segcheck.tune.search), print the
trials with their speed cost, draw them (--png), verify the chosen recipe with a real gate run of the model and write it
into the configuration (--write).

Trials are judged on tuning images, the last of the calibration split, disjoint from the gate's images and from every
recipe's calibration images; the gate's own images verify the choice."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..config import options
from ..config.project import Project
from ..config.run import tier_defaults
from ..errors import MissingResource, SegcheckError
from .configured import configured
from .plan import parse_budget

DEFAULT_IMAGES = {"synthetic": 48, "real": 300}  # the real tier's: NNCF's ranking subset
# The run's options tune takes: not the calibration's (tune starts from the configured recipe and writes into it), nor
# a shard (tune judges its own images).
RUN_OPTIONS = [o for o in options.RUN if o.dest not in ("shard", *options.CALIBRATION)]


def _positive_budget(text: str) -> float:
    seconds = parse_budget(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration such as 90m or 2h, got {text!r}")
    return seconds


def parser() -> options.Parser:
    p = options.Parser(prog="segcheck tune", description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("models", nargs="*", metavar="MODEL", help="configured models to tune (default: every one)")
    options.add_to_argparse(p, [o for o in options.GATE if o.dest in ("tier", "segcheck_config")])
    p.add_argument("--max-trials", type=options.positive, default=20, help="trials per model at most (default 20)")
    p.add_argument("--time-budget", type=_positive_budget, metavar="DURATION", help="stop starting trials after this (90m, 2h)")
    p.add_argument("--tune-images", type=options.positive, metavar="N",
                   help="the last N images of the calibration split judge the trials (synthetic tier 48, real tier 300)")
    p.add_argument("--write", action="store_true", help="write the chosen recipe into the model's [[models]].int8 table")
    p.add_argument("--png", help="also draw the trials (speed-up against INT8 drop) as a PNG here")
    p.add_argument("--json", dest="json_out", metavar="PATH", help="also write the trials, the choice and its speed cost here")
    p.add_argument("--no-verify", action="store_true", help="skip the gate run that verifies the chosen recipe")
    options.add_to_argparse(p, RUN_OPTIONS)
    return p


def _table(outcome, out) -> None:
    print(f"{'#':>2}  {'recipe':<46} {'mIoU drop [95%]':<22} {'pixAcc':>7} {'worst layer':>12} {'speed-up':>9}  verdict",
          file=out)
    for number, t in enumerate(outcome.trials, 1):
        interval = f"{t.drop_miou:+.2f} [{t.miou_interval[0]:+.2f}, {t.miou_interval[1]:+.2f}]"
        verdict = "PASS" if t.passed else "FAIL " + ", ".join(v.check for v in t.failing())
        print(f"{number:>2}  {t.label:<46} {interval:<22} {t.drop_pixacc:>+7.2f} {t.worst_sqnr_db:>9.1f} dB "
              f"{t.speedup:>8.2f}x  {verdict}{' (cached)' if t.cached else ''}", file=out)
        print(f"    {t.why}" + (f": {t.error}" if t.error else ""), file=out)


def main(argv, out=None) -> int:
    """Tune the models named (every configured one by default); exit 1 where one found no recipe, or its gate run failed."""
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
    from ..tune import chart, fp32_check, search, trial
    from ..tune.report import Tuned

    table = baselines.load(project.baselines, missing_ok=True)
    atomic.outputs_apart({"--json": args.json_out, "--png": args.png}, baselines.gate_inputs(project, table.path))  # before any trial
    convention = table.convention(run.tier, project.metric_convention, project.path)
    tier = table.tier_or_new(run.tier, convention)
    environment = fingerprint(run.cache_dir)
    status, reports = 0, {}
    for name in args.models or list(models):
        mc = models[name]
        if isinstance(mc, MissingResource):
            if args.models:
                raise SegcheckError(str(mc))
            print(f"{name}: not tuned: {mc}", file=out)
            continue
        if mc.calib is None:
            print(f"{name}: gated on the shipped INT8 export {mc.int8_export}, which segcheck cannot recalibrate: nothing "
                  "to tune (tune the recipe that made it where it was made)", file=out)
            continue
        tol = tier.tolerances_for(None, mc.tolerances, "int8")
        minimum = tier.least_speedup(environment.isa, mc)
        bench = trial.prepare(mc, tol, convention, args.tune_images or DEFAULT_IMAGES[run.tier], minimum)
        fp32 = fp32_check.verdict(bench, table.lookup(run.tier, name, environment.key(), mc.setting()), tier)
        if fp32 is not None and fp32.status == REGRESSED:
            print(f"{name}: the FP32 model itself fails its baseline, which no INT8 recipe can fix: not searched. "
                  f"{fp32.message}", file=out)
            status = 1
            continue
        outcome = search.search(bench, search.Budget(args.max_trials, args.time_budget or float("inf")))
        reports[name] = Tuned(outcome)
        print(f"segcheck tune {name}: {len(outcome.trials)} trials on {len(bench.indices)} tuning images "
              f"({bench.images.describe()}); allowed INT8 drop pixAcc {tol.int8_drop_pixacc_points:g}, mIoU "
              f"{tol.int8_drop_miou_points:g}, class IoU {tol.int8_drop_class_iou_points:g} points; SQNR floor "
              f"{tol.sqnr_floor_db:g} dB; least speed-up {minimum if minimum is not None else 'not gated'}", file=out)
        _table(outcome, out)
        for note in outcome.notes:
            print(f"note: {note}", file=out)
        print(f"stopped: {outcome.reason}", file=out)
        if args.png:
            print(f"chart: {chart.draw(outcome, tol.int8_drop_miou_points, name, args.png)}", file=out)
        if outcome.chosen is None:
            best = min(outcome.trials, key=lambda t: t.shortfall(tol))
            print(f"{name}: no recipe passed; the closest is trial {outcome.trials.index(best) + 1}, {best.label}"
                  + (f"; left untried: {outcome.left}" if outcome.left else ""), file=out)
            status = 1
        elif outcome.chosen is not outcome.trials[0]:
            index = [e.name for e in project.models].index(name)
            adopted, reports[name] = _adopt(reports[name], bench, project, index, args, out)
            status = max(status, adopted)
        else:
            print(f"{name}: chosen {outcome.chosen.label}, as configured", file=out)
        if args.json_out:  # after each model: a later one that fails loses nothing
            atomic.write_json(Path(args.json_out), {model: tuned.to_dict() for model, tuned in reports.items()})
    if args.json_out:
        print(f"trials: {args.json_out}", file=out)
    return status


def _adopt(tuned, bench, project: Project, index: int, args, out) -> tuple[int, object]:
    """(exit status, `tuned` completed): the chosen recipe's speed cost against the configured one's (against FP32
    where the configured trial, always the first, errored), the verifying gate run, then --write."""
    from ..tune import recipe_file, speed, verify

    name, run, chosen = bench.config.name, bench.config.run, tuned.outcome.chosen
    configured = tuned.outcome.trials[0]
    cost = speed.cost(bench, chosen.calib, None if configured.error else bench.config.calib)
    tuned = replace(tuned, speed_cost=cost)
    print(f"{name}: chosen {chosen.label} (mIoU drop {chosen.drop_miou:+.2f}); speed cost: {cost.describe()}", file=out)
    defaults = tier_defaults(run.tier)["calib"]
    if not args.no_verify:
        given = options.GateOptions.read(vars(args).get)
        argv = ["--tier", run.tier, "--segcheck-cache", str(run.cache_dir),
                *options.as_argv(given, [o for o in RUN_OPTIONS if o.dest != "segcheck_cache"])]
        verified = verify.gate(project, index, name, chosen.calib, defaults, argv)
        print(f"verifying with the gate: {verified.command}", file=out)
        print("\n".join(f"  | {line}" for line in verified.tail), file=out)
        tuned = replace(tuned, verified=verified.passed)
        if not verified.passed:
            print(f"{name}: the gate run with the chosen recipe failed: not written", file=out)
            return 1, tuned
    if args.write:
        print(recipe_file.write(project.path, index, name, chosen.calib, defaults) or f"{project.path}: already holds it",
              file=out)
    return 0, tuned

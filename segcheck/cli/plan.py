"""`segcheck plan`: what a run will do, what is missing (with the command that fetches it), and what it will cost.

The cost comes from a short probe on this machine (cases.plan): per network and crop, the seconds per image of the
fused FP32 forward, the INT8 forward and the unfused FP32 forward that calibration runs, kept in the cache.
"""

from __future__ import annotations

import argparse
import sys

from ..cases.plan import fp32_cached, plan, summary
from ..config import options
from .configured import configured


def parse_budget(text: str) -> float:
    """90m, 2h, 45s or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90m or 2h, got {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive duration such as 90m or 2h, got {text!r}")
    return seconds


def main(argv, out=sys.stdout) -> int:
    from ..measure.environment import fingerprint

    p = options.Parser(prog="segcheck plan", description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--tier", choices=("synthetic", "real"), help="default: the configuration's tier")
    p.add_argument("--segcheck-config", help="segcheck.toml or pyproject.toml (default: found from this folder)")
    p.add_argument("--target", type=parse_budget, help="wall time per CI job (90m, 2h): suggests a shard count")
    p.add_argument("--no-probe", action="store_true", help="use only costs probed before on this machine")
    options.add_to_argparse(p, [o for o in options.RUN if o.dest != "shard"])
    args = p.parse_args(argv)
    project, run, models = configured(args)
    environment = fingerprint(run.cache_dir)
    lines, estimates = plan(models, environment, run, do_probe=not args.no_probe)
    print(f"segcheck plan: {run.tier} tier, {len(models)} models from {project.path}", file=out)
    for line in lines + (summary(estimates, environment, args.target, fp32_cached(run, models)) if estimates
                         else ["no probed costs yet: run without --no-probe"]):
        print(line, file=out)
    return 0

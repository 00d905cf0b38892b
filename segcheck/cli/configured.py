"""What a subcommand's options name: the project configuration found from this folder, the ISA cap, the run and its
resolved models (`segcheck plan`, `segcheck tune`)."""

from __future__ import annotations

from pathlib import Path

from ..config import isa, options, refusals
from ..config.project import Project, find
from ..config.run import RunConfig, resolve_all
from ..errors import SegcheckError


def configured(args) -> tuple[Project, RunConfig, dict]:
    """(project, run, name -> ModelConfig or the MissingResource that skips it) for parsed `args` that carry
    --segcheck-config, --tier and the RUN options."""
    project = find(Path.cwd(), args.segcheck_config, Path.cwd())
    if project is None:
        raise SegcheckError(f"no segcheck configuration in {Path.cwd()} or above; add segcheck.toml or pass --segcheck-config")
    isa.select(args.isa or project.isa, "--isa" if args.isa else f"{project.path}: key 'isa'")
    given = options.GateOptions.read(vars(args).get)
    run = RunConfig.from_options(given, args.tier or project.tier)
    refusals.no_effect(given, run, project)
    models = resolve_all(project.models, run, project.path.name)
    refusals.beyond_the_splits(models)
    return project, run, models

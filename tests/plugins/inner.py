"""Inner gate runs of segcheck's own tests, started one way and handed what this process already made.

`run` starts pytest in this process (pytester) with the flags every inner run needs, outside CI (an inner run that
expects a missing row to skip must not fail because the outer run is in CI), and reads the outcomes from its JUnit XML.
`Reuse` is a plugin of segcheck's pytest_segcheck_reuse hook: it hands an inner run's case the parts that a case of the
same configuration made before, in this session or an earlier inner run, so only what a test is about is made again.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from segcheck.cases.model_case import PARTS, ModelCase
from segcheck.config.run import mxnet_home
from segcheck.models.cache import entries as cache_entries
from segcheck.peers.environment import ENV_VARIABLE as PEER_ENV_VARIABLE
from segcheck.peers.environment import environment_folder

from junit import details as junit_details

ROOT = Path(__file__).resolve().parents[2]  # the repository: its segcheck.toml configures the tutorial's six models
MXNET_HOME = mxnet_home()  # read on import, before pytester points HOME at its folder
PEER_ENV = environment_folder()  # the same: the peers' virtualenv is found under HOME's cache


# What an inner run may set otherwise without changing a part: where the cache is, how long backend work may take and
# whether evaluations are read from the cache (faults.Patched turns that off: the parts handed over stay this
# session's); for the models (not their evaluations or peer runs), which shard is evaluated; for FP32, the recipe.
NEUTRAL = {"cache_dir": Path(), "case_timeout": None, "eval_cache": True}
NEUTRAL_TO_MODELS = {**NEUTRAL, "shard": None}


def _part_key(config, part: str):
    """The configuration `part` depends on: settings that do not change it are blanked."""
    run = replace(config.run, **(NEUTRAL if part.endswith("-evaluation") or part.startswith("peer-") else NEUTRAL_TO_MODELS))
    if part.startswith("fp32"):
        return replace(config, calib=None, run=replace(run, calib={}))
    return replace(config, run=run)


class Reuse:
    """Hands over `parts` of `cases` (made now if they were not yet) to inner cases of a configuration that makes the
    same part (another cache folder or case timeout; another shard, for the models); with `keep`, also what each inner
    run's cases make, for the inner runs after it. `handed` lists (model, part) of each part handed over."""

    def __init__(self, *cases, parts=PARTS, keep: bool = False):
        self.made, self.keep, self.handed = [], keep, []  # made: (configuration, part, value); configurations hold dicts
        for case in cases:
            self.made += [(case.config, part, case.make(part)) for part in parts]

    def pytest_segcheck_reuse(self, case, part):
        key = _part_key(case.config, part)
        found = next((value for config, made, value in self.made if made == part and _part_key(config, made) == key), None)
        if found is not None:
            self.handed.append((case.name, part))
        return found

    def pytest_segcheck_release(self, case):
        if self.keep:
            self.made += [(case.config, part, value) for part, value in case.parts().items()]

    def pytest_sessionfinish(self, session):
        if not self.keep:
            return
        from segcheck.plugin.hooks import SESSION

        for case in session.config.stash[SESSION].cases.values():  # those the run did not release
            self.pytest_segcheck_release(case)


class Hooks:
    """segcheck's hooks as plugins answer them, for a ModelCase built outside pytest's hook relay: each hook given by
    name answers as given, every other None."""

    def __init__(self, **answers):
        vars(self).update(answers)

    def __getattr__(self, hook):  # reached only for a hook not given
        return lambda **arguments: None


def cached(segcheck, name, *parts) -> None:
    """Make `parts` of model `name`, its evaluations kept in the cache even under this run's --no-eval-cache (a later
    run or command reads them there); in a forked child, what they make reaches the parent only through the cache."""
    config = segcheck.model_config(name)
    case = segcheck.case(name) if segcheck.run.eval_cache else ModelCase(
        config.with_(run=config.run.with_(eval_cache=True)), segcheck.unavailable, segcheck.config.hook)
    for part in parts:
        case.make(part)


def empty_cache(cache: Path, folder: Path) -> Path:
    """`folder` made a segcheck cache holding `cache`'s data and environment probes (linked) and no model or
    evaluation."""
    (folder / "models").mkdir(parents=True)
    for name in ("datasets",) + tuple(p.name for p in Path(cache).glob("environment-*.json")):
        (folder / name).symlink_to(Path(cache) / name)
    return folder


def fresh_int8_cache(cache: Path, folder: Path, int8_evaluations: bool = False) -> Path:
    """`folder` made a segcheck cache holding `cache`'s FP32 models and FP32 evaluations, data and environment probes
    (linked) but no INT8 model: a run there calibrates anew. With `int8_evaluations`, `cache`'s INT8 evaluations too:
    each is keyed by the weights it ran, so a calibration that gives other weights never meets one."""
    empty_cache(cache, folder)
    for pattern in ("fp32-*",) + (("int8-eval-*",) if int8_evaluations else ()):
        for entry in (Path(cache) / "models").glob(pattern):
            (folder / "models" / entry.name).symlink_to(entry)
    return folder


def keep_evaluations(folder: Path, cache: Path) -> None:
    """The evaluations a run made in `folder` (a cache of fresh_int8_cache's) moved into `cache`, where the next
    run's fresh cache links them, so that a test whose subject is calibrating, not evaluating, evaluates once per
    key. Each entry moves whole, by one rename (none where the two are on other file systems)."""
    for kind in ("fp32-eval", "int8-eval"):
        for entry in cache_entries(folder, kind):
            if not entry.is_symlink() and not (Path(cache) / "models" / entry.name).exists():
                with contextlib.suppress(OSError):
                    entry.rename(Path(cache) / "models" / entry.name)


@dataclass
class Inner:
    """An inner run: {test name: (passed | failed | skipped, message)}, pytester's result, its results JSON."""

    outcomes: dict
    result: object
    results: Path | None
    details: dict  # {test name: junit.Outcome}


def forget_inner_imports() -> None:
    """pytester takes the modules an inner run imported back out of sys.modules, but not off their parent packages
    (segcheck.plugin.suite stays an attribute of segcheck.plugin): such a module keeps the inner run's import hook, its
    configuration and through them the plugins handed to it, with the networks they hold, alive until the next run."""
    for name in [name for name in sys.modules if name.startswith("segcheck.")]:
        for sub in [s for s, value in vars(sys.modules[name]).items() if isinstance(value, type(sys)) and
                    value.__name__ == f"{name}.{s}" and f"{name}.{s}" not in sys.modules]:
            delattr(sys.modules[name], sub)


def run(pytester, *args, cache=None, results: Path | None = None, rootdir: Path | None = ROOT, plugins=(),
        environ: dict | None = None) -> Inner:
    """pytest `args` in this process: no cache provider, quiet, JUnit XML read back; the repository as rootdir (None:
    the pytester folder), `cache` as segcheck's cache, `results` for the results JSON, `environ` set for the run."""
    junit = pytester.path / "inner-junit.xml"
    junit.unlink(missing_ok=True)
    flags = ["-p", "no:cacheprovider", "-q", f"--junitxml={junit}"]
    flags += [f"--rootdir={rootdir}"] if rootdir else []
    flags += [f"--segcheck-cache={cache}"] if cache else []
    flags += [f"--results-json={results}"] if results else []
    paths = [str(ROOT / a) if rootdir and a.startswith(("tests/", "segcheck/")) else a for a in args]
    with pytest.MonkeyPatch.context() as env:
        env.delenv("CI", raising=False)
        # pytester points HOME at its folder: GluonCV's store (~/.mxnet) would then be another path, and every case
        # another configuration than this session's, so that no part would be handed over
        env.setenv("MXNET_HOME", str(MXNET_HOME))
        env.setenv(PEER_ENV_VARIABLE, str(PEER_ENV))
        for name, value in (environ or {}).items():
            env.setenv(name, value)
        result = pytester.runpytest_inprocess(*flags, *paths, plugins=list(plugins))
    forget_inner_imports()
    # pytester records every hook call of an inner run and keeps the record until the outer test ends: segcheck's
    # hooks carry the inner cases and their models (870 MB a run of the FCN); nothing here reads the record
    getattr(getattr(result, "reprec", None), "calls", []).clear()
    found = junit_details(junit) if junit.is_file() else {}
    return Inner({name: (o.outcome, o.message) for name, o in found.items()}, result, results, found)

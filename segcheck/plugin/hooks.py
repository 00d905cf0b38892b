"""segcheck's pytest plugin (entry point pytest11 'segcheck'): options, the gate's cases, and the hooks.

In a repository with a segcheck configuration (segcheck.toml, or [tool.segcheck] in pyproject.toml) it
adds the gate's tests, shipped in segcheck.plugin.suite, to the run and parametrizes them by configured model.
Without one it is inert: it adds its options and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..config import isa, options, threads
from ..config.project import find
from ..errors import SegcheckError
from . import suite

SESSION = pytest.StashKey["SegcheckSession"]()
SUITE = suite.FOLDER
MARKERS = {
    "fp32": "FP32 (fused oneDNN) model cases", "int8": "INT8 model cases", "bench": "latency benchmarks (pytest-benchmark)",
    "peer": "the models exported to ONNX and gated on a peer runtime (--peer; segcheck peer install)",
    "real": "configured weights and data (the real tier)", "synthetic": "seeded models on generated data (the synthetic tier)",
}


def pytest_addhooks(pluginmanager):
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser):
    options.add_to_pytest(parser)


def _session(config):
    return config.stash.get(SESSION, None)


def _select_isa(level: str | None, project) -> None:
    """Cap oneDNN as --isa (`level`), else the configuration's `isa`, says (amx: with the tile permission)."""
    if level is not None:
        isa.select(level, "--isa")
    elif project is not None and project.isa:
        isa.select(project.isa, f"{project.path}: key 'isa'")
    else:
        isa.select(None, "this run")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """MXNet's threads are given first, before reading the configuration loads GluonCV and MXNet (config.threads), and
    the ISA cap is set here, before any conftest or test module can make MXNet run: oneDNN reads it once."""
    threads.select()
    known = early_config.known_args_namespace
    try:
        project = find(early_config.rootpath, getattr(known, "segcheck_config", None), early_config.invocation_params.dir)
    except SegcheckError:
        project = None  # pytest_configure reports a broken configuration
    try:
        _select_isa(getattr(known, "isa", None), project)
    except SegcheckError as err:
        raise pytest.UsageError(str(err)) from None


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    given_options = options.GateOptions.read(config.getoption)
    try:
        options.refuse_empty(given_options)
        project = find(config.rootpath, given_options.segcheck_config, config.invocation_params.dir)
        if project is None:
            given = given_options.given()
            if given:
                raise SegcheckError(f"{', '.join(given)}: no segcheck configuration (segcheck.toml, or [tool.segcheck] in "
                                    f"pyproject.toml) in {config.invocation_params.dir} or above, so these options have no effect")
            return
        _select_isa(given_options.isa, project)
        from .session import SegcheckSession

        session = SegcheckSession.start(config, project, given_options)
    except SegcheckError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "segcheck-session")  # its hooks: reports, summary, recording
    for name, what in {**MARKERS, **session.markers()}.items():
        config.addinivalue_line("markers", f"{name}: {what}")
    if config.args_source != pytest.Config.ArgsSource.ARGS and not any(_contains(a, SUITE) for a in config.args):
        config.args.append(str(SUITE))


def _contains(arg: str, folder: Path) -> bool:
    path = Path(arg.split("::")[0]).resolve()
    return path == folder or folder in path.parents or path in folder.parents


def pytest_collect_file(file_path, parent):
    """The suite's modules are collected whatever the project's python_files patterns say."""
    if _session(parent.config) is None or file_path.parent != SUITE or not file_path.name.startswith("test_"):
        return None
    from _pytest.python import path_matches_patterns

    if path_matches_patterns(file_path, parent.config.getini("python_files")):
        return None  # pytest's own collector takes it
    return pytest.Module.from_parent(parent, path=file_path)


def pytest_generate_tests(metafunc):
    session = _session(metafunc.config)
    if session is None or Path(metafunc.module.__file__).resolve().parent != SUITE:
        return
    if "peer" in metafunc.fixturenames:
        metafunc.parametrize(("case", "peer"), session.peer_pairs(), indirect=["case"], scope="session")
    elif "case" in metafunc.fixturenames:
        metafunc.parametrize("case", session.params(), indirect=True, scope="session")
    if "precision" in metafunc.fixturenames:
        metafunc.parametrize("precision", [pytest.param(p, id=p, marks=getattr(pytest.mark, p)) for p in ("fp32", "int8")])


def pytest_report_header(config):
    session = _session(config)
    if session is not None and session.run.tier == "real":
        from ..cases.plan import header

        return [header(session.models, session.environment, session.run)]
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    """pytest-benchmark's machine info carries the environment (its key: ISA, oneDNN, MXNet; its provenance, the
    threads among it), so that --benchmark-compare warns when saved runs come from another machine."""
    session = _session(config)
    if session is not None:
        machine_info["segcheck"] = session.environment.to_dict()


@pytest.fixture(scope="session")
def segcheck(pytestconfig):
    """This run's SegcheckSession: configured models, baselines, tolerances, and what tests report."""
    found = _session(pytestconfig)
    if found is None:
        pytest.skip("no segcheck configuration in this repository")
    return found


@pytest.fixture(scope="session")
def case(request, segcheck):
    """One configured model (parametrized by name): FP32 and INT8 built lazily, each evaluated once."""
    return segcheck.case(request.param)


@pytest.fixture(scope="session")
def latencies(segcheck) -> dict:
    """(model, precision) -> pytest-benchmark stats of the latency benchmarks of this process."""
    return segcheck.latencies

"""Wires segcheck's pytest options, markers and fixtures; the logic lives in the segcheck package."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import Phase, settings

from segcheck import baselines, environment, report
from segcheck.cases import ModelCase
from segcheck.catalog import SEED_MODELS
from segcheck.config import TIERS, RunConfig, calib_for
from segcheck.errors import MissingResource, SegcheckError
from segcheck.models.quantize import CALIB_MODES, QUANTIZED_DTYPES

pytest_plugins = ["pytester"]  # the self-tests run the gate in process
CONFIG = pytest.StashKey[RunConfig]()
RESULTS = pytest.StashKey[report.RunResults]()

# Hypothesis: "segcheck" is the suite's default; "segcheck-selfcheck" only needs a failure found, not
# shrunk (shrinking from an empty example database costs 6-20 s per inner run of the self-checks).
settings.register_profile("segcheck", deadline=None, max_examples=60)
settings.register_profile("segcheck-selfcheck", settings.get_profile("segcheck"), database=None,
                          phases=(Phase.explicit, Phase.reuse, Phase.generate))


def _count_or_all(text: str):
    return text if text == "all" else int(text)


def pytest_addoption(parser):
    group = parser.getgroup("segcheck", "segcheck: INT8 segmentation gate")
    group.addoption("--tier", choices=TIERS, default="synthetic",
                    help="synthetic (default: seeded models on generated data) or real (pretrained weights and datasets)")
    group.addoption("--crop-size", type=int, help="evaluation crop (synthetic default 64, real default 480)")
    group.addoption("--num-images", type=_count_or_all, help="evaluate the first N val images, or 'all' (synthetic default 48, all of its val split)")
    group.addoption("--batch-size", type=int, help="evaluation batch size (default 1, as the seed)")
    group.addoption("--calib-mode", choices=CALIB_MODES, help="calibration mode (default naive)")
    group.addoption("--calib-dtype", choices=QUANTIZED_DTYPES, help="quantized dtype (default auto)")
    group.addoption("--calib-batches", type=int, help="calibration batches (synthetic default 2, real default 5)")
    group.addoption("--calib-batch-size", type=int, help="images per calibration batch (synthetic default 16, real 32)")
    group.addoption("--calib-split", help="calibration split (default train, disjoint from val; 'val' reproduces the seed)")
    group.addoption("--segcheck-cache", help="segcheck's model and data cache (default $SEGCHECK_CACHE_DIR or ~/.cache/segcheck)")
    group.addoption("--voc-root", help="folder holding VOC2012/ (else $SEGCHECK_VOC_ROOT, else ~/.mxnet/datasets/voc)")
    group.addoption("--coco-root", help="COCO 2017 folder (else $SEGCHECK_COCO_ROOT, else ~/.mxnet/datasets/coco)")
    group.addoption("--require-real", action="store_true", help="fail, instead of skipping, when weights or data are missing")
    group.addoption("--skip-bad", action="store_true", help="leave out unreadable samples with a warning instead of failing")
    group.addoption("--baselines", default=str(baselines.DEFAULT_PATH), help="baseline table (default: %(default)s)")
    group.addoption("--update-baselines", action="store_true", help="record this run's synthetic-tier rows (shows the diff)")
    group.addoption("--results-json", help="where this run's results go (default <segcheck-cache>/last-run.json)")
    group.addoption("--report-png", help="also draw the Performance table as a PNG chart")
    group.addoption("--latency-warmup", type=int, default=2, help="warm-up rounds before each latency benchmark")


def _run_config(config) -> RunConfig:
    opt = config.getoption
    tier = opt("--tier")
    calib = calib_for(tier, mode=opt("--calib-mode"), dtype=opt("--calib-dtype"), num_batches=opt("--calib-batches"),
                      batch_size=opt("--calib-batch-size"), split=opt("--calib-split"))
    num_images = {None: RunConfig.for_tier(tier).num_images, "all": None}.get(opt("--num-images"), opt("--num-images"))
    return RunConfig.for_tier(
        tier, crop_size=opt("--crop-size"), batch_size=opt("--batch-size"), calib=calib,
        cache_dir=Path(opt("--segcheck-cache")).expanduser() if opt("--segcheck-cache") else None,
        voc_root=opt("--voc-root"), coco_root=opt("--coco-root"), skip_bad=opt("--skip-bad") or None,
    ).with_(num_images=num_images)


def pytest_configure(config):
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile("segcheck")
    try:
        run = _run_config(config)
    except SegcheckError as err:
        raise pytest.UsageError(str(err)) from None
    if config.getoption("--update-baselines") and run.tier != "synthetic":
        raise pytest.UsageError("--update-baselines records synthetic-tier rows only: the real tier's rows are the seed's table")
    config.stash[CONFIG] = run
    config.stash[RESULTS] = report.RunResults(tier=run.tier, setting=run.setting())


SPEC_PARAMS = [
    pytest.param(s, id=s.name, marks=[getattr(pytest.mark, s.dataset), getattr(pytest.mark, s.arch)]) for s in SEED_MODELS
]
PRECISION_PARAMS = [pytest.param(p, id=p, marks=getattr(pytest.mark, p)) for p in ("fp32", "int8")]


def pytest_generate_tests(metafunc):
    """Model cases read fcn_resnet101_voc-fp32: the model first, then the precision."""
    if "spec" in metafunc.fixturenames:
        metafunc.parametrize("spec", SPEC_PARAMS, indirect=True, scope="session")
    if "precision" in metafunc.fixturenames:
        metafunc.parametrize("precision", PRECISION_PARAMS)


def pytest_collection_modifyitems(config, items):
    tier_mark = getattr(pytest.mark, config.stash[CONFIG].tier)
    for item in items:
        if "spec" in item.fixturenames:
            item.add_marker(tier_mark)


@pytest.fixture(scope="session")
def run_config(pytestconfig) -> RunConfig:
    return pytestconfig.stash[CONFIG]


@pytest.fixture(scope="session")
def results(pytestconfig) -> report.RunResults:
    return pytestconfig.stash[RESULTS]


@pytest.fixture(scope="session")
def baseline_table(pytestconfig):
    return baselines.load(pytestconfig.getoption("--baselines"))


@pytest.fixture(scope="session")
def tier(baseline_table, run_config, results):
    chosen = baseline_table.tier(run_config.tier)
    results.convention = chosen.metric_convention
    return chosen


@pytest.fixture(scope="session")
def env(run_config, results) -> dict:
    found = environment.fingerprint(run_config.cache_dir)
    results.environment = found
    return found


@pytest.fixture(scope="session")
def spec(request):
    return request.param


@pytest.fixture(scope="session")
def case(spec, run_config, pytestconfig) -> ModelCase:
    """One seed model: FP32 and INT8 built lazily through the cache, evaluated once per session."""

    def unavailable(err: MissingResource):
        if pytestconfig.getoption("--require-real"):
            pytest.fail(f"--require-real: {err}", pytrace=False)
        pytest.skip(str(err))

    return ModelCase(spec, run_config, unavailable)


@pytest.fixture(scope="session")
def baseline_row(case, tier, baseline_table, env, run_config, results):
    """This case's baseline row, or a skip naming why there is none (other environment or setting)."""
    found = baseline_table.lookup(run_config.tier, case.spec.name, env, run_config.setting())
    if found.row is not None:
        results.model(case.spec.name).baseline = vars(found.row)
    return found


@pytest.fixture(scope="session")
def latencies() -> dict:
    """(model, precision) -> pytest-benchmark stats of the latency benchmarks of this process."""
    return {}


def pytest_sessionfinish(session):
    config = session.config
    results = config.stash[RESULTS]
    if hasattr(config, "workeroutput"):  # pytest-xdist worker: hand the results to the controller
        config.workeroutput["segcheck_results"] = results.to_dict()


def pytest_testnodedown(node, error):
    worker = getattr(node, "workeroutput", {}).get("segcheck_results")
    if worker:
        node.config.stash[RESULTS].merge(report.RunResults.from_dict(worker))


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput"):
        return
    results = config.stash[RESULTS]
    if not results.models:
        return
    run = config.stash[CONFIG]
    write = terminalreporter.write_line
    terminalreporter.section("segcheck Performance table")
    for line in report.markdown(results).splitlines():
        write(line)
    target = config.getoption("--results-json") or report.last_run_path(run.cache_dir)
    try:
        write(f"results: {report.save(results, target)} (segcheck report prints them again)")
        if config.getoption("--report-png"):
            write(f"chart: {report.chart(results, config.getoption('--report-png'))}")
        if config.getoption("--update-baselines"):
            rows = report.rows_to_record(results)
            diff = baselines.record(config.getoption("--baselines"), run.tier, results.environment, run.setting(), rows.rows)
            for line in (diff or "baselines.json already holds these rows\n").splitlines():
                write(line)
            for name, reason in rows.missing.items():
                write(f"not recorded: {name}: {reason}")
    except SegcheckError as err:
        write(f"segcheck: {err}", red=True)

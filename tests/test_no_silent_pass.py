"""No silent pass: a check that compared nothing says so, and fails where a CI gate needs it to have compared; what a
run did otherwise than asked is a warning in the table and the results; an unknown never widens a comparison."""

import shutil
from pathlib import Path

import inner
import pytest
from inner import Reuse

from segcheck.gate import baselines
from segcheck.models import build
from segcheck.results import report
from segcheck.results.records import RunResults

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fcn_resnet101_voc"
COMPARING = ["segcheck/plugin/suite/test_quantization.py", "segcheck/plugin/suite/test_accuracy.py", "-k",
             f"{MODEL} and (calibration_table or layer_error or digest or agreement)"]
GOLDEN = {f"test_int8_calibration_table[{MODEL}]", f"test_int8_layer_error[{MODEL}]", f"test_outputs_digest[{MODEL}-fp32]",
          f"test_outputs_digest[{MODEL}-int8]", f"test_int8_agreement[{MODEL}]"}


@pytest.mark.selfcheck
@pytest.mark.parametrize("ci", [False, True], ids=["local", "ci"])
def test_without_golden_records_the_checks_that_compare_with_them_skip_and_fail_in_ci(ci, segcheck, pytester, tmp_path):
    """baselines.json without its golden records beside it: each check that compares with them says what is missing;
    a SKIP on a developer's machine, a failure under CI=true (it used to pass in CI, the range check behind most kills
    gone without a word)."""
    table = tmp_path / "baselines.json"
    shutil.copy(ROOT / "baselines.json", table)
    parts = ("fp32", "int8", "fp32-evaluation", "int8-evaluation", "localisation")
    done = inner.run(pytester, *COMPARING, f"--baselines={table}", cache=segcheck.run.cache_dir,
                     plugins=[Reuse(segcheck.case(MODEL), parts=parts)], environ={"CI": "true"} if ci else None)
    outcomes = {name: o for name, o in done.details.items() if name in GOLDEN}
    assert set(outcomes) == GOLDEN, done.details
    for name, o in outcomes.items():
        assert o.outcome == ("failed" if ci else "skipped"), (name, o)
        assert ("CI=true: " in o.message) == ci and ("golden" in o.message or "recorded" in o.message), (name, o.message)


def test_an_unknown_part_of_this_runs_environment_never_widens_the_tier():
    """A oneDNN probe that read nothing leaves oneDNN unknown: the comparison takes the recorded oneDNN for this run's,
    so it is made at the exact (or isa) tier, never at version's."""
    recorded = {"mxnet": "1.9.1", "onednn": "2.4.4", "isa": "avx512_vnni"}
    assert baselines.difference(recorded, {**recorded, "onednn": baselines.UNKNOWN}) == "exact"
    assert baselines.difference(recorded, {**recorded, "onednn": baselines.UNKNOWN, "isa": "avx2"}) == "isa"
    assert baselines.difference(recorded, {**recorded, "mxnet": "1.8.0.post0", "onednn": baselines.UNKNOWN}) == "version"


def test_what_a_run_did_otherwise_than_asked_is_a_warning_in_the_table_and_the_results(tmp_path):
    results = RunResults(tier="synthetic", convention="present", environment={"isa": "avx2"})
    results.model(MODEL).setting = {"crop_size": 64}
    results.warnings.append("hybridize(backend='MKLDNN') failed on MXNet 1.8.0: FP32 was fused through get_backend_symbol")
    text = report.markdown(results)
    assert "warning: hybridize(backend='MKLDNN') failed on MXNet 1.8.0" in text
    assert report.load(report.save(results, tmp_path / "run.json")).warnings == results.warnings


@pytest.mark.selfcheck
def test_a_fallback_route_taken_in_the_run_reaches_its_warnings(segcheck, pytester, monkeypatch):
    """MXNet 1.8 cannot hybridize these networks onto oneDNN and segcheck fuses them another way (models.build.fuse):
    the route is said in the run's results and table, not only in a log line; it travels in the fused-graph test's
    report, so it reaches the results from pytest-xdist workers too."""
    route = "hybridize(backend='MKLDNN') failed on MXNet 1.8.0: FP32 was fused through get_backend_symbol('MKLDNN')"
    monkeypatch.setattr(build, "FALLBACKS", [route])
    done = inner.run(pytester, "segcheck/plugin/suite/test_accuracy.py", "-k", f"{MODEL} and fp32_graph",
                     cache=segcheck.run.cache_dir, results=pytester.path / "run.json",
                     plugins=[Reuse(segcheck.case(MODEL), parts=("fp32", "fp32-evaluation"))])
    assert report.load(pytester.path / "run.json").warnings == [route]
    assert f"warning: {route}" in done.result.stdout.str()

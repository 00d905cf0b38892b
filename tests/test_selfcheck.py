"""Regression-injection self-tests: the gate must fail the right test, naming the cause, for each fault.

Each case runs part of the gate on fcn_resnet101_voc in an inner pytest run (in process, through
pytester) with one fault injected by tests/faults.py, sharing this session's model cache, and reads
the outcome from its JUnit XML. Every selection also holds tests the fault must leave passing: the failures must be exactly the
expected ones. The clean control is this session's own gate on the same model, same cache and setting.
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fcn_resnet101_voc"
ACCURACY = ["tests/test_accuracy.py", "-k", f"{MODEL} and (test_accuracy or int8_drop)"]
FP32_ACCURACY = ["tests/test_accuracy.py", "-k", f"{MODEL} and test_accuracy"]
LATENCY = ["tests/test_latency.py", "tests/test_accuracy.py", "-k", f"{MODEL} and (latency or speedup or int8_graph)"]

pytestmark = pytest.mark.selfcheck
sys.path.insert(0, str(ROOT / "tests"))


def run_gate(fault, args, run_config, pytester):
    """{test id: (outcome, message)} of a pytest run of `args` with `fault` injected."""
    from faults import Fault

    junit = pytester.path / f"{fault}.xml"
    paths = [str(ROOT / a) if a.startswith("tests/") else a for a in args]
    done = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT), "--segcheck-cache", str(run_config.cache_dir),
        "--junitxml", str(junit), *paths, plugins=[Fault(fault)])
    assert junit.is_file(), f"the gate did not run:\n{done.stdout.str()[-3000:]}"
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        outcome = "failed" if problem is not None else "skipped" if skipped is not None else "passed"
        message = (problem if problem is not None else skipped).get("message", "") if outcome != "passed" else ""
        outcomes[case.get("name")] = (outcome, message)
    return outcomes


def failed(outcomes):
    return {name: message for name, (outcome, message) in outcomes.items() if outcome == "failed"}


CASES = {
    "ranges-shrunk": (ACCURACY, {
        f"test_accuracy[{MODEL}-int8]": "accuracy regressed",
        f"test_int8_drop[{MODEL}]": "INT8 fell below FP32 by more than the tolerance",
    }),
    "ranges-blown-up": (ACCURACY, {
        f"test_accuracy[{MODEL}-int8]": "accuracy regressed",
        f"test_int8_drop[{MODEL}]": "INT8 fell below FP32 by more than the tolerance",
    }),
    "every-conv-excluded": (LATENCY, {
        f"test_int8_graph_is_quantized_and_calibrated[{MODEL}]": "convolutions left in FP32 (0% INT8)",
        f"test_int8_speedup[{MODEL}]": "is below the minimum",
    }),
    "fp32-weights-perturbed": (FP32_ACCURACY, {
        f"test_accuracy[{MODEL}-fp32]": "accuracy regressed",
    }),
    "int8-slowed": (LATENCY, {
        f"test_int8_speedup[{MODEL}]": "is below the minimum",
    }),
}


@pytest.mark.parametrize("fault", CASES)
def test_injected_regression_fails_the_right_test_naming_the_cause(fault, run_config, pytester):
    args, expected = CASES[fault]
    outcomes = run_gate(fault, args, run_config, pytester)
    got = failed(outcomes)
    assert set(got) == set(expected), f"{fault}: failed {sorted(got)}, expected {sorted(expected)}"
    passed = [name for name, (outcome, _) in outcomes.items() if outcome == "passed"]
    assert len(passed) + len(got) == len(outcomes) and passed, f"{fault}: some tests neither passed nor failed: {outcomes}"
    for name, cause in expected.items():
        assert cause in got[name], f"{fault}: {name} failed with {got[name]!r}, expected it to say {cause!r}"


@pytest.fixture
def hypothesis_profile_restored(pytestconfig):
    """The inner run loads its own hypothesis profile, which is process-wide: put this session's back."""
    yield
    settings.load_profile(pytestconfig.getoption("hypothesis_profile", None) or "segcheck")


def test_metric_bug_fails_the_property_tests(run_config, pytester, hypothesis_profile_restored, monkeypatch):
    # @given keeps the settings in force when its module was imported: the inner run imports it afresh.
    monkeypatch.delitem(sys.modules, "test_metrics", raising=False)
    selection = ["tests/test_metrics.py", "-k", "ignored_pixels or gluoncv or unit_interval or bad_input",
                 "--hypothesis-profile", "segcheck-selfcheck"]
    outcomes = run_gate("ignore-label-counted", selection, run_config, pytester)
    got = failed(outcomes)
    assert "test_ignored_pixels_never_change_any_number" in got and "test_equals_gluoncv_segmentation_metric" in got
    assert sum(outcome == "passed" for outcome, _ in outcomes.values()) > 0

"""Regression-injection self-tests: the gate must fail the right test, naming the cause, for each fault.

Each case runs part of the gate on fcn_resnet101_voc in an inner pytest run (in process, through
pytester) with one fault injected by tests/plugins/faults.py, sharing this session's model cache, and reads
the outcome from its JUnit XML. Every selection also holds tests the fault must leave passing: the failures must be exactly the
expected ones. The clean control is this session's own gate on the same model, same cache and setting;
in the precision a fault leaves alone, the inner run takes this session's model and evaluation.
"""

import io
import json
import sys
from pathlib import Path

import inner
import pytest
from hypothesis import settings
from inner import Reuse

from segcheck.cli import commands
from segcheck.gate.checks import CHANGED, CHECK_ORDER, FAILING, PASS, SKIP, of_test_id
from segcheck.measure import guard
from segcheck.peers import environment as peers
from segcheck.results import report

from faults import Fault

MODEL = "fcn_resnet101_voc"
# "test_accuracy" also matches its module, so these select every check of test_accuracy.py but the deploy round
# trip (an export and re-import no fault here touches)
ACCURACY = ["segcheck/plugin/suite/test_accuracy.py", "-k", f"{MODEL} and (test_accuracy or int8_drop) and not deploy"]  # agreement too
FP32_ACCURACY = ["segcheck/plugin/suite/test_accuracy.py", "-k", f"{MODEL} and test_accuracy and not deploy"]
# the speed-up is judged on its own rounds timed in turn: the benchmarks' adaptive rounds are kept short (5 at least)
LATENCY = ["segcheck/plugin/suite/test_latency.py", "segcheck/plugin/suite/test_accuracy.py", "--benchmark-max-time=0.2",
           "-k", f"{MODEL} and (latency or speedup or int8_graph)"]
LAYERS = ["segcheck/plugin/suite/test_quantization.py", "-k", f"({MODEL} or psp_resnet101_voc) and (layer_error or calibration_table)"]
# a 1.5 s case timeout: the hang must fail its case within it, and the run go on. The INT8 models and both evaluations
# of its selection are put in the cache before the inner run (made there, in a child, if they were not), so the only
# child the inner run forks is the hanging one: the PSPNet's cases read their evaluations, and each INT8 model has run
# once by then, so it is loaded without a first-run child (the FCN's INT8 model is replaced by the fault, so its
# evaluation is never read from the cache). The inner run is handed nothing. That a process forks its next child after
# stopping a hung one, test_guard checks.
HANG_TIMEOUT_S = 1.5
HANG_MODELS = (MODEL, "psp_resnet101_voc")
HANG = ["segcheck/plugin/suite/test_accuracy.py", f"--case-timeout={HANG_TIMEOUT_S}", "-k",
        f"({' or '.join(HANG_MODELS)}) and int8 and not deploy"]

pytestmark = pytest.mark.selfcheck


def run_gate(fault, args, segcheck, pytester, reuse=()):
    """{test id: (outcome, message)} of a pytest run of `args` with `fault` injected (its results JSON beside it); the
    inner run takes this session's model and evaluation of MODEL in the precisions `reuse` names (those the fault leaves
    alone)."""
    parts = [part for precision in reuse for part in (precision, f"{precision}-evaluation")]
    handing = [Reuse(segcheck.case(MODEL), parts=parts)] if parts else []
    done = inner.run(pytester, *args, cache=segcheck.run.cache_dir, results=pytester.path / f"{fault}.json",
                     plugins=[Fault(fault), *handing])
    assert done.outcomes, f"the gate did not run:\n{done.result.stdout.str()[-3000:]}"
    handed = {part for reused in handing for _, part in reused.handed}
    assert set(reuse) <= handed, f"{fault}: the inner run made its own {sorted(set(reuse) - handed)} (handed {sorted(handed)})"
    return done.outcomes


def failed(outcomes):
    return {name: message for name, (outcome, message) in outcomes.items() if outcome == "failed"}


CASES = {
    "ranges-shrunk": (ACCURACY, {
        f"test_accuracy[{MODEL}-int8]": "accuracy regressed",
        f"test_int8_agreement[{MODEL}]": "agreement with FP32 regressed",
        f"test_int8_drop[{MODEL}]": "INT8 fell below FP32 by more than the tolerance",
        f"test_int8_class_drop[{MODEL}]": "points below FP32",
    }),
    "ranges-blown-up": (ACCURACY, {
        f"test_accuracy[{MODEL}-int8]": "accuracy regressed",
        f"test_int8_agreement[{MODEL}]": "agreement with FP32 regressed",
        f"test_int8_drop[{MODEL}]": "INT8 fell below FP32 by more than the tolerance",
        f"test_int8_class_drop[{MODEL}]": "points below FP32",
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
    # the FCN's INT8 forward blocks in C in the evaluation's child: stopped at HANG_TIMEOUT_S, only that case fails
    "int8-native-hang": (HANG, {  # every check of the FCN's INT8 evaluation fails with it (a crash is remembered)
        name: f"{MODEL} int8 evaluation: the backend did not answer within {HANG_TIMEOUT_S} s" for name in (
            f"test_accuracy[{MODEL}-int8]", f"test_int8_drop[{MODEL}]", f"test_int8_class_drop[{MODEL}]", f"test_int8_agreement[{MODEL}]")
    }),
    # the abort hits the FCN's per-layer comparison, run in a child process: only that case fails, the PSPNet's passes
    # (read from the cache, as the fault leaves it alone; that a child forks after a crash, test_guard checks)
    "backend-abort": (LAYERS, {
        f"test_int8_layer_error[{MODEL}]": f"{MODEL} per-layer comparison: the backend died with SIGABRT",
    }),
}


# The precision each fault leaves alone: the inner run reuses this session's model and evaluation there. The abort
# leaves both alone, but the FCN's models must be built in the inner run, where the fault marks them as its own.
UNTOUCHED = {"ranges-shrunk": ("fp32",), "ranges-blown-up": ("fp32",), "every-conv-excluded": ("fp32",),
             "int8-slowed": ("fp32",), "fp32-weights-perturbed": ("int8",), "backend-abort": (),
             "int8-native-hang": ()}


@pytest.mark.parametrize("fault", CASES)
def test_injected_regression_fails_the_right_test_naming_the_cause(fault, segcheck, pytester):
    args, expected = CASES[fault]
    for name in HANG_MODELS if args is HANG else ():  # into the cache, in a child: the inner run forks only the hanging child
        # (the FCN's INT8 evaluation is never read from the cache: the fault replaces its model)
        parts = ("int8", "fp32-evaluation") + (("int8-evaluation",) if name != MODEL else ())
        guard.isolated(f"{name} INT8 model and evaluations", lambda: inner.cached(segcheck, name, *parts))
    outcomes = run_gate(fault, args, segcheck, pytester, reuse=UNTOUCHED[fault])
    got = failed(outcomes)
    assert set(got) == set(expected), f"{fault}: failed {sorted(got)}, expected {sorted(expected)}"
    passed = [name for name, (outcome, _) in outcomes.items() if outcome == "passed"]
    assert len(passed) + len(got) == len(outcomes) and passed, f"{fault}: some tests neither passed nor failed: {outcomes}"
    for name, cause in expected.items():
        assert cause in got[name], f"{fault}: {name} failed with {got[name]!r}, expected it to say {cause!r}"
    status_agrees_with_outcomes(pytester.path / f"{fault}.json", outcomes)


def status_agrees_with_outcomes(results_json, outcomes):
    """The results JSON, the Performance table and `segcheck report` say what the tests did, check by check."""
    results = report.load(results_json)
    model = results.models[MODEL]
    recorded = {check: c.status for check, c in model.checks.items()}
    ran = {of_test_id(name): outcome for name, (outcome, _) in outcomes.items() if f"[{MODEL}" in name}
    assert set(recorded) == set(ran), (recorded, ran)
    for check, outcome in ran.items():
        assert (recorded[check] in FAILING) == (outcome == "failed") and (recorded[check] == SKIP) == (outcome == "skipped"), (check, recorded, ran)
    failing = [c for c in CHECK_ORDER if c in ran and ran[c] == "failed"]
    changed = [c for c in CHECK_ORDER if c in ran and recorded[c] == CHANGED]
    assert model.status() == (f"{recorded[failing[0]]} {failing[0]}" if failing else f"CHANGED {changed[0]}" if changed else PASS)
    out = io.StringIO()
    commands.report(["--results", str(results_json)], out)
    assert f" | {model.status()}\n" in out.getvalue() and out.getvalue() == report.markdown(results)


@pytest.fixture
def hypothesis_profile_restored(pytestconfig):
    """The inner run loads its own hypothesis profile, which is process-wide: put this session's back."""
    yield
    settings.load_profile(pytestconfig.getoption("hypothesis_profile", None) or "segcheck")


def test_metric_bug_fails_the_property_tests(segcheck, pytester, hypothesis_profile_restored, monkeypatch):
    # @given keeps the settings in force when its module was imported: the inner run imports it afresh.
    monkeypatch.delitem(sys.modules, "test_metrics", raising=False)
    selection = ["tests/test_metrics.py", "-k", "ignored_pixels or gluoncv or unit_interval or bad_input",
                 "--hypothesis-profile", "segcheck-selfcheck"]
    outcomes = run_gate("ignore-label-counted", selection, segcheck, pytester)
    got = failed(outcomes)
    assert "test_ignored_pixels_never_change_any_number" in got and "test_equals_gluoncv_segmentation_metric" in got
    assert sum(outcome == "passed" for outcome, _ in outcomes.values()) > 0


def peer_selection(runtime: str) -> list:
    """The peer cases of MODEL on `runtime`: its FP32 agreement with MXNet and its INT8 drop."""
    return ["segcheck/plugin/suite/test_peers.py", "--peer", runtime, "-k", f"{MODEL} and (agrees or int8_drop)"]


# Each fault on one runtime, with one peer run fewer apiece (a peer run does FP32 and INT8, its quantizer 8-12 s here):
# the changed export fails OpenVINO's FP32 agreement and, as it quantizes worse, its INT8 drop; the calibration on
# constant images fails ONNX Runtime's INT8 drop and leaves its agreement passing. The agreement and drop checks are
# shared (peers.scoring, gate.verdicts), but the runtimes run and quantize apart: ONNX Runtime's agreement under a
# changed export and NNCF under bad calibration images are no longer shown failing here.
DROP = "INT8 fell below FP32 by more than the tolerance"
PEER_CASES = {
    "peer-export-weight-changed": ("fp32", "onnx", peer_selection("openvino"), {
        f"test_peer_fp32_agrees_with_mxnet[{MODEL}-openvino]": f"{MODEL}+openvino on 48 images: the exported network "
                                                               "does not compute what MXNet's does",
        f"test_peer_int8_drop[{MODEL}-openvino]": DROP}),
    "peer-calibrated-on-constant-images": ("fp32", "onnx", peer_selection("onnxruntime"), {
        f"test_peer_int8_drop[{MODEL}-onnxruntime]": DROP}),
}


def faulted_peer_runs(cache) -> set:
    """(runtime, precision) of the peer runs kept in the cache for an ONNX file that no export entry holds (a fault's)."""
    models = Path(cache) / "models"
    exports = {json.loads(m.read_text())["files"]["model.onnx"] for m in models.glob("onnx-*/manifest.json")}
    runs = [json.loads(m.read_text())["fields"] for m in models.glob("peer-run-*/manifest.json")]
    return {(run["runtime"], run["precision"]) for run in runs if run["onnx"] not in exports}


@pytest.mark.peer
@pytest.mark.parametrize("fault", PEER_CASES)
def test_a_broken_peer_export_or_quantization_fails_the_peer_check(fault, segcheck, pytester):
    """The peers' gates, each with a fault of its own: a weight changed in the export fails FP32 agreement with MXNet
    (and, as it quantizes worse, the INT8 drop); calibration on constant images fails the peer's INT8 drop, and the
    agreement still passes."""
    folder = inner.PEER_ENV  # found before pytester pointed HOME at its folder
    if peers.python_of(folder) is None:
        pytest.skip(peers.missing_message(folder))
    *untouched, selection, expected = PEER_CASES[fault]
    case = segcheck.case(MODEL)
    parts = [p for p in untouched if fault != "peer-export-weight-changed" or p != "onnx"]
    done = inner.run(pytester, *selection, cache=segcheck.run.cache_dir, results=pytester.path / f"{fault}.json",
                     plugins=[Fault(fault), Reuse(case, parts=parts)])
    # the changed network exports to the same file in every process: its peer runs are kept for the next run to read
    assert fault != "peer-export-weight-changed" or {("openvino", "fp32"), ("openvino", "int8")} <= faulted_peer_runs(
        segcheck.run.cache_dir), faulted_peer_runs(segcheck.run.cache_dir)
    got = failed(done.outcomes)
    assert set(got) == set(expected), f"{fault}: failed {sorted(got)}, expected {sorted(expected)}:\n{done.result.stdout.str()[-3000:]}"
    assert sum(outcome == "passed" for outcome, _ in done.outcomes.values()) == len(done.outcomes) - len(expected), done.outcomes
    for name, cause in expected.items():
        assert cause in got[name], f"{fault}: {name} failed with {got[name]!r}, expected it to say {cause!r}"

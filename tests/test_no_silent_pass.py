"""No silent pass: a check that compared nothing says so, and fails where a CI gate needs it to have compared; what a
run did otherwise than asked is a warning in the table and the results; an unknown never widens a comparison."""

import importlib.util
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import inner
import pytest
from inner import Reuse

from segcheck.gate import baselines
from segcheck.gate.checks import CHANGED
from segcheck.measure import environment
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


@pytest.mark.selfcheck
def test_a_damaged_cache_entry_rebuilt_in_the_run_reaches_its_warnings(segcheck, pytester, tmp_path):
    """The FP32 evaluations' cache entries damaged (an unreadable manifest): the run rebuilds them, in whichever process
    reads them, and its results and table say so; a run on the repaired cache says nothing."""
    segcheck.case(MODEL).evaluation("fp32")  # its entry is in this session's cache
    cache_dir = inner.fresh_int8_cache(segcheck.run.cache_dir, tmp_path / "cache")
    damaged = []
    for link in (cache_dir / "models").glob("fp32-eval-*"):
        link.unlink()
        shutil.copytree(segcheck.run.cache_dir / "models" / link.name, link)
        (link / "manifest.json").write_text("{")
        damaged.append(link.name)
    assert damaged, "no FP32 evaluation in this session's cache"
    selection = ("segcheck/plugin/suite/test_accuracy.py", "-k", f"{MODEL} and test_accuracy and fp32 and not deploy")
    done = inner.run(pytester, *selection, cache=cache_dir, results=pytester.path / "run.json")
    warnings = report.load(pytester.path / "run.json").warnings
    rebuilt = [w for w in warnings if w.startswith("cache entry fp32-eval-") and "was rebuilt" in w]
    assert rebuilt and f"warning: {rebuilt[0]}" in done.result.stdout.str(), warnings
    inner.run(pytester, *selection, cache=cache_dir, results=pytester.path / "again.json")
    assert not any(w.startswith("cache entry") for w in report.load(pytester.path / "again.json").warnings)


def test_a_probe_that_times_out_or_reads_no_log_leaves_onednn_unknown_and_is_not_kept(tmp_path, monkeypatch):
    def times_out(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout"))

    monkeypatch.setattr(environment, "_PROBED", {})
    monkeypatch.setattr(environment.subprocess, "run", times_out)
    found = environment.fingerprint(tmp_path)
    assert found.onednn == environment.UNKNOWN and found.isa  # the ISA falls back to what the cap and the CPU allow
    assert list(tmp_path.glob("environment-*.json")) == []  # the next run probes again


@pytest.mark.selfcheck
@pytest.mark.parametrize("ci", [False, True], ids=["local", "ci"])
def test_a_failed_probe_warns_compares_exactly_and_fails_in_ci(ci, segcheck, pytester, monkeypatch):
    """The run's oneDNN unknown: its comparisons are made at the exact tier, never at version's; the table and the
    results say the probe failed; under CI=true the run fails, saying why."""
    known = segcheck.environment
    monkeypatch.setattr(environment, "fingerprint", lambda cache_dir: replace(known, onednn=environment.UNKNOWN))
    done = inner.run(pytester, "segcheck/plugin/suite/test_accuracy.py", "-k", f"{MODEL} and test_accuracy and fp32 and not deploy",
                     cache=segcheck.run.cache_dir, results=pytester.path / "run.json",
                     plugins=[Reuse(segcheck.case(MODEL), parts=("fp32", "fp32-evaluation"))],
                     environ={"CI": "true"} if ci else None)
    results = report.load(pytester.path / "run.json")
    assert done.outcomes[f"test_accuracy[{MODEL}-fp32]"][0] == "passed", done.outcomes
    # the tier this environment compares at with oneDNN known (exact on the recording machine): never a wider one
    assert results.models[MODEL].checks["fp32-accuracy"].compared == segcheck.baseline(segcheck.case(MODEL), "fp32").reference.compared
    assert any("oneDNN's probe read no version" in w for w in results.warnings), results.warnings
    assert "warning: oneDNN's probe read no version" in done.result.stdout.str()
    assert (done.result.ret != 0) == ci
    assert ("a CI gate needs a known environment" in done.result.stdout.str()) == ci


@pytest.mark.selfcheck
@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_a_changed_verdict_is_recorded_as_changed_and_fails_only_in_strict_mode(strict, segcheck, pytester, tmp_path):
    """The recorded FP32 mIoU one point below this run's (an improvement beyond the noise band, so never harm): the
    test passes and the results, the table and the summary line say CHANGED (they used to say PASS); with
    --strict-changes it fails."""
    doc = json.loads((ROOT / "baselines.json").read_text())
    for entry in doc["tiers"]["synthetic"]["entries"]:
        if "fp32_miou" in entry["rows"].get(MODEL, {}):
            entry["rows"][MODEL]["fp32_miou"] -= 1.0
    table = tmp_path / "baselines.json"
    table.write_text(json.dumps(doc))
    done = inner.run(pytester, "segcheck/plugin/suite/test_accuracy.py", "-k", f"{MODEL} and test_accuracy and fp32 and not deploy",
                     f"--baselines={table}", *(["--strict-changes"] if strict else []), cache=segcheck.run.cache_dir,
                     results=pytester.path / "run.json", plugins=[Reuse(segcheck.case(MODEL), parts=("fp32", "fp32-evaluation"))])
    assert done.outcomes, done.result.stdout.str()[-3000:]
    check = report.load(pytester.path / "run.json").models[MODEL].checks["fp32-accuracy"]
    assert check.status == CHANGED and "mIoU" in check.message, check
    assert done.outcomes[f"test_accuracy[{MODEL}-fp32]"][0] == ("failed" if strict else "passed"), done.outcomes
    out = done.result.stdout.str()
    exact = segcheck.baseline(segcheck.case(MODEL), "fp32").reference.compared == "exact"
    counted = ("1 against this environment's records, 0 across environments" if exact else
               "0 against this environment's records, 1 across environments")
    assert f"compared: {counted}, 0 across INT8 recipes" in out, out[-2000:]
    assert "CHANGED 1, REGRESSED 0" in out and "| CHANGED fp32-accuracy" in out, out[-2000:]


@pytest.mark.selfcheck
@pytest.mark.parametrize("ci", [False, True], ids=["local", "ci"])
def test_without_the_peer_environment_the_configured_peers_skip_and_fail_in_ci(ci, segcheck, pytester, tmp_path):
    """segcheck.toml names peers for the VOC models: with their virtualenv absent, each peer case says which command
    makes it; a SKIP on a developer's machine, a failure under CI=true (it used to skip there too)."""
    if importlib.util.find_spec("mxnet.onnx") is None:
        pytest.skip("this MXNet has no ONNX exporter: its peer cases skip for that, whatever the environment")
    done = inner.run(pytester, "segcheck/plugin/suite/test_peers.py", "-k", f"{MODEL} and onnxruntime",
                     cache=segcheck.run.cache_dir, plugins=[Reuse(segcheck.case(MODEL), parts=("fp32", "fp32-evaluation"))],
                     environ={"SEGCHECK_PEER_ENV": str(tmp_path / "none"), **({"CI": "true"} if ci else {})})
    assert done.details, done.result.stdout.str()[-2000:]
    for name, o in done.details.items():
        assert o.outcome == ("failed" if ci else "skipped") and "segcheck peer install" in o.message, (name, o)
        assert ("CI=true: the configuration names peers" in o.message) == ci, (name, o.message)

"""Memory as a figure: a run's peak resident set (the pytest process's and its largest forked child's), the tests
that raised it most and each phase's peak, in the results JSON and the table's footer."""

import gc
import io
import json
import os
import subprocess
import sys
import weakref

import inner
import pytest
from inner import Reuse

from segcheck.measure import memory
from segcheck.results import report
from segcheck.results.records import Memory, RunResults

MODEL = "fcn_resnet101_voc"
STEPS = """
import json, numpy as np
from segcheck.measure import memory
mark = memory.Watermark()
before = mark.last_mb
now = next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmRSS:"))
held = np.ones(50_000_000)  # 381 MiB, touched
mark.step("allocates")
held_mb = held.nbytes / 2**20
del held
small = np.ones(1000)
mark.step("reuses what was freed")
print(json.dumps([mark.largest(), memory.peak_mb(), now + held_mb - before]))
"""


def test_the_step_that_allocates_is_credited_with_its_rise_and_a_step_that_reuses_memory_is_not():
    """In a fresh process (this one's peak is long past), started by exec from one that had held 534 MiB (getrusage
    would report that process's peak as the new one's): 381 MiB held by one step raise the peak from the mark before
    it to what was resident then plus the array, and that rise is credited to the step."""
    big_parent = ("import os, sys, numpy as np\nheld = np.ones(70_000_000)\ndel held\n"
                  "os.execv(sys.executable, [sys.executable, '-c', sys.argv[1]])")
    done = subprocess.run([sys.executable, "-c", big_parent, STEPS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rises, peak, expected = json.loads(done.stdout)
    assert [step for step, _ in rises] == ["allocates"] and abs(rises[0][1] - expected) < 20 and peak > 381, (rises, peak, expected)


CYCLE = """
import gc, json, sys, numpy as np
from segcheck.measure import memory
gc.disable()  # only an explicit collection finds the cycle
class Node:
    pass
node = Node()
node.me, node.data = node, np.ones(50_000_000)  # 381 MiB kept by a reference cycle, as a Gluon network's arrays are
del node
held = memory.resident_mb()
mark = memory.Watermark(reclaimed_mb=held - float(sys.argv[1]))  # the resident set that far above the last reclaim
mark.step("left a cycle behind")
print(json.dumps([held, memory.resident_mb()]))
"""


PHASES = """
import json, numpy as np
from segcheck.measure import guard, memory
mark = memory.Watermark()
mark.open()
early = np.ones(80_000_000)  # 610 MiB, touched and freed before any phase: the run's peak, no phase's
del early
with memory.phase("outer"):
    with memory.phase("allocates"):
        base = memory.resident_mb()
        held = np.ones(50_000_000)  # 381 MiB
        del held
    with memory.phase("small"):
        small = np.ones(1000)
child = guard.isolated("a child's work", lambda: (np.ones(25_000_000).sum(), memory.peak_mb())[1], 60, phase="calibration")
guard.isolated("a work of no phase", lambda: None, 60)
mark.close()
with memory.phase("unrecorded"):  # no run measures now
    pass
print(json.dumps([mark.phases, mark.child_phases, base, child, memory.peak_mb()]))
"""


def test_each_phase_gets_its_own_peak_and_the_run_keeps_its_peak_across_them():
    """Phases nest and each gets the largest resident set it had: the one that held 381 MiB that much above where it
    began, the one around it as much, the one after it less, and none the 610 MiB freed before them, which stays the
    run's peak. A forked child's peak counts for its work (where that is a phase), and is its own, not its parent's
    earlier peak."""
    done = subprocess.run([sys.executable, "-c", PHASES], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    phases, children, base, child, peak = json.loads(done.stdout)
    if not phases:
        pytest.skip("this kernel does not let a process reset its peak (/proc/self/clear_refs): no phase was measured")
    assert set(phases) == {"outer", "allocates", "small"}, phases
    assert abs(phases["allocates"] - (base + 381)) < 20 and phases["outer"] >= phases["allocates"], (phases, base)
    assert phases["small"] < phases["allocates"] - 300 and peak > phases["allocates"] + 150, (phases, peak)
    assert list(children) == ["calibration"] and abs(children["calibration"] - child) < 20, (children, child)
    assert base + 150 < child < peak - 150, (base, child, peak)  # 190 MiB above what it shared, below the parent's peak


@pytest.mark.parametrize(("above_mb", "freed"), [(memory.RECLAIM_MB + 1, True), (memory.RECLAIM_MB - 1, False)])
def test_a_step_that_leaves_a_dropped_cycle_behind_is_reclaimed_past_the_threshold(above_mb, freed):
    """Past RECLAIM_MB above the last reclaim, the step after a test collects what it dropped and gives the pages back;
    below it, no collection runs (a collection after every test would cost the run seconds)."""
    done = subprocess.run([sys.executable, "-c", CYCLE, str(above_mb)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    held, after = json.loads(done.stdout)
    assert (held - after > 350) == freed, (held, after)


def test_what_lived_before_the_run_is_set_apart_from_its_collections_and_what_it_built_since_is_not(monkeypatch):
    """The plugin settled this process when collection ended (gc.freeze: a reclaim walks only what the run made); a
    cycle made since and dropped is still freed, as settling again sets nothing more apart."""
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # as a run's own settling sees it: not inside a test
    frozen = gc.get_freeze_count()
    assert frozen > 0, "the run did not set apart what lived before it (memory.settle at collection)"

    class Cycle:
        pass

    made = Cycle()
    made.itself = made
    gone = weakref.ref(made)
    memory.settle()  # alive now: were it set apart, no collection could ever free it
    del made
    memory.reclaim()
    assert gone() is None, "a cycle made after the run settled was set apart and never freed"


def test_a_run_inside_a_running_test_sets_nothing_apart(monkeypatch):
    """pytester's in-process runs end their collection inside a test: the outer test's networks stay collectable."""
    froze = []
    monkeypatch.setattr(gc, "get_freeze_count", lambda: 0)  # as if no run had settled this process yet
    monkeypatch.setattr(gc, "freeze", lambda: froze.append("frozen"))
    memory.settle()
    assert froze == []
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    memory.settle()
    assert froze == ["frozen"]


def test_the_table_and_the_results_json_report_the_peak(tmp_path):
    results = RunResults(tier="synthetic", memory=Memory(1536.0, 256.0, (("tests/test_a.py::test_b", 512.0),),
                                                         (("accuracy", 1536.0), ("fit", 1024.0)), (("calibration", 256.0),)))
    text = report.markdown(results)
    assert ("memory: peak resident set 1.50 GB in the pytest process, 0.25 GB in its largest forked child; raised most by "
            "tests/test_a.py::test_b (+0.50 GB); by phase, the process: accuracy 1.50 GB, fit 1.00 GB; its forked work: "
            "calibration 0.25 GB") in text
    assert report.load(report.save(results, tmp_path / "run.json")) == results
    assert "memory:" not in report.markdown(RunResults(tier="synthetic"))  # a merge of shards measured none
    results.model(MODEL).footprint_mb = {"int8 evaluation": 700.0, "INT8 model (calibration and first run)": 950.0}
    assert f"each model's largest forked work beyond the process: {MODEL} 0.93 GB (INT8 model (calibration and first run))" \
        in report.markdown(results)


class Sampled:
    """The largest resident set of this process seen as each test's body ends, MB."""

    def __init__(self):
        self.mb = 0.0

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        try:
            return (yield)
        finally:
            self.mb = max(self.mb, memory.resident_mb())


@pytest.mark.selfcheck
def test_a_gate_run_measures_its_memory(segcheck, pytester):
    """A real run's results and footer carry the peak, at most this process's peak now (the run ran in it), what
    its forked FP32 evaluation (the network handed over, evaluated anew in a cache holding no evaluation) added beyond
    the process, and the peak of its phases: the accuracy tests' at least the resident set seen as each ended."""
    sampled = Sampled()
    done = inner.run(pytester, "segcheck/plugin/suite/test_accuracy.py", "-k", f"{MODEL} and test_accuracy and fp32 and not deploy",
                     cache=inner.empty_cache(segcheck.run.cache_dir, pytester.path / "cache"), results=pytester.path / "run.json",
                     plugins=[Reuse(segcheck.case(MODEL), parts=("fp32",)), sampled])
    assert done.outcomes, done.result.stdout.str()[-3000:]
    measured = report.load(pytester.path / "run.json").memory
    assert measured is not None and 0 < measured.peak_mb <= memory.peak_mb(), measured
    assert f"memory: peak resident set {measured.peak_mb / 1024:.2f} GB in the pytest process" in done.result.stdout.str()
    footprint = report.load(pytester.path / "run.json").models[MODEL].footprint_mb
    assert set(footprint) == {"fp32 evaluation"} and footprint["fp32 evaluation"] > 0, footprint
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("this kernel does not let a process reset its peak (/proc/self/clear_refs): no phase was measured")
    phases, forked = dict(measured.phases), dict(measured.child_phases)
    assert set(phases) == {"accuracy"} and phases["accuracy"] >= sampled.mb > 0, (measured, sampled.mb)  # FP32 handed over: no fit
    assert set(forked) == {"evaluation"} and forked["evaluation"] > footprint["fp32 evaluation"], measured  # shared pages too


class Released:
    """Records the tests that ran and the cases released, in order."""

    def __init__(self):
        self.seen = []

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.seen.append(("ran", report.nodeid.rpartition("::")[2]))

    def pytest_segcheck_release(self, case):
        self.seen.append(("released", case.name, tuple(sorted(case.parts()))))


@pytest.mark.selfcheck
def test_a_models_case_is_released_once_its_last_test_has_run(segcheck, pytester):
    """A run holds one model's networks at a time: each case is released right after the last test that uses it,
    before the next model's tests build theirs, with what it made still there for a plugin to keep."""
    other = "psp_resnet101_voc"
    released = Released()
    done = inner.run(pytester, "segcheck/plugin/suite/test_accuracy.py", "-k",
                     f"({MODEL} or {other}) and test_accuracy and fp32 and not deploy", cache=segcheck.run.cache_dir,
                     plugins=[Reuse(segcheck.case(MODEL), segcheck.case(other), parts=("fp32", "fp32-evaluation")), released])
    assert len(done.outcomes) == 6, done.result.stdout.str()[-3000:]  # three FP32 checks per model
    order = [(event[0], event[1] if event[0] == "released" else (MODEL if MODEL in event[1] else other)) for event in released.seen]
    assert order == [("ran", MODEL)] * 3 + [("released", MODEL)] + [("ran", other)] * 3 + [("released", other)], released.seen
    kept = [event[2] for event in released.seen if event[0] == "released"]
    assert all({"fp32", "fp32-evaluation"} <= set(parts) for parts in kept), kept


def test_the_session_holds_one_models_case_at_a_time(segcheck):
    """Asking for another model's case releases the one held, with what it made: a test outside the gate that uses two
    models (as the one above) does not leave both held for the rest of the run."""
    other = "psp_resnet101_voc"
    first = segcheck.case(MODEL)
    assert first.val is not None and "val" in first.parts()
    second = segcheck.case(other)
    assert list(segcheck.cases) == [other] and not first.parts()
    assert segcheck.case(other) is second


@pytest.mark.parametrize(("bound", "code", "said"), [(2.0, 0, "within"), (1.2, 1, "EXCEEDED")])
def test_the_memory_bound_fails_a_run_whose_peak_exceeded_it(tmp_path, bound, code, said):
    """CI's bound (segcheck report --max-memory) on the larger of the process's peak and its largest forked child's."""
    from segcheck.cli import commands

    saved = report.save(RunResults(tier="synthetic", memory=Memory(1024.0, 1536.0)), tmp_path / "run.json")
    out = io.StringIO()
    assert commands.report(["--results", str(saved), "--max-memory", str(bound)], out) == code
    assert f"memory: peak resident set 1.50 GB, bound {bound:g} GB: {said}" in out.getvalue()


def test_a_memory_bound_with_nothing_to_check_is_an_error(tmp_path, capsys):
    from segcheck.cli import commands

    merged = report.save(RunResults(tier="synthetic"), tmp_path / "merged.json")
    assert commands.main(["report", "--results", str(merged), "--max-memory", "6"]) == 2
    assert "hold no memory figure" in capsys.readouterr().err
    assert commands.main(["report", "--baseline", "synthetic", "--max-memory", "6"]) == 2
    assert "--max-memory checks a run's results" in capsys.readouterr().err


def test_each_models_gate_tests_run_together_so_that_one_models_networks_are_held_at_a_time(segcheck, pytester):
    """The shipped suite as collected for the six configured models, peer tests included: every model's tests form
    one block (the peer tests' own parameters used to interleave the VOC models, which kept all three alive)."""
    done = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", f"--rootdir={inner.ROOT}",
                                        f"--segcheck-cache={segcheck.run.cache_dir}", str(inner.ROOT / "segcheck/plugin/suite"))
    names = sorted(segcheck.models, key=len, reverse=True)
    collected = [line for line in done.stdout.lines if "::" in line]
    models = [next(n for n in names if f"[{n}" in line) for line in collected if "[" in line and any(f"[{n}" in line for n in names)]
    blocks = [m for i, m in enumerate(models) if i == 0 or models[i - 1] != m]
    assert len(models) > 60 and sorted(blocks) == sorted(set(models)) and len(set(models)) == 6, blocks


INNER = """
import json, numpy as np
from segcheck.measure import memory
outer, inner = memory.Watermark(), memory.Watermark()
outer.open()
with memory.phase("a self-check"):
    inner.open()
    with memory.phase("accuracy"):
        held = np.ones(25_000_000)  # 191 MiB
        del held
    memory.child_peaked(100.0, "evaluation")
    inner.close()
outer.close()
print(json.dumps([outer.phases, outer.child_phases, inner.phases, inner.child_phases]))
"""


def test_an_inner_runs_phases_are_its_own():
    """A run made in process inside another (a self-check's) records its phases and its children's works; the outer
    run records the phase around it, which held what the inner run held."""
    done = subprocess.run([sys.executable, "-c", INNER], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    outer, outer_children, inner_phases, inner_children = json.loads(done.stdout)
    if not outer:
        pytest.skip("this kernel does not let a process reset its peak (/proc/self/clear_refs): no phase was measured")
    assert list(outer) == ["a self-check"] and not outer_children, (outer, outer_children)
    assert list(inner_phases) == ["accuracy"] and inner_children == {"evaluation": 100.0}, (inner_phases, inner_children)
    assert outer["a self-check"] >= inner_phases["accuracy"], (outer, inner_phases)

"""The mutant catalogue (tests/plugins/mutants.py), injected below segcheck in MXNet's quantization module: each mutant
calibrates fcn_resnet101_voc afresh in an inner gate run. `pytest -m mutants`; the kill table (segcheck.results.kills)
is written to <segcheck cache>/kill-tables/, and to $SEGCHECK_KILL_TABLES where set (docs/kill-tables/ holds the
committed ones).

A clean control runs first, on the same selection, and must pass. A mutant is killed only by an assertion of a
non-latency check, or by an error whose message names its cause (a SegcheckError); the latency checks judge the speed
mutant alone. Runs need golden records for this setting (`pytest --update-baselines` on a clean run).
"""

import datetime
import os
import shutil

import inner
import pytest
from inner import Reuse

from segcheck.gate.checks import LATENCY, SPEEDUP, of_test_id
from segcheck.plugin.hooks import SUITE
from segcheck.results import kills, report

from mutants import MUTANTS, SPEED, Mutation

pytestmark = pytest.mark.mutants
MODEL = "fcn_resnet101_voc"
GATED = [str(SUITE), "-k", f"{MODEL} and not latency and not speedup and not peer"]  # mutants live in MXNet, peers quantize on their own
TIMED = [str(SUITE / "test_latency.py"), "-k", MODEL]
LATENCY_CHECKS = set(LATENCY.names()) | {SPEEDUP.name()}
NAMING = ("int8-ranges", "int8-layers")
# The share of single-layer mutants whose layer each naming check names first, at least (measured: docs/kill-tables/).
NAMED_FIRST = {"int8-ranges": 0.94, "int8-layers": 0.58}  # 37 and 23 of 39 on VNNI
RESULTS = {}  # mutant -> kills.MutantRow
CONTROL = {}  # the clean controls by selection: (outcomes, the model's results)


@pytest.fixture(scope="module")
def fresh_int8_cache(segcheck, tmp_path_factory):
    """A cache holding this session's FP32 models and data but no INT8 model: every run calibrates anew."""
    if segcheck.golden(segcheck.case(MODEL)) is None:
        pytest.skip("no golden records at this setting: record them with pytest --update-baselines")
    return inner.fresh_int8_cache(segcheck.run.cache_dir, tmp_path_factory.mktemp("mutant-cache"))


def _run(segcheck, cache, pytester, selection, plugins):
    results = pytester.path / "run.json"
    done = inner.run(pytester, *selection, "--benchmark-max-time=0.2", cache=cache, results=results,
                     plugins=[*plugins, Reuse(segcheck.case(MODEL), parts=("fp32", "fp32-evaluation"))])
    for stale in (cache / "models").glob("int8-*"):  # the next run calibrates anew too
        shutil.rmtree(stale)
    assert done.details and results.is_file(), f"the inner run did not finish:\n{done.result.stdout.str()[-3000:]}"
    return done, report.load(results).models[MODEL]


def _named_cause(message: str) -> bool:
    """An error names its cause when segcheck raised it (its one-line message says what is wrong and what to do)."""
    kind = message.partition(":")[0]
    return kind.startswith("segcheck.") and not kind.endswith("BackendCrash")


def judge(details: dict, speed: bool) -> tuple:
    """(kills, unexplained) of an inner run's outcomes: assertion failures of the judging checks, errors naming
    their cause; other errors and crashes kill nothing."""
    found, unexplained = [], []
    for name, o in details.items():
        check = of_test_id(name)
        if o.outcome != "failed" or check is None or (check in LATENCY_CHECKS) != speed:
            continue
        if o.problem == "failure" and o.message.startswith("AssertionError"):
            found.append(kills.Kill(check, kills.ASSERTION, o.message.splitlines()[0][:300]))
        elif _named_cause(o.message):
            found.append(kills.Kill(check, kills.ERROR, o.message.splitlines()[0][:300]))
        else:
            unexplained.append((check, o.message.splitlines()[0][:300] if o.message else o.problem))
    return tuple(sorted(found, key=lambda k: k.check)), tuple(unexplained)


@pytest.mark.parametrize("selection", ["gated", "timed"])
def test_clean_control_passes(selection, segcheck, fresh_int8_cache, pytester):
    """The selections the mutants run (the speed mutant: the latency checks), without a mutant: nothing fails and the
    speed-up gate has a minimum here, so a failure under a mutant is the mutant's."""
    done, model = _run(segcheck, fresh_int8_cache, pytester, GATED if selection == "gated" else TIMED, [])
    failed = {n: o.message for n, o in done.details.items() if o.outcome != "passed"}
    assert not failed, f"the clean control ({selection}) did not pass: {failed}"
    CONTROL[selection] = (done.details, model)


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_killed(name, segcheck, fresh_int8_cache, pytester):
    if set(CONTROL) != {"gated", "timed"}:
        pytest.fail("the clean controls did not run or failed: a kill cannot be told from a broken gate")
    mutation = Mutation(name)
    speed = mutation.mutant.kind == SPEED
    done, model = _run(segcheck, fresh_int8_cache, pytester, TIMED if speed else GATED, [mutation])
    found, unexplained = judge(done.details, speed)
    killers = {k.check for k in found}
    named = {check: (listed[0] if listed and check in killers else None)
             for check, listed in (("int8-ranges", model.ranges_moved), ("int8-layers", model.layers_ranked))}
    control = CONTROL["gated"][1]
    equivalent = (not found and not speed and model.int8.digest == control.int8.digest and model.ranges == control.ranges)
    hit = mutation.state.recorded()
    layer = hit.get("layer") if mutation.mutant.single_layer else None
    assert layer or not mutation.mutant.single_layer, f"{name} did not say which layer it changed"
    RESULTS[name] = kills.MutantRow(name, mutation.mutant.kind, found, equivalent, layer, named if layer else {}, unexplained)
    assert not unexplained, f"{name}: errors that name no cause (a broken run, not a kill): {unexplained}"
    if equivalent:
        pytest.xfail(f"{name} is equivalent here: its INT8 model predicts and calibrates exactly as the clean control's")
    assert found, f"{name} survived: every judging check passed"


def test_kill_table(segcheck):
    """At least 95 % of the non-equivalent mutants killed, the speed mutant killed, each naming check naming the layer
    of a single-layer mutant first at least as often as NAMED_FIRST says; no run errored; the table written."""
    if len(RESULTS) < len(MUTANTS):
        pytest.skip(f"{len(RESULTS)} of {len(MUTANTS)} mutants ran: run the whole catalogue (pytest -m mutants)")
    table = kills.KillTable(segcheck.environment.to_dict(), datetime.date.today().isoformat(), MODEL,
                            "passed (" + ", ".join(f"{s}: {len(CONTROL[s][0])} checks" for s in ("gated", "timed")) + ")",
                            tuple(RESULTS[n] for n in MUTANTS), NAMING)
    written = [kills.save(table, segcheck.run.cache_dir / "kill-tables")]
    if os.environ.get("SEGCHECK_KILL_TABLES"):
        written.append(kills.save(table, os.environ["SEGCHECK_KILL_TABLES"]))
    text = kills.markdown(table)
    print("\n" + text + "\n" + "\n".join(str(p) for pair in written for p in pair))
    errored = {r.name: r.unexplained for r in table.rows if r.unexplained}
    assert not errored, f"mutant runs errored: {errored}\n{text}"
    counts = table.counts()
    assert counts["killed"] >= 0.95 * counts["non_equivalent"] and counts["non_equivalent"] >= 50, text
    assert counts["speed"] == [True], text
    assert len({r.kind for r in table.rows if r.kind != SPEED}) >= 9, text
    single = sum(m.single_layer for m in MUTANTS.values())
    for check, (named, total) in table.naming().items():
        assert total == single and named >= NAMED_FIRST[check] * total, f"{check} named the layer first in {named} of {total}\n{text}"

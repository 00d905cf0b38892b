"""The variant catalogue (tests/plugins/mutants.py), injected below segcheck in MXNet's quantization module, judged
twice: by the gate (an inner run of fcn_resnet101_voc calibrating afresh, in the default mode; strict mode fails what
it reports CHANGED besides) and by the harm oracle (tests/plugins/oracle.py: its own loop on a held-out set ten times
the gate's). `pytest -m mutants` in the environment to measure (tox -e catalogue; an ISA cap, another MXNet, or --calib-*
options for a recipe change, all forwarded to the inner runs). The table is written to <segcheck cache>/kill-tables/,
and to $SEGCHECK_KILL_TABLES where set (docs/kill-tables/ holds the committed ones). Resumable: each variant's row is
kept as it is made (<cache>/kill-tables/progress-<environment>.json), and a rerun makes only the missing ones.

A clean control runs first, on the same selection, and must pass (CHANGED allowed: another environment or recipe is
a change); the oracle's reference is its INT8 model. The gated one runs CLEAN_RUNS times in all, calibrating afresh each
time: no clean run may fail. A kill is an assertion of a non-latency check, or an error whose
message names its cause (a SegcheckError); the latency checks judge the speed variant alone. Runs need golden records
for this setting (`pytest --update-baselines` on a clean run).
"""

import datetime
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
import os
import shutil

import inner
import mutants
import oracle
import pytest
from inner import Reuse

import segcheck as segcheck_package
from segcheck import atomic
from segcheck.config.options import CALIBRATION, flag_of
from segcheck.gate.checks import CHANGED, LATENCY, SPEEDUP, of_test_id
from segcheck.models import export
from segcheck.models.cache import entries
from segcheck.plugin.hooks import SUITE
from segcheck.results import kills, report

from mutants import MUTANTS, SPEED, Mutation

pytestmark = pytest.mark.mutants
MODEL = "fcn_resnet101_voc"
# mutants live in MXNet's quantization: the peers quantize on their own; the deploy round trip exports what calibrated
GATED = [str(SUITE), "-k", f"{MODEL} and not latency and not speedup and not peer and not deploy"]
TIMED = [str(SUITE / "test_latency.py"), "-k", MODEL]
LATENCY_CHECKS = set(LATENCY.names()) | {SPEEDUP.name()}
NAMING = ("int8-ranges", "int8-layers")
# The gated clean control runs this often, each run calibrating afresh: a rerun of the unchanged model is the most benign
# change there is, and none may fail (the "0 in 5 clean reruns", measured in every catalogue run).
CLEAN_RUNS = 5
# The share of single-layer variants whose layer each naming check names first, at least (measured: docs/kill-tables/).
NAMED_FIRST = {"int8-ranges": 0.9, "int8-layers": 0.5}
# A variant under which no INT8 model could be made (its calibration failed) harms the task outright: nothing ships.
NO_MODEL = {"kind": "harmful", "task": True, "layer": False, "miou_drop": 100.0, "agreement_drop": 100.0, "own_fall": 0.0,
            "fall_layer": "", "note": "no INT8 model: its calibration failed"}
RESULTS = {}  # variant -> kills.MutantRow
CONTROL = {}  # the clean controls by selection: (outcomes, the model's results); "oracle": the reference's figures;
# "clean": one entry per gated clean run begun, True once it passed


@pytest.fixture(scope="module")
def recipe(segcheck) -> str:
    """The INT8 recipe the inner runs calibrate with where it is not the recorded one (a recipe change), else ''."""
    case = segcheck.case(MODEL)
    found = segcheck.baseline(case, "int8")
    return case.int8_key if found.reference is not None and found.reference.recipe else ""


@pytest.fixture(scope="module")
def forwarded(segcheck) -> list:
    """The calibration options this run was given, for the inner runs (a recipe change is measured so)."""
    return [f"{flag_of(dest)}={getattr(segcheck.options, dest)}" for dest in CALIBRATION if getattr(segcheck.options, dest) is not None]


@pytest.fixture(scope="module")
def fresh_int8_cache(segcheck, tmp_path_factory):
    """A cache holding this session's FP32 models and data but no INT8 model: every run calibrates anew."""
    if segcheck.golden(segcheck.case(MODEL)) is None:
        pytest.skip("no golden records at this setting: record them with pytest --update-baselines")
    return inner.fresh_int8_cache(segcheck.run.cache_dir, tmp_path_factory.mktemp("mutant-cache"))


@pytest.fixture(scope="module")
def held_out(segcheck):
    """The harm oracle's held-out set and FP32 predictions on it (this session's FP32 model)."""
    case = segcheck.case(MODEL)
    return oracle.Oracle(case.fp32, case.config.run.synthetic, case.config.crop_size, case.config.kind.num_classes)


@pytest.fixture(scope="module")
def progress(segcheck, recipe):
    """The rows made so far in this environment by this code (a rerun resumes), and where they are kept."""
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(segcheck_package.__file__).parent.rglob("*.py"))
                                   + [Path(mutants.__file__), Path(oracle.__file__)])).hexdigest()[:10]
    stem = kills.file_stem(segcheck.environment.to_dict(), recipe)
    path = segcheck.run.cache_dir / "kill-tables" / f"progress-{stem}-{code}.json"  # other code: nothing is resumed
    try:
        made = {name: kills.row_from_dict(row) for name, row in json.loads(path.read_text()).items() if name in MUTANTS}
    except (OSError, ValueError, KeyError, TypeError):
        made = {}
    return path, made


def _keep(progress, row) -> None:
    path, made = progress
    made[row.name] = row
    atomic.write_json(path, {name: asdict(r) for name, r in made.items()})


def _run(segcheck, cache, pytester, selection, plugins, forwarded, held):
    """An inner run; its outcomes, the model's results, and (with `held`) the oracle's figures of the INT8 model it
    calibrated, read from its cache before that is cleared for the next run."""
    results = pytester.path / "run.json"
    done = inner.run(pytester, *selection, *forwarded, "--benchmark-max-time=0.2", cache=cache, results=results,
                     plugins=[*plugins, Reuse(segcheck.case(MODEL), parts=("fp32", "fp32-evaluation"))])
    calibrated = entries(cache, "int8")
    figures = held.figures(export.load(calibrated[0] / "model")) if held is not None and calibrated else None
    stale = calibrated + entries(cache, "int8-eval") + entries(cache, "layers")  # the next run calibrates, evaluates anew
    for entry in stale:
        shutil.rmtree(entry)
    assert done.details and results.is_file(), f"the inner run did not finish:\n{done.result.stdout.str()[-3000:]}"
    return done, report.load(results).models[MODEL], figures


def _clean_run(segcheck, cache, pytester, selection, forwarded, held, what: str):
    """An inner run of `selection` without a variant (what _run returns), which must neither fail nor skip. A gated one
    counts in CONTROL["clean"] from its start, as failed until it has passed, whatever stops it."""
    counted = CONTROL.setdefault("clean", []) if selection is GATED else []
    counted.append(False)
    done, model, figures = _run(segcheck, cache, pytester, selection, [], forwarded, held)
    failed = {n: o.message for n, o in done.details.items() if o.outcome == "failed"}
    assert not failed, f"{what} did not pass: {failed}"
    skipped = {n: o.message for n, o in done.details.items() if o.outcome == "skipped"}
    assert not skipped, f"{what} compared nothing in {sorted(skipped)}: {skipped}"
    counted[-1] = True
    return done, model, figures


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
def test_clean_control_passes(selection, segcheck, fresh_int8_cache, pytester, forwarded, held_out):
    """The selections the variants run (the speed variant: the latency checks), without a variant: nothing fails and
    the speed-up gate has a minimum here, so a failure under a variant is the variant's. Its INT8 model is the
    oracle's reference."""
    gated = selection == "gated"
    done, model, figures = _clean_run(segcheck, fresh_int8_cache, pytester, GATED if gated else TIMED, forwarded,
                                      held_out if gated else None, f"the clean control ({selection})")
    CONTROL[selection] = (done.details, model)
    if figures is not None:
        CONTROL["oracle"] = figures


@pytest.mark.parametrize("run", range(2, CLEAN_RUNS + 1))
def test_clean_control_reruns_pass(run, segcheck, fresh_int8_cache, pytester, forwarded):
    """The gated clean control again, calibrating afresh: nothing fails and nothing skips (CHANGED allowed, as in the
    first run). The oracle's reference stays the first run's INT8 model."""
    if "gated" not in CONTROL:
        pytest.fail("the first clean control did not run or failed: a rerun has nothing to repeat")
    _clean_run(segcheck, fresh_int8_cache, pytester, GATED, forwarded, None, f"clean rerun {run} of {CLEAN_RUNS}")


@pytest.mark.parametrize("name", list(MUTANTS))
def test_variant_is_judged(name, segcheck, fresh_int8_cache, pytester, forwarded, held_out, progress):
    """A harmful variant (by the oracle) fails the gate; a benign one does not (CHANGED allowed); both recorded."""
    if name in progress[1]:
        row = progress[1][name]
    else:
        if not {"gated", "timed", "oracle"} <= set(CONTROL):
            pytest.fail("the clean controls did not run or failed: a kill cannot be told from a broken gate")
        mutation = Mutation(name, segcheck.run.cache_dir)
        speed = mutation.mutant.kind == SPEED
        done, model, figures = _run(segcheck, fresh_int8_cache, pytester, TIMED if speed else GATED, [mutation], forwarded,
                                    None if speed else held_out)
        found, unexplained = judge(done.details, speed)
        verdict = (oracle.judge(CONTROL["oracle"], figures).to_dict() if figures is not None else
                   {} if speed else dict(NO_MODEL))
        hit = mutation.state.recorded()
        layer = hit.get("layer") if mutation.mutant.single_layer else None
        assert layer or not mutation.mutant.single_layer, f"{name} did not say which layer it changed"
        named = {check: (listed[0] if listed else None) for check, listed in (("int8-ranges", model.ranges_moved),
                                                                              ("int8-layers", model.layers_ranked))}
        changed = tuple(sorted(c for c, v in model.checks.items() if v.status == CHANGED and c not in LATENCY_CHECKS))
        row = kills.MutantRow(name, mutation.mutant.kind, found, verdict.get("kind") == "equivalent", layer,
                              named if layer else {}, unexplained, changed, verdict)
        _keep(progress, row)
    RESULTS[name] = row
    assert not row.unexplained, f"{name}: errors that name no cause (a broken run, not a kill): {row.unexplained}"
    if row.kind in kills.UNSCORED:
        assert row.killed, f"{name} survived {kills.UNSCORED[row.kind]}"
    elif row.verdict == "harmful":
        assert row.killed, f"{name} is harmful ({row.oracle}) and passed the gate"
    elif row.verdict in ("benign", "equivalent"):
        assert not row.killed, f"{name} is {row.verdict} ({row.oracle}) and failed the gate: {row.kills}"


def test_error_rates(segcheck, recipe):
    """At least 95 % of the oracle-harmful variants fail in the default mode and at most 5 % of the benign ones, with
    at least 30 harmful (10 within twice the thresholds) and 10 benign scored; the speed variant killed; each naming
    check names a single-layer variant's layer first at least as often as NAMED_FIRST says; every clean run passed;
    the table written."""
    if len(RESULTS) < len(MUTANTS):
        pytest.skip(f"{len(RESULTS)} of {len(MUTANTS)} variants ran: run the whole catalogue (pytest -m mutants)")
    clean = CONTROL.get("clean", [])
    checks = ", ".join(f"{s}: {len(CONTROL[s][0])} checks" for s in ("gated", "timed") if s in CONTROL)
    control = (f"passed {sum(clean)} of {CLEAN_RUNS} gated clean runs, each calibrating afresh"
               + (f" ({CLEAN_RUNS - len(clean)} not run)" if len(clean) < CLEAN_RUNS else "") + (f" ({checks})" if checks else ""))
    table = kills.KillTable(segcheck.environment.to_dict(), datetime.date.today().isoformat(), MODEL, control,
                            tuple(RESULTS[n] for n in MUTANTS), NAMING, recipe)
    written = [kills.save(table, segcheck.run.cache_dir / "kill-tables")]
    if os.environ.get("SEGCHECK_KILL_TABLES"):
        written.append(kills.save(table, os.environ["SEGCHECK_KILL_TABLES"]))
    text = kills.markdown(table)
    print("\n" + text + "\n" + "\n".join(str(p) for pair in written for p in pair))
    c = table.counts()
    assert sum(clean) == CLEAN_RUNS, f"clean runs: {control}"
    assert c["harmful"] >= 30 and c["near_threshold"] >= 10 and c["benign"] >= 10, text
    assert c["harmful_caught"] >= 0.95 * c["harmful"] and c["benign_failed"] <= 0.05 * c["benign"], text
    assert c["speed"] == [True] and c["structure"] and all(c["structure"]), text
    single = sum(m.single_layer for m in MUTANTS.values())
    for check, (named, total) in table.naming().items():
        assert total == single and named >= NAMED_FIRST[check] * total, f"{check} named the layer first in {named} of {total}\n{text}"

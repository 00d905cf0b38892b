"""A changed calibration recipe is judged against the recipe it replaces: FP32 exactly (it does not depend on the
recipe), INT8 at the recipe tier, with a verdict that says harmful or benign, in CI too (no re-record asked for).

Inner runs of fcn_resnet101_voc (pytester, this session's cache): a benign change of recipe (one batch instead of two;
the next 32 training images) and a harmful one (the same, its ranges divided by 8 below segcheck).
"""

import inner
import pytest
from inner import Reuse

from segcheck.gate.checks import CHANGED, PASS, REGRESSED
from segcheck.results import report

from faults import Fault

MODEL = "fcn_resnet101_voc"
JUDGED = ["segcheck/plugin/suite/test_accuracy.py", "segcheck/plugin/suite/test_quantization.py", "-k",
          f"{MODEL} and not deploy and not graph and not segments and not peer"]
COMPARED = ("fp32-accuracy", "int8-accuracy", "int8-agreement", "int8-ranges", "int8-layers", "fp32-digest", "int8-digest")

pytestmark = pytest.mark.selfcheck


def _tiers(segcheck):
    """The tiers FP32 and a new recipe's INT8 compare at here: exact and recipe on the recording machine; under another
    ISA (a cap, another CPU) that difference joins them, isa and isa+recipe."""
    fp32 = segcheck.baseline(segcheck.case(MODEL), "fp32").reference.compared
    return fp32, "recipe" if fp32 == "exact" else f"{fp32}+recipe"


def _run(segcheck, pytester, *options, plugins=(), selection=JUDGED):
    reuse = Reuse(segcheck.case(MODEL), parts=("fp32", "fp32-evaluation"))
    done = inner.run(pytester, *selection, *options, cache=segcheck.run.cache_dir, results=pytester.path / "run.json",
                     plugins=[*plugins, reuse], environ={"CI": "true"})
    assert done.details, f"the gate did not run:\n{done.result.stdout.str()[-3000:]}"
    assert (MODEL, "fp32-evaluation") in reuse.handed, "FP32 does not depend on the recipe: the inner run takes this session's"
    return done, report.load(pytester.path / "run.json").models[MODEL]


@pytest.mark.parametrize("option", ["--calib-batches=1", "--calib-start=32"])
def test_a_benign_recipe_change_is_compared_with_the_recorded_recipe_and_passes_in_ci(option, segcheck, pytester):
    """Nothing skips and nothing asks for a re-record: FP32 compares exactly, every INT8 comparison at the recipe tier
    against the recorded recipe's rows and golden records, each PASS or CHANGED."""
    done, model = _run(segcheck, pytester, option)
    skipped = {n: o.message for n, o in done.details.items() if o.outcome == "skipped"}
    assert not skipped, skipped
    compared = {name: (check.status, check.compared) for name, check in model.checks.items() if name in COMPARED}
    assert set(compared) == set(COMPARED), compared
    fp32_tier, int8_tier = _tiers(segcheck)
    assert compared["fp32-accuracy"] == (PASS, fp32_tier) and compared["fp32-digest"] == (PASS, fp32_tier)
    recorded = segcheck.case(MODEL).int8_key
    assert model.int8_key != recorded
    for name in COMPARED:
        if name.startswith("int8"):
            status, tier = compared[name]
            assert tier == int8_tier and status in (PASS, CHANGED), (name, model.checks[name].message)
    message = model.checks["int8-accuracy"].message
    assert f"INT8 under this run's new recipe against the recorded one, {recorded}" in message, message
    assert not any(o.outcome == "failed" for o in done.details.values())


def test_a_harmful_recipe_change_regresses_in_ci(segcheck, pytester):
    """The same new recipe with its calibrated ranges divided by 8 (saturation, injected below segcheck's checks):
    INT8's accuracy and agreement regress against the recorded recipe. Its ranges and digest pass: across recipes
    ranges move by up to 59 % (the noise table's recipe tier) and predictions differ, so neither can see it alone. The
    per-layer comparison is left out: the replaced model is never read from the cache, and nothing here asks for it."""
    selection = [*JUDGED[:-1], f"{JUDGED[-1]} and not layer_error"]
    done, model = _run(segcheck, pytester, "--calib-batches=1", plugins=[Fault("ranges-shrunk")], selection=selection)
    statuses = {name: model.checks[name].status for name in ("int8-accuracy", "int8-agreement", "int8-ranges")}
    assert statuses == {"int8-accuracy": REGRESSED, "int8-agreement": REGRESSED, "int8-ranges": PASS}, statuses
    assert model.checks["int8-accuracy"].compared == _tiers(segcheck)[1] and "regressed" in model.checks["int8-accuracy"].message
    assert model.checks["fp32-accuracy"].status == PASS and model.checks["int8-digest"].status == PASS
    failed = {n for n, o in done.details.items() if o.outcome == "failed"}
    assert f"test_accuracy[{MODEL}-int8]" in failed and f"test_accuracy[{MODEL}-fp32]" not in failed

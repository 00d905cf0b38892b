"""`segcheck tune`: the search order, the ranking of layers, the recipe written into segcheck.toml in place, and the
whole loop on a fault injected below segcheck (one layer's range collapsed in MXNet's calibration), which the
configured recipe and every other recipe fail and keeping that layer in FP32 fixes, verified by a real gate run."""

import json
import os
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import pytest

from segcheck import atomic
from segcheck.cli import commands, tune
from segcheck.config import options
from segcheck.config.options import GateOptions
from segcheck.config.recipes import CalibRecipe
from segcheck.config.tolerances import Tolerances
from segcheck.errors import RefusedRanges, SegcheckError
from segcheck.measure import guard
from segcheck.models import pipeline
from segcheck.tune import recipe_file, search, speed
from segcheck.tune import trial as trial_module
from segcheck.tune.report import Tuned
from segcheck.tune.speed import SpeedCost
from segcheck.tune.trial import Judged, Trial

import faults
import inner

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fcn_resnet101_voc"
SYNTHETIC = CalibRecipe(num_batches=2, batch_size=16)


def test_the_tuning_images_are_the_last_of_the_split_and_never_calibrated_on():
    split = type("Split", (), {"__len__": lambda self: 224, "source": "the synthetic tier", "split": "train"})()
    assert trial_module.tuning_indices(split, 48, range(0, 32)) == list(range(176, 224))
    with pytest.raises(SegcheckError, match="calibrates on images 0-191 of the train split, which overlap the last 48"):
        trial_module.tuning_indices(split, 48, range(0, 192))
    with pytest.raises(SegcheckError, match="tuning needs 300 images of the train split, which holds 224"):
        trial_module.tuning_indices(split, 300, range(0, 32))


def test_other_recipes_come_cheapest_first_and_never_reach_the_tuning_images():
    found = [(r.label(), why) for r, why in search.recipe_candidates(SYNTHETIC, room=176)]
    assert [label for label, _ in found] == ["entropy/auto/2x16/train", "naive/int8/2x16/train", "naive/auto/4x16/train"]
    assert [r.label() for r, _ in search.recipe_candidates(SYNTHETIC, room=40)] == ["entropy/auto/2x16/train",
                                                                                     "naive/int8/2x16/train"]
    uint8 = CalibRecipe(dtype="uint8", num_batches=2, batch_size=16)
    assert [r.dtype for r, _ in search.recipe_candidates(uint8, room=176)] == ["uint8", "int8", "uint8"]
    entropy = CalibRecipe(mode="entropy", dtype="int8", num_batches=2, batch_size=16)
    assert [r.label() for r, _ in search.recipe_candidates(entropy, room=176)] == ["naive/int8/2x16/train",
                                                                                   "entropy/int8/4x16/train"]


def _trial(sqnr: dict, upstream: dict, exclude=()) -> Trial:
    recipe = {**SYNTHETIC.as_dict(), "exclude": list(exclude)}
    return Trial(recipe, "x", "x", 0.0, 0.0, (0.0, 0.0), 0.0, min(sqnr, key=sqnr.get), min(sqnr.values()), sqnr, upstream,
                 1.0, 1.0, (Judged("int8-layers", "FAIL", ""),), len(exclude))


def test_layers_rank_where_the_error_starts_before_the_layers_that_inherit_it():
    """b loses 27 dB by itself and c, fed by b, only 0.5 more: b first, though c is lower; a layer above the floor
    comes after those below it; a layer already kept in FP32, or with no Gluon path, is not offered."""
    sqnr = {"a": 30.0, "b": 3.0, "c": 2.5, "d": 9.0, "e": 1.0}
    upstream = {"b": ["a"], "c": ["b"], "d": ["a"], "e": ["d"]}
    paths = {"a": "conv.a", "b": "conv.b", "c": "conv.c", "d": "conv.d"}
    assert search.ranked(_trial(sqnr, upstream), paths, floor_db=5.0) == ["b", "c", "d", "a"]
    assert search.ranked(_trial(sqnr, upstream, exclude=["conv.b"]), paths, floor_db=5.0) == ["c", "d", "a"]
    broken_first = {"a": 0.5, "b": 0.4, "c": 0.2, "d": 0.3}  # the first layer broken: every layer is under the floor
    assert search.ranked(_trial(broken_first, upstream), paths, floor_db=5.0)[0] == "a"


# The search on faked trials: layers a -> b -> c and a -> d -> e; a faulty layer loses 25 dB by itself and adds a point
# of mIoU drop while it is quantized; the layers it feeds inherit its loss.
UPSTREAM = {"b": ["a"], "c": ["b"], "d": ["a"], "e": ["d"]}
PATHS = {n: f"conv.{n}" for n in "abcde"}
TOLERANCES = Tolerances(pixacc_points=1.0, miou_points=1.0, int8_drop_pixacc_points=1.0, int8_drop_miou_points=1.0,
                        sqnr_floor_db=5.0)


def _faked(monkeypatch, faulty=(), passes=lambda recipe: False):
    """search.judge replaced by trials computed from the recipe; the labels judged, in order."""
    judged = []

    def judge(bench, recipe, why):
        judged.append(recipe.label())
        quantized = [n for n in "abcde" if PATHS[n] not in recipe.exclude]
        sqnr = {n: 30.0 for n in quantized}
        for n in ("a", "b", "c", "d", "e"):
            if n in sqnr:
                inherited = min([sqnr[u] for u in UPSTREAM.get(n, []) if u in sqnr] or [30.0])
                sqnr[n] = min(inherited, 5.0 if n in faulty else 30.0) - (0.5 if n in faulty else 0.0)
        broken = sum(n in faulty for n in quantized)
        ok = passes(recipe) or not broken
        drop = 0.2 if ok else 0.2 + broken
        return Trial(recipe.as_dict(), recipe.label(), why, 0.0, drop, (drop - 0.3, drop + 0.3), 0.0, min(sqnr, key=sqnr.get),
                     min(sqnr.values()), sqnr, {n: [u for u in UPSTREAM.get(n, []) if u in sqnr] for n in sqnr}, 10.0, 3.0,
                     (Judged("int8-drop", "PASS" if ok else "FAIL", ""),), len(recipe.exclude))

    monkeypatch.setattr(search, "judge", judge)
    bench = SimpleNamespace(config=SimpleNamespace(name="m", calib=SYNTHETIC), tolerances=TOLERANCES,
                            indices=list(range(176, 224)), paths=PATHS)
    return bench, judged


def test_a_model_that_passes_is_one_trial(monkeypatch):
    bench, judged = _faked(monkeypatch)
    outcome = search.search(bench, search.Budget(), progress=False)
    assert judged == ["naive/auto/2x16/train"] and outcome.chosen is outcome.trials[0] and "nothing to tune" in outcome.reason


def test_a_recipe_that_passes_stops_the_search_before_any_layer_is_kept_in_fp32(monkeypatch):
    bench, judged = _faked(monkeypatch, faulty="b", passes=lambda r: r.mode == "entropy")
    outcome = search.search(bench, search.Budget(), progress=False)
    assert judged == ["naive/auto/2x16/train", "entropy/auto/2x16/train"] and outcome.chosen.label == judged[-1]


def test_the_layer_where_the_error_starts_is_kept_in_fp32_after_three_recipes(monkeypatch):
    bench, judged = _faked(monkeypatch, faulty="b")
    outcome = search.search(bench, search.Budget(), progress=False)
    assert len(judged) == 5 and judged[4] == "naive/auto/2x16/train/exclude=conv.b", judged
    assert outcome.chosen.calib.exclude == ("conv.b",) and "keeping conv.b in FP32 passes" in outcome.reason


def test_a_revert_that_helps_is_kept_and_the_layers_are_ranked_again(monkeypatch):
    """Two faulty layers: keeping b in FP32 helps but does not pass; the search keeps it, ranks again from that trial
    and keeps d too."""
    bench, judged = _faked(monkeypatch, faulty="bd")
    outcome = search.search(bench, search.Budget(), progress=False)
    assert outcome.chosen.calib.exclude == ("conv.b", "conv.d"), judged
    assert [label.rpartition("/")[2] for label in judged[4:]] == [
        "exclude=conv.b", "exclude=conv.d", "exclude=conv.c", "exclude=conv.b+conv.d"], judged


def test_the_budget_stops_the_search_saying_what_is_left(monkeypatch):
    bench, judged = _faked(monkeypatch, faulty="b")
    outcome = search.search(bench, search.Budget(max_trials=2), progress=False)
    assert len(judged) == 2 and outcome.chosen is None and "budget of 2 trials" in outcome.reason
    assert outcome.left == "2 other recipes, then layers kept in FP32", outcome.left
    bench, judged = _faked(monkeypatch, faulty="b")
    outcome = search.search(bench, search.Budget(max_trials=4), progress=False)
    assert outcome.left.startswith("5 layers of naive/auto/2x16/train not yet kept in FP32, next conv.b (4.5 dB)"), outcome.left
    bench, judged = _faked(monkeypatch, faulty="b")
    outcome = search.search(bench, search.Budget(seconds=1e-9), progress=False)
    assert len(judged) == 1 and "time budget" in outcome.reason


def test_when_no_revert_helps_the_next_layers_are_tried_until_none_is_left(monkeypatch):
    bench, judged = _faked(monkeypatch, faulty="b", passes=lambda r: False)
    monkeypatch.setattr(search, "ranked", lambda trial, paths, floor: [n for n in "edca" if paths[n] not in trial.recipe["exclude"]])
    outcome = search.search(bench, search.Budget(), progress=False)
    excluded = [label.rpartition("=")[2] for label in judged[4:]]
    assert excluded == ["conv.e", "conv.d", "conv.c", "conv.a"] and outcome.reason == "no layer is left to keep in FP32"


def _refusing(monkeypatch, faulty=(), refused="c"):
    """_faked, with MXNet refusing the graph of every recipe that quantizes layer `refused` (no layer measured)."""
    bench, judged = _faked(monkeypatch, faulty=faulty)
    faked = search.judge

    def judge(bench, recipe, why):
        if PATHS[refused] in recipe.exclude:
            return faked(bench, recipe, why)
        judged.append(recipe.label())
        return Trial.failed(recipe, why, f"MXNet refuses the quantized graph: {PATHS[refused]} ...", blamed=(PATHS[refused],))

    monkeypatch.setattr(search, "judge", judge)
    return bench, judged


def test_a_graph_refused_for_a_layers_range_keeps_that_layer_in_fp32_next(monkeypatch):
    """MXNet refuses every recipe's graph while c is quantized, so no trial measures a layer: the layer the refusal
    names is kept in FP32 in the second trial, not after three recipes refused alike (or never: with no layer
    measured, none would be ranked)."""
    bench, judged = _refusing(monkeypatch)
    outcome = search.search(bench, search.Budget(), progress=False)
    assert judged == ["naive/auto/2x16/train", "naive/auto/2x16/train/exclude=conv.c"], judged
    assert outcome.chosen.calib.exclude == ("conv.c",) and "keeping conv.c in FP32 passes" in outcome.reason


def test_the_other_recipes_keep_the_refused_layer_and_the_budget_says_it_comes_next(monkeypatch):
    """Keeping c builds the graph but b is still faulty: the other recipes keep c too (the fault is in every recipe),
    then b joins it; with a budget of one trial, what is left says c comes next."""
    bench, judged = _refusing(monkeypatch, faulty="b")
    outcome = search.search(bench, search.Budget(), progress=False)
    assert all(label.endswith("exclude=conv.c") for label in judged[1:5]), judged
    assert outcome.chosen.calib.exclude == ("conv.b", "conv.c"), judged
    bench, judged = _refusing(monkeypatch, faulty="b")
    outcome = search.search(bench, search.Budget(max_trials=1), progress=False)
    assert outcome.chosen is None and outcome.left == "conv.c kept in FP32, then other recipes", outcome.left


def test_the_layers_a_refused_graph_names_reach_tune_through_the_forked_calibration(monkeypatch, tmp_path):
    monkeypatch.delenv("SEGCHECK_IN_PROCESS", raising=False)  # the error crosses a real fork, pickled
    bench = SimpleNamespace(folder=lambda: tmp_path, key=lambda recipe: recipe.label().replace("/", "-"))

    def refused(bench, recipe, why):
        def calibrate():
            raise RefusedRanges("MXNet refuses the quantized graph: layer3.9.conv1 ...", ("layer3.9.conv1",))
        return guard.isolated("calibration", calibrate)

    monkeypatch.setattr(trial_module, "_judged", refused)
    failed = trial_module.judge(bench, SYNTHETIC, "configured")
    assert failed.blamed == ("layer3.9.conv1",) and failed.error.startswith("MXNet refuses the quantized graph: layer3")


def test_a_recipe_that_cannot_be_calibrated_is_a_failed_trial_and_the_search_goes_on(monkeypatch, tmp_path):
    bench = SimpleNamespace(folder=lambda: tmp_path, key=lambda recipe: recipe.label().replace("/", "-"))

    def crashes(bench, recipe, why):
        raise SegcheckError("fcn INT8 calibration: the child died of SIGSEGV")

    monkeypatch.setattr(trial_module, "_judged", crashes)
    failed = trial_module.judge(bench, SYNTHETIC, "configured")
    assert not failed.passed and failed.error.endswith("SIGSEGV") and failed.excess(TOLERANCES) == float("inf")
    assert not list(tmp_path.iterdir())  # not cached: a rerun tries again


def test_a_trial_is_judged_once_and_a_damaged_entry_again(monkeypatch, tmp_path):
    calls = []
    bench = SimpleNamespace(folder=lambda: tmp_path, key=lambda recipe: recipe.label().replace("/", "-"))
    trial = _trial({"a": 30.0}, {})
    monkeypatch.setattr(trial_module, "_judged", lambda bench, recipe, why: calls.append(why) or trial)
    first = trial_module.judge(bench, SYNTHETIC, "first")
    again = trial_module.judge(bench, SYNTHETIC, "again")
    assert calls == ["first"] and again.cached and not first.cached and again == replace(first, why="again")
    next(tmp_path.glob("*.json")).write_text("{")
    trial_module.judge(bench, SYNTHETIC, "damaged")
    assert calls == ["first", "damaged"]


CONFIG = """# the team's models
tier = "synthetic"  # seeded models

[[models]]
network = "fcn_resnet101_voc"  # the one we ship
int8 = { mode = "naive" }  # the seed's

[[models]]
network = "fcn_resnet101_coco"
"""


def test_the_json_report_holds_the_trials_the_choice_its_speed_cost_and_its_verification(monkeypatch):
    bench, _ = _faked(monkeypatch, faulty="b")
    outcome = search.search(bench, search.Budget(), progress=False)
    cost = SpeedCost(3.1, 3.0, 0.1, 0.1, 40, 64)
    doc = json.loads(json.dumps(Tuned(outcome, cost, True).to_dict()))
    assert doc["chosen"] == "naive/auto/2x16/train/exclude=conv.b" and doc["verified"] is True and doc["left"] == ""
    assert [t["passed"] for t in doc["trials"]] == [False] * 4 + [True] and doc["trials"][0]["verdicts"][0]["check"]
    assert doc["speed_cost"]["ratio"] == round(3.1 / 3.0, 4) and doc["speed_cost"]["rounds"] == 40
    assert Trial.from_dict({k: v for k, v in doc["trials"][4].items() if k not in ("passed", "speedup")}).calib.exclude == ("conv.b",)
    fp32 = SpeedCost(3.0, 10.0, 0.1, 0.1, 40, 64, speed.FP32)  # the configured recipe built no INT8 model to time
    assert Tuned(outcome, fp32).to_dict()["speed_cost"]["reference"] == "fp32" and "speed-up of 3.33x" in fp32.describe()
    unverified = Tuned(search.search(bench, search.Budget(max_trials=1), progress=False)).to_dict()
    assert unverified["chosen"] is None and "verified" not in unverified and "speed_cost" not in unverified


def test_a_write_that_fails_half_way_leaves_the_configuration_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "segcheck.toml"
    path.write_text(CONFIG)

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        recipe_file.write(path, 0, MODEL, CalibRecipe(num_batches=4, batch_size=16), SYNTHETIC)
    assert path.read_text() == CONFIG and [p.name for p in tmp_path.iterdir()] == ["segcheck.toml"]  # no temporary left


def test_the_recipe_is_written_in_place_keeping_comments_and_layout(tmp_path):
    path = tmp_path / "segcheck.toml"
    path.write_text(CONFIG)
    tuned = CalibRecipe(num_batches=4, batch_size=16, exclude=("layer3.14.conv1",))
    diff = recipe_file.write(path, 0, MODEL, tuned, SYNTHETIC)
    text = path.read_text()
    assert text == CONFIG.replace('int8 = { mode = "naive" }',
                                  'int8 = {mode = "naive", batches = 4, exclude = ["layer3.14.conv1"]}'), text
    assert "\n+int8 = {mode" in diff and "\n-int8 = { mode" in diff and diff.count("\n+") == 2  # the header and the line
    assert recipe_file.write(path, 0, MODEL, tuned, SYNTHETIC) == ""  # already there: nothing written
    added = recipe_file.with_recipe(CONFIG, path, 1, "fcn_resnet101_coco", tuned, SYNTHETIC)
    assert added.endswith('network = "fcn_resnet101_coco"\nint8 = {batches = 4, exclude = ["layer3.14.conv1"]}\n'), added
    pyproject = tmp_path / "pyproject.toml"
    nested = "[project]\nname = 'x'\n\n" + CONFIG.replace("[[models]]", "[[tool.segcheck.models]]").replace(
        'tier = "synthetic"  # seeded models\n', "")
    written = recipe_file.with_recipe(nested, pyproject, 0, MODEL, tuned, SYNTHETIC)
    assert tomllib.loads(recipe_file.plain(written, pyproject))["models"][0]["int8"]["batches"] == 4, written
    with pytest.raises(SegcheckError, match=r"segcheck.toml: has no model 'psp' at \[\[models\]\] 3"):
        recipe_file.with_recipe(CONFIG, path, 2, "psp", tuned, SYNTHETIC)
    shipped = CONFIG.replace('{ mode = "naive" }', '{ export = "model/x" }')
    with pytest.raises(SegcheckError, match="shipped INT8 export"):
        recipe_file.with_recipe(shipped, path, 0, MODEL, tuned, SYNTHETIC)


def test_the_verifying_gate_run_gets_the_run_options_tune_was_given():
    given = GateOptions(crop_size=480, num_images="all", shard=(1, 2), skip_bad=True, voc_root="/data/voc", case_timeout=60.0)
    assert options.as_argv(given, tune.RUN_OPTIONS) == ["--crop-size", "480", "--num-images", "all", "--voc-root",
                                                      "/data/voc", "--skip-bad", "--case-timeout", "60.0"]
    assert options.as_argv(given)[4:6] == ["--shard", "1/2"]  # a tuple as its K/N spelling
    assert not {"--calib-batches", "--shard"} & {o.name for o in tune.RUN_OPTIONS}  # tune starts from the configured recipe


def test_a_model_gated_on_a_shipped_export_has_nothing_to_tune(tmp_path, monkeypatch, capsys):
    (tmp_path / "segcheck.toml").write_text('tier = "real"\n[[models]]\nnetwork = "fcn_resnet101_voc"\n'
                                            'dataset = { name = "pascal_voc", root = "data" }\nint8 = { export = "model/x" }\n')
    monkeypatch.chdir(tmp_path)
    assert commands.main(["tune"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "shipped INT8 export" in out[0] and "nothing to tune" in out[0], out


def test_bad_input_is_one_message(segcheck, tmp_path, monkeypatch, capsys):
    shutil.copy(ROOT / "segcheck.toml", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert commands.main(["tune", "fcn"]) == 2
    assert "no configured model is named 'fcn'" in capsys.readouterr().err
    assert commands.main(["tune", "--png", "x.png"]) == 2
    assert "--png draws one model's trials" in capsys.readouterr().err
    for option, path in (("--json", "segcheck.toml"), ("--png", "baselines.json")):  # refused before any trial
        assert commands.main(["tune", MODEL, option, path]) == 2
        assert f"{option} {path} is the input " in capsys.readouterr().err
    for budget in (["--max-trials", "0"], ["--time-budget", "0m"]):
        with pytest.raises(SystemExit) as exit:
            commands.main(["tune", MODEL, *budget])
        assert exit.value.code == 2 and "expected a positive" in capsys.readouterr().err
    config = tmp_path / "segcheck.toml"
    config.write_text(recipe_file.with_recipe(config.read_text(), config, 0, MODEL, CalibRecipe(exclude=("layer9.conv1",)), SYNTHETIC))
    assert commands.main(["tune", MODEL, "--segcheck-cache", str(segcheck.run.cache_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"segcheck: error: {MODEL}: int8.exclude names 'layer9.conv1', which is no convolution of {MODEL}; name "
                   "one by its dotted Gluon path, such as conv1.0"], err


def _project(folder: Path) -> None:
    for name in ("segcheck.toml", "baselines.json", "baselines.golden.json", "baselines.noise.json"):
        shutil.copy(ROOT / name, folder)


def test_a_model_that_passes_returns_its_recipe_at_once(segcheck, monkeypatch, capsys, tmp_path):
    """Its FP32 check reads the gate's own FP32 evaluation from the cache: it evaluates nothing on the gate's images."""
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    inner.cached(segcheck, MODEL, "fp32-evaluation")  # the gate's, in this session's cache
    evaluated, real = [], trial_module.evaluate
    monkeypatch.setattr(trial_module, "evaluate", lambda *args, desc, **kwargs: evaluated.append(desc) or real(*args, desc=desc, **kwargs))
    rc = commands.main(["tune", MODEL, "--segcheck-cache", str(segcheck.run.cache_dir), "--write", "--png", str(tmp_path / "t.png")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert not any("gate's images" in desc for desc in evaluated), evaluated
    assert "stopped: the configured recipe passes the gate's INT8 checks: nothing to tune" in out, out
    assert f"{MODEL}: chosen naive/auto/2x16/train" in out and (tmp_path / "t.png").stat().st_size > 0
    assert "verifying" not in out and (tmp_path / "segcheck.toml").read_text() == (ROOT / "segcheck.toml").read_text()


def test_a_fault_in_the_fp32_weights_is_said_and_not_searched(segcheck, tmp_path, monkeypatch, capsys):
    """The head's 3x3 convolution disturbed in the weights file (noise of its own scale): FP32 itself regresses against
    its baseline row, so tune says so and calibrates nothing. A file of other contents: never the clean file's entry."""
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    weights = mx.nd.load(str(pipeline.fp32_params(segcheck.model_config(MODEL))))
    values = weights["head.block.0.weight"].asnumpy()
    weights["head.block.0.weight"] = mx.nd.array(values + np.random.default_rng(0).normal(0.0, values.std(), values.shape))
    disturbed = tmp_path / "disturbed.params"
    mx.nd.save(str(disturbed), weights)
    monkeypatch.setattr(pipeline, "fp32_weights", lambda mc: (disturbed, atomic.digest_of(disturbed)))
    monkeypatch.setattr(search, "judge", lambda *args: pytest.fail("a trial was judged"))
    assert commands.main(["tune", MODEL, "--segcheck-cache", str(segcheck.run.cache_dir)]) == 1
    out = capsys.readouterr().out
    assert f"{MODEL}: the FP32 model itself fails its baseline, which no INT8 recipe can fix: not searched" in out, out
    assert "regressed" in out, out


@pytest.mark.tune_catalogue  # five calibrations and a gate run (2.5 minutes): with the tune catalogue, opt in
def test_tune_finds_the_layer_a_fault_below_segcheck_breaks_and_the_gate_verifies_it(segcheck, tmp_path, monkeypatch, capsys):
    """One layer's calibrated range divided by 20 inside MXNet: the configured recipe and the three other recipes fail
    the gate's SQNR floor; keeping that layer (and only it) in FP32 passes, a real gate run under the same fault
    verifies it, and --write puts it into the configuration. A second run resumes from the cached trials."""
    _project(tmp_path)
    cache = inner.fresh_int8_cache(segcheck.run.cache_dir, tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    for owner, attribute, original in faults._layer_collapsed():  # in this process (tune's trials), undone at the end
        patched = getattr(owner, attribute)
        setattr(owner, attribute, original)
        monkeypatch.setattr(owner, attribute, patched)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests" / "plugins"))
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p faults")
    monkeypatch.setenv("SEGCHECK_FAULT", "layer-collapsed")
    args = ["tune", MODEL, "--segcheck-cache", str(cache), "--tune-images", "16", "--json", str(tmp_path / "tune.json"), "--write"]
    assert commands.main(args) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    found = json.loads((tmp_path / "tune.json").read_text())[MODEL]
    assert found["verified"] is True and found["chosen"].endswith("/exclude=layer3.14.conv1") and len(found["trials"]) == 5
    assert found["speed_cost"]["rounds"] == 40 and 0.5 < found["speed_cost"]["ratio"] < 2.0, found["speed_cost"]
    assert "speed cost: INT8 " in out and "with the chosen recipe against" in out, out
    rows = [line for line in out.splitlines() if line[:3].strip().isdigit()]
    assert len(rows) == 5 and all("FAIL int8-layers" in row for row in rows[:4]) and rows[4].endswith("PASS"), out
    assert f"({faults.COLLAPSED_LAYER}," in out and "layer3.14.conv1" in rows[4], out
    assert "verifying with the gate" in out and " passed" in out, out
    written = (tmp_path / "segcheck.toml").read_text()
    models, configured = tomllib.loads(written)["models"], tomllib.loads((ROOT / "segcheck.toml").read_text())["models"]
    assert models[0].pop("int8")["exclude"] == ["layer3.14.conv1"] and models == configured, written  # that entry alone
    assert written.startswith((ROOT / "segcheck.toml").read_text().split("[[models]]")[0])  # comments kept
    assert commands.main([*args[:-1], "--no-verify"]) == 0
    again = capsys.readouterr().out
    assert "stopped: the configured recipe passes" in again and "(cached)" in again, again  # the written recipe, cached


@pytest.mark.selfcheck
def test_the_graph_check_expects_the_configured_exclusions_and_fails_when_they_are_quantized(segcheck, pytester, tmp_path):
    """A recipe that keeps a layer in FP32 passes the graph check (it used to fail any FP32 layer); the same recipe
    whose exclusion MXNet's graph pass drops fails it, naming the layer the recipe keeps. The first is calibrated into
    this session's cache (a later run reads it); the fault, patched below segcheck, calibrates in a cache of its own.
    One batch of 4 images: what the graph holds does not depend on how many images set its ranges."""
    _project(tmp_path)
    config = tmp_path / "segcheck.toml"
    kept = CalibRecipe(num_batches=1, batch_size=4, exclude=("layer3.14.conv1",))
    config.write_text(recipe_file.with_recipe(config.read_text(), config, 0, MODEL, kept, SYNTHETIC))
    test = f"test_int8_graph_is_quantized_and_calibrated[{MODEL}]"
    args = ["segcheck/plugin/suite/test_accuracy.py", "-k", f"{MODEL} and int8 and graph", f"--segcheck-config={config}"]
    done = inner.run(pytester, *args, cache=segcheck.run.cache_dir)
    assert done.outcomes[test][0] == "passed", done.outcomes
    done = inner.run(pytester, *args, cache=inner.fresh_int8_cache(segcheck.run.cache_dir, tmp_path / "ignored"),
                     plugins=[faults.Fault("exclusions-ignored")])
    outcome, message = done.outcomes[test]
    assert outcome == "failed" and f"the recipe keeps 1 in FP32: {faults.COLLAPSED_LAYER}" in message, (outcome, message)

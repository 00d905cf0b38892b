"""`segcheck plan`: what a run needs and lacks (with the fetch commands), a measured cost, shard counts; and the
real tier's pytest header line."""

import argparse
import io
import json
from types import SimpleNamespace

import pytest

from segcheck.cases import plan
from segcheck.cases.plan import Cost, Estimate
from segcheck.cli import commands
from segcheck.cli.plan import main, parse_budget
from segcheck.measure.environment import Environment

CONFIG = '[[models]]\nnetwork = "fcn_resnet101_voc"\n'


def test_plan_lists_what_is_missing_probes_the_cost_and_suggests_shards(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet"))
    monkeypatch.setenv("SEGCHECK_VOC_ROOT", str(tmp_path / "voc"))
    (tmp_path / "segcheck.toml").write_text(CONFIG)
    cache = ["--segcheck-cache", str(tmp_path / "cache"), "--crop-size", "32"]
    out = io.StringIO()
    assert main(["--tier", "real", "--target", "30m", *cache], out) == 0
    text = out.getvalue()
    assert "fcn_resnet101_voc: FP32 + INT8 (calibrated naive/auto/5x32/train), 1449 images (published pascal_voc val size)" in text
    assert f"missing weights: {tmp_path / 'mxnet/models'}/fcn_resnet101_voc-" in text and "segcheck fetch weights fcn_resnet101_voc" in text
    assert f"missing pascal_voc val: {tmp_path / 'voc/VOC2012/ImageSets/Segmentation/val.txt'}; segcheck fetch voc --root {tmp_path / 'voc'}" in text
    assert "each shard calibrates: 1 shard: " in text and "4 shards: " in text and "16 shards: " in text
    assert "for 30.0 min per job, each shard calibrating: --shard K/" in text and "calibration shared through the cache: 1 shard" in text
    assert "memory: the largest model's networks take " in text and "(fcn_resnet101_voc)" in text and "a runner needs about" in text
    probed = [line for line in text.splitlines() if line.startswith("- fcn_resnet101_voc: FP32 0")]
    assert probed and " s, INT8 " in probed[0] and "calibration" in probed[0]
    again = io.StringIO()
    assert main(["--tier", "real", "--no-probe", *cache], again) == 0  # the probe is kept for this environment
    assert probed[0] in again.getvalue()


def test_estimates_add_calibration_per_shard_and_split_the_images():
    e = Estimate("m", 1000, 160, Cost(fp32_s=0.5, int8_s=0.25, calib_s=0.6))
    assert e.wall(1) == pytest.approx(plan.OVERHEAD_S + 96 + 750)
    assert e.wall(4) == pytest.approx(plan.OVERHEAD_S + 96 + 250 * 0.75)
    assert plan.suggest_shards([e], 300) == 4 and plan.suggest_shards([e], 60) is None  # 4 shards: 15 + 96 + 250 x 0.75 s
    assert e.wall(4, calibrated=True) == pytest.approx(plan.OVERHEAD_S + 250 * 0.75) and plan.suggest_shards([e], 60, True) == 17
    assert parse_budget("90m") == 5400 and parse_budget("2h") == 7200 and parse_budget("45") == 45
    for bad in ("0m", "-5m", "nanh"):  # a budget of no time, or less, plans nothing
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive duration"):
            parse_budget(bad)


def test_the_real_tier_names_its_plan_at_the_start_of_a_pytest_run(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet"))
    monkeypatch.setenv("SEGCHECK_VOC_ROOT", str(tmp_path / "voc"))
    pytester.path.joinpath("segcheck.toml").write_text(CONFIG)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", f"--segcheck-cache={tmp_path / 'cache'}")
    assert ("segcheck: real tier, 1 models x FP32 + INT8, 3 inputs missing, no cost probed here yet; "
            "`segcheck plan` lists them") in result.stdout.str()


def test_plan_needs_a_configuration(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert commands.main(["plan"]) == 2
    assert "no segcheck configuration in" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--voc-root", "x"], "--voc-root has no effect on the synthetic tier"),
    (["--calib-mode", "none", "--calib-batches", "3"], "--calib-batches has no effect with calibration mode none"),
    (["--num-images", "100"], "fcn_resnet101_voc on the synthetic tier: 100 images requested but the val split holds 48"),
    (["--calib-start", "100000"], "from image 100000 but the train split holds 224"),
], ids=["root-on-synthetic", "batches-with-mode-none", "more-images-than-the-split", "calibration-beyond-the-split"])
def test_plan_refuses_what_a_pytest_run_refuses(tmp_path, monkeypatch, capsys, args, message):
    """Before, plan took these and printed a plan of them ("100 images", "train@100000"), as tune started on a root it
    would never read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "segcheck.toml").write_text('tier = "synthetic"\n' + CONFIG)
    assert commands.main(["plan", "--no-probe", "--segcheck-cache", str(tmp_path / "cache"), *args]) == 2
    assert message in capsys.readouterr().err
    if args[0] == "--voc-root":
        assert commands.main(["tune", "no_such_model", "--voc-root", "x"]) == 2
        assert message in capsys.readouterr().err


def test_a_target_below_the_calibration_time_says_to_share_the_calibration():
    e = Estimate("m", 1000, 160, Cost(fp32_s=0.5, int8_s=0.25, calib_s=0.6))  # 96 s of calibration
    lines = plan.summary([e], Environment("1.9.1", "2.4.4", "avx2"), target_s=90, cached={e.name})
    assert "each shard calibrating: not reachable: calibration alone takes 1.6 min per job" in "\n".join(lines)
    assert any(line.startswith("for 1.5 min per job, with the calibration shared: --shard K/") for line in lines)
    assert "up to 8.3 min of a run; cached here now for 1 of 1 models, saving 8.3 min" in "\n".join(lines)  # 1000 x 0.5 s
    cold = "\n".join(plan.summary([e], Environment("1.9.1", "2.4.4", "avx2")))
    assert "cached here now for 0 of 1 models, saving 0.0 min" in cold


def test_an_fp32_evaluation_counts_as_cached_only_on_the_split_the_gate_evaluates(tmp_path):
    """tune keeps FP32 evaluations of its tuning images (the calibration split) beside the gate's: only the gate's
    save a run anything; an entry of an older format is never read."""
    from segcheck.errors import MissingResource
    from segcheck.measure.evaluation_cache import FORMAT

    for i, (model, split, form) in enumerate([("gated", "val", FORMAT), ("tuned", "train", FORMAT), ("old", "val", FORMAT - 1)]):
        folder = tmp_path / "models" / f"fp32-eval-{i:020d}"
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"model": model, "split": split, "fields": {"format": form}}))
    models = {name: SimpleNamespace(split="val") for name in ("gated", "tuned", "old")}
    models["missing"] = MissingResource("no weights")
    assert plan.fp32_cached(SimpleNamespace(cache_dir=tmp_path), models) == {"gated"}


def test_the_memory_a_run_needs_is_the_process_and_twice_the_largest_models_networks():
    """Measured on a 2-core AMD EPYC: one model's gate (fcn_resnet101_voc at 64 px) peaked at 1.70 GB in the pytest
    process, whose own share is about 0.23 GB, and the probe put its networks at 1.49 GB; a forked work adds up to
    about that again (its child peaked at 2.50 GB counting the pages it shares)."""
    small, large = (Estimate(n, 48, 32, Cost(0.06, 0.02, 0.06, memory_mb=mb)) for n, mb in (("fcn", 1490.0), ("deeplab", 1760.0)))
    line = plan.memory_needed([small, large], base_mb=230.0)
    assert "the largest model's networks take 1.72 GB here (deeplab), beside the process's own 0.22 GB" in line
    assert line.endswith("a runner needs about 3.7 GB")
    older = Estimate("old", 48, 32, Cost(0.06, 0.02, 0.06))
    assert "not probed for old" in plan.memory_needed([small, older], base_mb=230.0)
    assert plan.memory_needed([small], 230.0) in plan.summary([small], Environment("1.9.1", "2.4.4", "avx2"), base_mb=230.0)

"""The segcheck command: the seed's test.py command lines, and `segcheck report`."""

import io
import json
import re
import shlex
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcheck import cli, report
from segcheck.catalog import ModelSpec
from segcheck.gate import IMPROVED, Verdict

# The tutorial's commands, with `python test.py` replaced by `segcheck` (../shared/reference/seed-...md).
SEED_COMMANDS = {
    "fp32-dummy": ("--model=fcn --backbone=resnet101 --eval --batch-size=1 --pretrained --benchmark", "benchmark", "fp32"),
    "fp32-real": ("--model=fcn --backbone=resnet101 --eval --batch-size=1 --pretrained", "evaluate", "fp32"),
    "calibrate-voc": ("--model=fcn --backbone=resnet101 --eval --batch-size=1 --pretrained --calibration --dataset=voc", "calibrate", "int8"),
    "calibrate-coco": ("--model=fcn --backbone=resnet101 --eval --batch-size=1 --pretrained --calibration --dataset=coco", "calibrate", "int8"),
    "int8-dummy": ("--model=fcn --backbone=resnet101 --mode=val --eval --batch-size=1 --pretrained --quantized --benchmark", "benchmark", "int8"),
    "int8-real": ("--model=fcn --backbone=resnet101 --mode=val --eval --batch-size=1 --pretrained --quantized", "evaluate", "int8"),
    "deploy": ("--quantized --eval --deploy --model-prefix=./model/fcn_resnet101_voc-quantized-naive", "evaluate", "int8"),
}


@pytest.mark.parametrize("name", SEED_COMMANDS)
def test_every_seed_command_line_is_understood(name):
    line, action, precision = SEED_COMMANDS[name]
    p = cli.plan(shlex.split(line))
    assert (p.action, p.precision) == (action, precision)
    assert p.spec == ModelSpec("fcn", "resnet101", "coco" if "coco" in line else "voc")
    assert p.tier == ("real" if "--pretrained" in line else "synthetic")


def test_pretrained_without_weights_is_an_error_naming_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    code = cli.main(shlex.split(SEED_COMMANDS["fp32-dummy"][0]) + ["--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("segcheck: error: pretrained weights for fcn_resnet101_voc not found at ")
    assert str(tmp_path / "models" / "fcn_resnet101_voc-12c2b9b3.params") in err


@pytest.mark.parametrize("argv, message", [
    (["--model", "segnet"], "argument --model: invalid choice: 'segnet'"),
    (["--backbone", "resnet18"], "argument --backbone: invalid choice: 'resnet18'"),
    (["--dataset", "ade20k"], "argument --dataset: invalid choice: 'ade20k'"),
    (["--mode", "testval", "--eval"], "--mode testval is not supported"),
    (["--deploy"], "--deploy needs --model-prefix"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
    (["--num-calib-batches", "x"], "argument --num-calib-batches: expected a positive integer, got 'x'"),
])
def test_bad_arguments_are_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.plan(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_seed_workflow_end_to_end_on_the_synthetic_tier(run_config, tmp_path, monkeypatch):
    """Calibrate (exports ./model/...), evaluate in memory, deploy the export: the same figures."""
    monkeypatch.chdir(tmp_path)
    common = ["--cache-dir", str(run_config.cache_dir), "--num-images", "4"]
    out = io.StringIO()
    assert cli.run(cli.plan(shlex.split("--model=fcn --backbone=resnet101 --eval --batch-size=1 --calibration --dataset=voc")
                            + common), out) == 0
    assert "saved quantized model: model/fcn_resnet101_voc-quantized-naive-symbol.json" in out.getvalue()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "fcn_resnet101_voc-quantized-naive-0000.params", "fcn_resnet101_voc-quantized-naive-symbol.json"]
    figures = {}
    for name, line in (("memory", "--model=fcn --backbone=resnet101 --mode=val --eval --batch-size=1 --quantized"),
                       ("deploy", SEED_COMMANDS["deploy"][0])):
        out = io.StringIO()
        assert cli.run(cli.plan(shlex.split(line) + common), out) == 0
        figures[name] = re.search(r"on (val: 4 images.*)$", out.getvalue().strip()).group(1)
    assert figures["memory"] == figures["deploy"] and "pixAcc" in figures["deploy"]
    out = io.StringIO()
    assert cli.run(cli.plan(shlex.split(SEED_COMMANDS["deploy"][0].replace("--eval", "--benchmark")) + ["--num-iterations", "2"] + common), out) == 0
    assert re.search(r"deployed INT8 \(synthetic tier, crop 64\): batch size 1, 2 iterations: latency [0-9.]+ ms", out.getvalue())


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "segcheck.cli", "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--num-calib-batches" in done.stdout and "--model-prefix" in done.stdout


def _results():
    results = report.RunResults(tier="synthetic", convention="present", setting={"crop_size": 64}, environment={"isa": "avx2"})
    results.record("fcn_resnet101_voc", "fp32", pixacc=92.5, miou=66.1, latency_ms=100.0)
    results.record("fcn_resnet101_voc", "int8", pixacc=92.4, miou=65.9, latency_ms=40.0)
    results.model("fcn_resnet101_voc").baseline = {"fp32_latency_ms": 99.0, "s8_latency_ms": 41.0, "fp32_pixacc": 92.5,
                                                   "fp32_miou": 66.0, "s8_pixacc": 92.4, "s8_miou": 65.0}
    results.verdict("fcn_resnet101_voc", "int8-accuracy", Verdict(IMPROVED, "mIoU rose"))
    return results


def test_report_prints_the_performance_table_and_writes_json_and_png(tmp_path):
    saved = report.save(_results(), tmp_path / "run.json")
    out = io.StringIO()
    assert cli.report(["--results", str(saved), "--json", str(tmp_path / "copy.json"), "--png", str(tmp_path / "chart.png")], out) == 0
    text = out.getvalue()
    assert text.startswith("model | fp32 latency(ms) | s8 latency(ms) | speed-up | fp32 pixAcc | fp32 mIoU | s8 pixAcc | s8 mIoU | status\n")
    assert "fcn_resnet101_voc | 100.00 | 40.00 | 2.50x | 92.50% (+0.00) | 66.10 (+0.10) | 92.40% (+0.00) | 65.90 (+0.90) | IMPROVED" in text
    assert "mIoU convention: present" in text and "- fcn_resnet101_voc int8-accuracy: mIoU rose" in text
    assert json.loads((tmp_path / "copy.json").read_text()) == json.loads(saved.read_text())
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_the_seed_baseline_table():
    out = io.StringIO()
    assert cli.report(["--baseline", "real"], out) == 0
    assert "psp_resnet101_coco | 253.49 | 94.32 | 2.69x | 91.82% (+0.00) | 69.48 (+0.00) | 91.88% (+0.00) | 69.92 (+0.00) | SKIP" in out.getvalue()


def test_report_without_results_says_what_to_do(tmp_path, capsys):
    assert cli.main(["report", "--results", str(tmp_path / "none.json")]) == 2
    assert "none.json: no results yet; run pytest first" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"format": 7}')
    assert cli.main(["report", "--results", str(tmp_path / "bad.json")]) == 2
    assert "bad.json: not a segcheck results file" in capsys.readouterr().err


FLAGS = ["--model", "--backbone", "--dataset", "--mode", "--batch-size", "--num-calib-batches", "--calib-mode",
         "--quantized-dtype", "--model-prefix", "--crop-size", "--num-images", "--calib-split", "--eval", "--pretrained",
         "--benchmark", "--calibration", "--quantized", "--deploy", "--bogus"]
VALUES = ["fcn", "psp", "deeplab", "resnet101", "voc", "coco", "pascal_voc", "val", "testval", "0", "1", "-3", "480",
          "naive", "entropy", "kl", "uint8", "./model/psp_resnet101_coco-quantized-naive", "", "x=y"]


@settings(max_examples=300, deadline=None)
@given(argv=st.lists(st.sampled_from(FLAGS + VALUES), max_size=8))
def test_fuzzed_command_lines_plan_or_exit_with_a_usage_error(argv):
    """Any argument list either yields a plan or argparse's one-line usage error (exit 2), never a traceback."""
    try:
        p = cli.plan(argv)
    except SystemExit as exit_:
        assert exit_.code == 2
        return
    assert p.action in ("benchmark", "calibrate", "evaluate") and p.precision in ("fp32", "int8")
    assert p.args.mode == "val" and (p.args.model_prefix or not p.args.deploy)
    if p.args.calibration or p.args.quantized:
        assert p.precision == "int8"

"""The segcheck command: the seed's test.py command lines, local checkpoints, exports, and `segcheck report`."""

import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcheck.cli import commands
from segcheck.data import loaders, synthetic
from segcheck.errors import SegcheckError
from segcheck.gate.checks import CHANGED, PASS, Check
from segcheck.measure.evaluate import evaluate
from segcheck.models import pipeline
from segcheck.results import chart, report
from segcheck.results.records import Figures, RunResults

ROOT = Path(__file__).resolve().parents[1]

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


def fake_int8_export(folder: Path, name="fcn_resnet101_voc-quantized-naive") -> Path:
    """A symbol file that reads as a quantized export (plan() only reads the symbol, never the weights)."""
    (folder / "model").mkdir(parents=True, exist_ok=True)
    nodes = [{"op": "_sg_mkldnn_conv", "name": "c", "attrs": {"quantized": "true"}}]
    (folder / "model" / f"{name}-symbol.json").write_text(json.dumps({"nodes": nodes}))
    return folder / "model" / name


@pytest.mark.parametrize("name", SEED_COMMANDS)
def test_every_seed_command_line_is_understood(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_int8_export(tmp_path)
    line, action, precision = SEED_COMMANDS[name]
    p = commands.plan(shlex.split(line))
    assert (p.action, p.precision) == (action, precision)
    assert p.model.dataset == ("coco" if "coco" in line else "pascal_voc")
    assert p.model.name == ("fcn_resnet101_voc-quantized-naive" if p.deployed else f"fcn_resnet101_{'coco' if 'coco' in line else 'voc'}")
    assert p.model.tier == ("real" if "--pretrained" in line else "synthetic")
    assert p.model.weights.kind == ("export" if p.deployed else "store")


def test_pretrained_without_weights_is_an_error_naming_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    code = commands.main(shlex.split(SEED_COMMANDS["fp32-dummy"][0]) + ["--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("segcheck: error: pretrained weights for fcn_resnet101_voc not found at ")
    assert str(tmp_path / "models" / "fcn_resnet101_voc-12c2b9b3.params") in err


@pytest.mark.parametrize("argv, message", [
    (["--model", "segnet"], "argument --model: invalid choice: 'segnet'"),
    (["--backbone", "resnet7"], "argument --backbone: invalid choice: 'resnet7'"),
    (["--dataset", "kitti"], "argument --dataset: invalid choice: 'kitti'"),
    (["--mode", "testval", "--eval"], "--mode testval is not supported"),
    (["--deploy"], "--deploy needs --model-prefix"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
    (["--num-calib-batches", "x"], "argument --calib-batches/--num-calib-batches: expected a positive integer, got 'x'"),
    (["--num-images", "0"], "argument --num-images: expected a positive integer, got 0"),
    (["--num-iterations", "3"], "--num-iterations has no effect without --benchmark"),
    (["--voc-root", "my/voc", "--eval"], "--voc-root needs real weights: pass --pretrained, --resume PATH or --model-zoo NAME"),
    (["--pretrained", "--coco-root", "x"], "--coco-root has no effect: the dataset is pascal_voc"),
    (["--calib-mode", "entropy"], "--calib-mode has no effect without --calibration or --quantized"),
    (["--quantized-dtype", "int8"], "--calib-dtype has no effect without --calibration or --quantized"),
    (["--model-prefix", "m"], "--model-prefix has no effect without --deploy"),
    (["--resume", "a.params", "--pretrained"], "--resume and --pretrained both name the weights; pick one"),
    (["--model-zoo", "fcn_resnet101_ade", "--model", "psp"], "--model and --backbone have no effect with --model-zoo"),
    (["--benchmark", "--num-images", "3"], "--num-images has no effect with --benchmark"),
    (["--calibration", "--batch-size", "4"], "--batch-size has no effect with --calibration"),
    (["--calibration", "--num-images", "4"], "--num-images has no effect with --calibration"),
    (["--model", "icnet", "--backbone", "resnet50"], "icnet_resnet50_voc has no seeded weights on the synthetic tier"),
    (["--model-zoo", "fcn_resnet101_ade", "--dataset", "pascal_voc"], "--dataset pascal_voc: fcn_resnet101_ade predicts 150 classes but pascal_voc has 21; leave --dataset out"),
    (["--benchmark", "--calibration"], "--calibration has no effect with --benchmark, which times the model and exits"),
    (["--eval", "--case-timeout", "5"], "unrecognized arguments: --case-timeout 5"),  # it runs in process: nothing to stop
    (["--benchmark", "--pretrained", "--voc-root", "voc"], "--voc-root has no effect with --benchmark (it times dummy data, and nothing here calibrates on the dataset"),
    (["--benchmark", "--quantized", "--calib-mode", "none", "--pretrained", "--voc-root", "voc"], "--voc-root has no effect with --benchmark"),
    (["--eval", "--skip-bad"], "--skip-bad has no effect on the synthetic tier: its generated samples are never unreadable; name a data root"),
    (["--quantized", "--calib-mode", "none", "--calib-batches", "3"], "--calib-batches has no effect with calibration mode none"),
    (["--num-images", "100"], "fcn_resnet101_voc on the synthetic tier: 100 images requested but the val split holds 48"),
    (["--shard", "1/60"], "fcn_resnet101_voc on the synthetic tier: --shard 1/60 of 48 images holds none"),
    (["--quantized", "--calib-start", "99999"], "calibration needs 32 images (2 batches x 16) from image 99999 but the train split holds 224"),
    (["--resume", ""], "--resume is given an empty value; give one, or leave it out"),
])
def test_bad_arguments_are_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        commands.plan(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err, err


@pytest.mark.parametrize("argv, name", [
    (["report", "--results", ""], "--results"), (["report", "--segcheck-cache", " "], "--segcheck-cache"),
    (["compare", "", "after.json"], "the before argument"), (["merge", "a.json", ""], "the results argument"),
    (["noise", "reference.json", "--write", ""], "--write"), (["isa-bench", "--levels", ""], "--levels"),
    (["fetch", "voc", "--root", ""], "--root"), (["plan", "--segcheck-config", ""], "--segcheck-config"),
    (["tune", "--json", ""], "--json"), (["migrate", ""], "the baselines argument"),
], ids=lambda v: "-".join(v) if isinstance(v, list) else None)
def test_an_empty_value_is_refused_naming_it(argv, name, capsys):
    """An unset shell variable (`--results "$R"`) gives an empty value: before, report printed the cached last run, noise
    wrote nothing, fetch took its default root and the seed's command the seeded weights, each exiting 0."""
    with pytest.raises(SystemExit) as exit_:
        commands.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{name} is given an empty value; give one, or leave it out" in err, err


def test_a_quantized_benchmark_takes_the_data_its_calibration_reads():
    """--benchmark times dummy data, but --quantized calibrates on the dataset: its root and calibration start count."""
    p = commands.plan(["--benchmark", "--quantized", "--pretrained", "--voc-root", "voc", "--calib-start", "32"])
    assert (p.action, p.precision, p.model.root, p.model.calib.start) == ("benchmark", "int8", Path("voc"), 32)


def test_a_model_prefix_whose_symbol_file_is_a_folder_is_one_error(tmp_path):
    (tmp_path / "d-symbol.json").mkdir()
    with pytest.raises(SegcheckError, match=r"d-symbol.json: cannot read it \(Is a directory\); fix --model-prefix"):
        commands.plan(["--deploy", "--model-prefix", str(tmp_path / "d")])


def _run(argv, out=None) -> str:
    out = out or io.StringIO()
    assert commands.run(commands.plan(argv), out) == 0
    return out.getvalue()


def _figures(text: str) -> str:
    return re.search(r" on (val: \d+ images.*)$", text.strip()).group(1)


def test_the_seed_workflow_end_to_end_on_the_synthetic_tier(segcheck, tmp_path, monkeypatch, capsys):
    """Calibrate (exports ./model/...), evaluate in memory, deploy the export: the same figures."""
    monkeypatch.chdir(tmp_path)
    cache = ["--cache-dir", str(segcheck.run.cache_dir)]
    text = _run(shlex.split("--model=fcn --backbone=resnet101 --eval --batch-size=1 --calibration --dataset=voc") + cache)
    assert "saved quantized model: model/fcn_resnet101_voc-quantized-naive-symbol.json" in text
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "fcn_resnet101_voc-quantized-naive-0000.params", "fcn_resnet101_voc-quantized-naive-symbol.json"]
    figures = {}
    for name, line in (("memory", "--model=fcn --backbone=resnet101 --mode=val --eval --batch-size=1 --quantized"),
                       ("deploy", SEED_COMMANDS["deploy"][0])):
        figures[name] = _figures(_run(shlex.split(line) + cache + ["--num-images", "4"]))
    assert figures["memory"] == figures["deploy"] and "pixAcc" in figures["deploy"] and figures["deploy"].startswith("val: 4 images")
    for extra, message in ((["--calibration"], "is already an INT8 export: --calibration has no effect"),
                           (["--calib-mode", "entropy"], "--calib-mode has no effect: ./model/fcn_resnet101_voc-quantized-naive "
                                                         "is already an INT8 export")):
        with pytest.raises(SystemExit):  # the shipped INT8 model is gated as it is: no calibration option acts on it
            commands.plan(shlex.split(SEED_COMMANDS["deploy"][0]) + extra + cache)
        assert message in capsys.readouterr().err
    text = _run(shlex.split(SEED_COMMANDS["deploy"][0].replace("--eval", "--benchmark")) + ["--num-iterations", "2"] + cache)
    assert re.search(r"deployed INT8 \(synthetic tier, crop 64\): batch size 1, 2 iterations: latency [0-9.]+ ms", text)


def _seeded(segcheck, precision, count=6) -> str:
    """The figures line of the synthetic tier's own fcn_resnet101_voc on its first `count` val images."""
    case = segcheck.case("fcn_resnet101_voc")
    matrix = evaluate(case.model(precision), case.val, loaders.first(case.val, count)).matrix
    gluon, present = matrix.compute("gluoncv"), matrix.compute("present")
    return f"pixAcc {100 * gluon.pix_acc:.2f}%, mIoU {100 * gluon.miou:.2f} (gluoncv convention), {100 * present.miou:.2f}"


def test_the_seed_flags_on_a_local_checkpoint(segcheck, tmp_path, monkeypatch):
    """--resume PATH --voc-root DIR: FP32 --eval, --calibration and --quantized --eval on a local checkpoint and folder.

    The checkpoint is the synthetic tier's fitted fcn_resnet101_voc and the folder its generated VOC data, so the
    figures must equal the synthetic tier's on the same images.
    """
    monkeypatch.chdir(tmp_path)
    mc = segcheck.model_config("fcn_resnet101_voc")
    checkpoint = tmp_path / "my.params"
    checkpoint.symlink_to(pipeline.fp32_params(mc))
    voc = synthetic.ensure(mc.run.cache_dir, "pascal_voc", mc.run.synthetic)
    local = ["--model=fcn", "--backbone=resnet101", "--resume", str(checkpoint), "--voc-root", str(voc), "--crop-size", "64",
             "--cache-dir", str(mc.run.cache_dir)]
    calib = ["--calib-batches", "2", "--calib-batch-size", "16"]
    fp32 = _run(local + ["--eval", "--num-images", "6"])
    assert "fcn_resnet101_voc FP32 (real tier, crop 64) on val: 6 images" in fp32 and _seeded(segcheck, "fp32") in fp32
    text = _run(local + ["--calibration"] + calib)
    assert "saved quantized model: model/fcn_resnet101_voc-quantized-naive-symbol.json" in text
    int8 = _run(local + ["--quantized", "--eval", "--num-images", "6"] + calib)
    assert "INT8 (real tier, crop 64)" in int8 and _seeded(segcheck, "int8") in int8
    deployed = _run(["--deploy", "--model-prefix", "model/fcn_resnet101_voc-quantized-naive", "--quantized", "--eval",
                     "--voc-root", str(voc), "--num-images", "6", "--cache-dir", str(mc.run.cache_dir)])
    assert _figures(deployed) == _figures(int8)


def test_an_fp32_export_is_evaluated_calibrated_and_quantized(segcheck, tmp_path, monkeypatch):
    """--model-prefix takes an FP32 export too: evaluated as FP32, calibrated to ./model/, or quantized in memory."""
    from segcheck.models import export

    monkeypatch.chdir(tmp_path)
    mc = segcheck.model_config("fcn_resnet101_voc")
    net = pipeline.fp32_net(mc, fused=False)
    net.hybridize()
    net(mx.nd.zeros((1, 3, mc.crop_size, mc.crop_size)))
    export.export(net, tmp_path / "exports" / "fcn_resnet101_voc-fp32")
    common = ["--deploy", "--model-prefix", "exports/fcn_resnet101_voc-fp32", "--cache-dir", str(mc.run.cache_dir)]
    fp32 = _run(common + ["--eval", "--num-images", "6"])
    assert "fcn_resnet101_voc-fp32 deployed FP32 (synthetic tier, crop 64)" in fp32
    assert _seeded(segcheck, "fp32") in fp32
    calib = ["--calib-batches", "1", "--calib-batch-size", "2"]  # the export's digest is new each run: it calibrates anew
    text = _run(common + ["--calibration"] + calib)
    assert "saved quantized model: model/fcn_resnet101_voc-fp32-quantized-naive-symbol.json" in text
    int8 = _run(common + ["--quantized", "--eval", "--num-images", "6"] + calib)
    assert "deployed INT8" in int8 and "pixAcc" in int8
    with pytest.raises(SystemExit):
        commands.plan(["--deploy", "--model-prefix", "model/fcn_resnet101_voc-fp32-quantized-naive", "--calibration"])


@pytest.mark.parametrize("argv, writer, option, classes", [
    (["--model-zoo", "fcn_resnet50_ade"], synthetic.write_ade20k, "--ade20k-root", 150),
    (["--model", "psp", "--backbone", "resnet50", "--dataset", "citys"], synthetic.write_citys, "--citys-root", 19),
], ids=["ade20k", "citys"])
def test_other_datasets_and_networks_are_evaluated_from_the_command_line(argv, writer, option, classes, tmp_path):
    """ADE20K (150 classes) and Cityscapes (19) folders, written small, through GluonCV's loaders and networks."""
    from segcheck.config.networks import Network
    from segcheck.models import build

    network = Network.from_zoo(argv[1]) if argv[0] == "--model-zoo" else Network.from_parts("psp", "resnet50", "citys")
    net = build.build(network, 64)
    build.random_weights(net, 64, seed=3)
    net.save_parameters(str(tmp_path / "model.params"))
    assert net.nclass == classes
    root = writer(tmp_path / "data", synthetic.SyntheticSpec(seed=2, num_train=2, num_val=3))
    text = _run(argv + ["--resume", str(tmp_path / "model.params"), option, str(root), "--crop-size", "64", "--eval",
                        "--cache-dir", str(tmp_path / "cache")])
    assert re.search(rf"{network.name} FP32 \(real tier, crop 64\) on val: 3 images, ids sha1 \w+ of {network.dataset}: pixAcc [0-9.]+%", text), text


def test_console_script_is_installed_and_its_help_lists_every_subcommand():
    script = Path(sys.executable).parent / "segcheck"
    done = subprocess.run([str(script), "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--num-calib-batches" in done.stdout and "--model-prefix" in done.stdout
    assert "--resume" in done.stdout and "--model-zoo" in done.stdout and "--ade20k-root" in done.stdout
    listed = re.findall(r"^  ([\w-]+) ", done.stdout.partition("subcommands")[2], re.M)
    assert listed == list(commands.SUBCOMMANDS) and {"report", "merge", "plan", "fetch"} <= set(listed)
    for name in listed:
        out = io.StringIO()
        with pytest.raises(SystemExit) as exited, contextlib.redirect_stdout(out):
            commands.main([name, "--help"])
        assert exited.value.code == 0 and f"segcheck {name}" in out.getvalue(), (name, out.getvalue()[:200])
        description = out.getvalue().split("\n\n")[1]  # after the usage: the whole first paragraph, never cut short
        assert description.rstrip().endswith("."), (name, description)


def _results():
    results = RunResults(tier="synthetic", convention="present", environment={"isa": "avx2"})
    m = results.model("fcn_resnet101_voc")
    m.setting = {"crop_size": 64}
    m.fp32 = Figures(pixacc=92.5, miou=66.1, latency_ms=100.0, iou=[95.0, 60.0, None], latency_iqr_pct=1.5)
    m.int8 = Figures(pixacc=92.4, miou=65.9, latency_ms=40.0, iou=[94.5, 58.0, None], latency_iqr_pct=3.0)
    m.classes, m.min_speedup = ["background", "airplane", "bicycle"], 2.0
    m.tolerances = {"pixacc_points": 0.5, "miou_points": 1.0, "int8_drop_pixacc_points": 1.0, "int8_drop_miou_points": 2.0}
    row = {"fp32_latency_ms": 99.0, "s8_latency_ms": 41.0, "fp32_pixacc": 92.5, "fp32_miou": 66.0, "s8_pixacc": 92.4, "s8_miou": 65.0}
    m.baseline = {"fp32": row, "int8": row}
    results.check("fcn_resnet101_voc", "int8-accuracy", Check(CHANGED, "mIoU rose", "recipe"))
    return results


def test_report_prints_the_performance_table_and_writes_json_and_png(tmp_path):
    saved = report.save(_results(), tmp_path / "run.json")
    out = io.StringIO()
    assert commands.report(["--results", str(saved), "--json", str(tmp_path / "copy.json"), "--png", str(tmp_path / "chart.png")], out) == 0
    text = out.getvalue()
    assert text.startswith("model | fp32 latency(ms) | s8 latency(ms) | speed-up | fp32 pixAcc | fp32 mIoU | s8 pixAcc | s8 mIoU | status\n")
    assert ("fcn_resnet101_voc | 100.00 ±0.8% | 40.00 ±1.5% | 2.50x | 92.50% (+0.00) | 66.10 (+0.10) | 92.40% (+0.00) | "
            "65.90 (+0.90) | CHANGED int8-accuracy") in text
    assert "mIoU convention: present" in text and "- fcn_resnet101_voc int8-accuracy: mIoU rose" in text
    assert "0 across environments, 1 across INT8 recipes (by tier: recipe 1)" in text
    assert "CHANGED 1, REGRESSED 0 (CHANGED is not a failure: accept it with pytest --update-baselines)" in text
    assert json.loads((tmp_path / "copy.json").read_text()) == json.loads(saved.read_text())
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peer_rows_have_a_table_of_their_own_beside_their_model(tmp_path):
    results = _results()
    peer = results.model("fcn_resnet101_voc+openvino")
    peer.fp32 = Figures(pixacc=92.5, miou=66.1, latency_ms=50.0)
    peer.int8 = Figures(pixacc=92.0, miou=65.6, latency_ms=10.0)
    peer.agreement_pct = 99.87
    results.check("fcn_resnet101_voc+openvino", "fp32-agreement", Check(PASS, "agrees"))
    text = report.markdown(results)
    main, _, peers = text.partition("peer runtimes beside MXNet")
    assert "fcn_resnet101_voc | 100.00" in main and "+openvino" not in main
    assert "fcn_resnet101_voc | mxnet | 100.00 | 40.00 | 1.00x | 66.10 | 65.90 | -0.20 | - | CHANGED int8-accuracy" in peers
    assert "fcn_resnet101_voc | openvino | 50.00 | 10.00 | 0.25x | 66.10 | 65.60 | -0.50 | 99.87% | PASS" in peers
    # a row that recorded no setting (here the peer's) adds no empty "setting of" line
    assert [line for line in text.splitlines() if line.startswith("setting")] == [f"setting: {report._fmt(results.models['fcn_resnet101_voc'].setting)}"]
    chart.chart(results, tmp_path / "chart.png")  # the peers' rows are drawn too
    assert (tmp_path / "chart.png").stat().st_size > 0


def test_a_results_file_with_a_figure_no_run_writes_is_refused_and_one_without_models_says_so(tmp_path, capsys):
    doc = _results().to_dict()
    doc["models"]["fcn_resnet101_voc"]["fp32"]["miou"] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(doc))
    assert commands.main(["report", "--results", str(tmp_path / "nan.json")]) == 2
    assert ("nan.json: not a segcheck results file (models.fcn_resnet101_voc.fp32.miou is nan, not a figure a run "
            "writes); run pytest again") in capsys.readouterr().err
    empty = report.save(RunResults(tier="synthetic", convention="present"), tmp_path / "empty.json")
    out = io.StringIO()
    assert commands.report(["--results", str(empty)], out) == 0
    assert out.getvalue().startswith("no model in these results: nothing was gated")


def test_report_of_the_seed_baseline_table(monkeypatch):
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    assert commands.report(["--baseline", "real"], out) == 0
    assert "psp_resnet101_coco | 253.49 | 94.32 | 2.69x | 91.82% (+0.00) | 69.48 (+0.00) | 91.88% (+0.00) | 69.92 (+0.00) | SKIP" in out.getvalue()


def test_report_without_results_says_what_to_do(tmp_path, capsys):
    assert commands.main(["report", "--results", str(tmp_path / "none.json")]) == 2
    assert "none.json: no such results file; check the path" in capsys.readouterr().err
    assert commands.main(["report", "--segcheck-cache", str(tmp_path)]) == 2  # the default: a cache that ran nothing yet
    assert "last-run.json: no results yet; run pytest first" in capsys.readouterr().err
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "bench.json").write_text('{"machine_info": {}, "benchmarks": []}')
    for name, kind in (("list.json", "not a segcheck results file (a JSON list, where results are an object)"),
                       ("bench.json", "this is pytest-benchmark's JSON, not segcheck's results"),
                       (str(ROOT / "baselines.json"), "this is a baseline, golden-record or noise file (it holds tiers)")):
        assert commands.main(["report", "--results", str(tmp_path / name)]) == 2  # before: "format None, expected 3, 4"
        assert kind in capsys.readouterr().err
    for extra in (["--results", "r.json"], ["--segcheck-cache", str(tmp_path)], ["--per-class"]):
        assert commands.main(["report", "--baseline", "synthetic", "--baselines", str(ROOT / "baselines.json"), *extra]) == 2
        assert f"{extra[0]} has no effect with --baseline" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"format": 7}')
    assert commands.main(["report", "--results", str(tmp_path / "bad.json")]) == 2
    assert "bad.json: not a segcheck results file" in capsys.readouterr().err
    assert commands.main(["report", "--results", str(tmp_path)]) == 2  # a folder where the results file was expected
    assert f"{tmp_path}: cannot read the results (Is a directory)" in capsys.readouterr().err
    bad = str(tmp_path / "bad.json")
    assert commands.main(["report", "--results", bad, "--png", bad]) == 2  # the chart over its own input: refused
    assert f"--png {bad} is the input {bad}, which it would overwrite" in capsys.readouterr().err
    assert (tmp_path / "bad.json").read_text() == '{"format": 7}'
    assert commands.main(["report", "--baselines", "baselines.json"]) == 2
    assert "--baselines has no effect without --baseline TIER" in capsys.readouterr().err
    table = tmp_path / "baselines.json"
    table.write_text("{}")
    assert commands.main(["report", "--baseline", "real", "--baselines", str(table), "--json", str(table)]) == 2
    assert f"--json {table} is the input {table}" in capsys.readouterr().err and table.read_text() == "{}"
    for bound in ("-1", "nan"):  # CI's memory bound is a positive number of GB
        with pytest.raises(SystemExit):
            commands.main(["report", "--max-memory", bound])
        assert f"expected a positive number of GB, got '{bound}'" in capsys.readouterr().err


FLAGS = ["--model", "--backbone", "--dataset", "--mode", "--batch-size", "--num-calib-batches", "--calib-mode",
         "--quantized-dtype", "--model-prefix", "--crop-size", "--num-images", "--calib-split", "--eval", "--pretrained",
         "--benchmark", "--calibration", "--quantized", "--deploy", "--resume", "--model-zoo", "--voc-root", "--bogus"]
VALUES = ["fcn", "psp", "deeplab", "resnet101", "voc", "coco", "ade20k", "pascal_voc", "val", "testval", "0", "1", "-3", "480",
          "all", "naive", "entropy", "kl", "uint8", "./model/psp_resnet101_coco-quantized-naive", "fcn_resnet50_ade", "", "x=y"]


def test_fuzzed_command_lines_plan_or_fail_with_one_line():
    """Any argument list yields a plan, argparse's usage error (exit 2, its one error line) or one SegcheckError line
    naming a flag given, never a traceback; all three happen (a planner that accepted or refused everything fails)."""
    seen = {"planned": 0, "usage": 0, "refused": 0}

    @settings(max_examples=300)
    @given(pairs=st.lists(st.tuples(st.sampled_from(FLAGS), st.one_of(st.none(), st.sampled_from(VALUES))), max_size=5),
           stray=st.lists(st.sampled_from(VALUES), max_size=1))
    def one(pairs, stray):
        argv = [a for flag, value in pairs for a in (flag, value) if a is not None] + stray
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                p = commands.plan(argv)
        except SystemExit as exit_:
            seen["usage"] += 1
            assert exit_.code == 2 and "segcheck: error: " in err.getvalue(), err.getvalue()
            return
        except SegcheckError as refused:
            seen["refused"] += 1
            message = str(refused)
            assert "\n" not in message and any(a in message for a in argv if a.startswith("--")), (argv, message)
            return
        seen["planned"] += 1
        assert p.action in ("benchmark", "calibrate", "evaluate") and p.precision in ("fp32", "int8")
        assert p.args.mode == "val" and (p.args.model_prefix or not p.args.deploy)
        if p.args.calibration or p.args.quantized:
            assert p.precision == "int8"

    one()
    assert all(seen.values()), seen
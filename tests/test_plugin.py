"""The pytest plugin as another repository meets it: inert without a configuration, a gate with one.

Inner pytest runs happen in process (pytester) in empty temporary folders; the plugin comes from the
installed entry point, the gate's tests from the package, nothing from this repository.
"""

import json
from dataclasses import replace
from pathlib import Path

import inner
import numpy as np
import pytest
from inner import Reuse
from PIL import Image, ImageDraw, ImageFilter

from segcheck.cases.model_case import ModelCase
from segcheck.data import synthetic
from segcheck.errors import SegcheckError
from segcheck.measure import guard
from segcheck.models import pipeline
from segcheck.plugin.hooks import SUITE
from segcheck.results import chart, report


def test_a_reuse_hands_over_only_to_a_case_of_the_same_configuration(segcheck):
    """segcheck's pytest_segcheck_reuse hook, as the inner runs' helper answers it: parts of a case of the same
    configuration are handed over and not made again; a case of another configuration makes its own. The peers a run
    adds (--peer) change none of a model's parts: an inner run without them still takes the outer run's models."""
    made = segcheck.case("fcn_resnet101_voc")
    reuse = Reuse(made, parts=("fp32", "fp32-evaluation"))
    hooks = inner.Hooks(pytest_segcheck_reuse=reuse.pytest_segcheck_reuse)
    same = ModelCase(made.config, segcheck.unavailable, hooks)
    assert same.fp32 is made.fp32 and same.evaluation("fp32") is made.evaluation("fp32")
    assert set(same.parts()) == {"fp32", "fp32-evaluation"}
    peered = made.config.with_(peers=("openvino",), run=replace(made.config.run, peers=("openvino",)))
    assert reuse.pytest_segcheck_reuse(case=ModelCase(peered, segcheck.unavailable, hooks), part="fp32") is made.fp32
    other = ModelCase(made.config.with_(num_images=6), segcheck.unavailable, hooks)
    assert reuse.pytest_segcheck_reuse(case=other, part="fp32") is None and other.parts() == {}


def test_a_handed_over_model_reads_its_evaluations_from_the_cache_and_a_plugins_model_does_not(segcheck, monkeypatch):
    """Evaluations are cached under the digest of the weights a model was built from: a model handed over keeps that of
    the case that built it, so an inner run that takes this session's FP32 and INT8 reads their evaluations back (a
    recipe change's per-layer comparison among them); a model a plugin put in place, even the same one, has none and
    is evaluated again."""
    made = segcheck.case("fcn_resnet101_voc")
    if not made.config.run.eval_cache:
        pytest.skip("this run reads no evaluation from the cache (--no-eval-cache)")
    made.evaluation("int8"), made.localisation()  # both evaluations and the per-layer comparison in the cache
    reuse = Reuse(made, parts=("fp32", "int8"))
    hooks = inner.Hooks(pytest_segcheck_reuse=reuse.pytest_segcheck_reuse)
    handed = ModelCase(made.config, segcheck.unavailable, hooks)
    assert handed.fp32 is made.fp32 and handed.int8 is made.int8
    assert handed.evaluation("fp32").cached and handed.evaluation("int8").cached
    monkeypatch.setattr(guard, "isolated", lambda what, *args, **kwargs: pytest.fail(f"{what}: made again"))
    held = made.localisation()  # on 8 images, or 48 where this run compares across environments
    assert handed.localisation(held.images).layers == held.layers  # read back, not compared again
    monkeypatch.undo()
    put_in_place = inner.Hooks(pytest_segcheck_model=lambda case, precision, model: made.fp32)
    replaced = ModelCase(made.config, segcheck.unavailable, put_in_place)
    assert replaced.fp32 is made.fp32 and not replaced.evaluation("fp32").cached


def test_a_reuse_ignores_only_what_changes_no_part(segcheck, tmp_path):
    """Another cache folder, case timeout or --no-eval-cache changes nothing a case makes; another shard changes the
    evaluation but not the model; another calibration recipe changes INT8 but not FP32."""
    made = segcheck.case("fcn_resnet101_voc")
    config = made.config
    reuse = Reuse(made, parts=("fp32", "fp32-evaluation", "int8"))
    handed = lambda changed, part: reuse.pytest_segcheck_reuse(case=ModelCase(changed, segcheck.unavailable), part=part)  # noqa: E731
    moved = config.with_(run=replace(config.run, cache_dir=tmp_path, case_timeout=10.0, eval_cache=False))
    assert all(handed(moved, part) is made.make(part) for part in ("fp32", "fp32-evaluation", "int8"))
    sharded = config.with_(run=replace(config.run, shard=(1, 3)))
    assert handed(sharded, "fp32") is made.fp32 and handed(sharded, "fp32-evaluation") is None
    assert handed(sharded, "int8") is made.int8
    recipe = config.with_(calib=replace(config.calib, num_batches=1), run=replace(config.run, calib={"num_batches": 1}))
    assert handed(recipe, "fp32") is made.fp32 and handed(recipe, "fp32-evaluation") is made.evaluation("fp32")
    assert handed(recipe, "int8") is None


def outcomes(pytester, *args, plugins=(), environ=None) -> tuple:
    """(outcomes of an inner run in the pytester folder by test name, its RunResult)."""
    done = inner.run(pytester, *args, rootdir=None, plugins=plugins, environ=environ)
    return done.outcomes, done.result


def test_without_a_configuration_the_plugin_only_adds_its_options(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCHECK_CACHE_DIR", str(tmp_path / "cache"))
    pytester.makepyfile(test_mine="def test_mine(tmp_path):\n    (tmp_path / 'x').write_text('y')\n    assert (tmp_path / 'x').read_text() == 'y'\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--trace-config")
    result.assert_outcomes(passed=1)
    assert "segcheck.plugin" in result.stdout.str() and "segcheck Performance table" not in result.stdout.str()
    assert not (tmp_path / "cache").exists()
    # .benchmarks is pytest-benchmark's own storage folder, made whether or not segcheck is installed
    assert sorted(p.name for p in pytester.path.iterdir() if p.name != ".benchmarks") == ["test_mine.py"]
    help_text = pytester.runpytest_inprocess("--help").stdout.str()
    assert "--update-baselines" in help_text and "--calib-batches" in help_text and "--ade20k-root" in help_text
    refused = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--tier", "real", "--update-baselines")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    assert "--tier, --update-baselines: no segcheck configuration" in refused.stderr.str()


def test_a_bad_configuration_stops_the_run_naming_file_and_key(pytester):
    pytester.path.joinpath("segcheck.toml").write_text('[[models]]\nnetwork = "fcn_resnet101_voc"\ndataset = {crop_size = 60}\n')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "crop size 60 cannot be taken" in result.stderr.str()
    pytester.path.joinpath("segcheck.toml").write_text('[[models]]\nnetwrk = "fcn_resnet101_voc"\n')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "segcheck.toml: key 'models[0].netwrk': unknown key" in result.stderr.str()


@pytest.mark.parametrize("config, args, message", [
    ('tier = "synthetic"\n', ["--voc-root", "x"], "--voc-root has no effect on the synthetic tier"),
    ("", ["--coco-root", "x"], "--coco-root has no effect: no configured model uses coco"),
    ('int8 = {export = "shipped"}\n', ["--calib-mode", "entropy"], "--calib-mode has no effect: every configured model's INT8 side is a shipped export"),
    ('int8 = {mode = "none"}\n', ["--num-calib-batches", "3"], "--calib-batches has no effect with calibration mode none"),
    ('tier = "synthetic"\n', ["--require-real"], "--require-real has no effect on the synthetic tier"),
    ('tier = "synthetic"\n', ["--update-baselines", "--shard=1/2"], "--update-baselines with --shard: a shard's figures are not a row"),
    ('tier = "synthetic"\n', ["--peer", "openvino", "--shard=1/2"], "--peer with --shard: the peer cases run on all the images"),
    ('tier = "synthetic"\n', ["--peer", "openvino,openvino"], "expected distinct peer runtimes among onnxruntime, openvino"),
    ('tier = "synthetic"\n', ["--peer", "onnxruntime", "--peer", "openvino"], "--peer is given twice; give it once (several runtimes: --peer onnxruntime,openvino)"),
    ('tier = "synthetic"\n', ["--strict-changes", "--strict-digest"], "--strict-digest is given twice"),
    ('int8 = {mode = "none"}\n', ["--calib-start", "32"], "--calib-start has no effect with calibration mode none"),
    ("", ["--update-baselines", "--benchmark-skip"], "--update-baselines with --benchmark-skip: a baseline row needs the latency benchmarks"),
    ("", ["--update-baselines", "--benchmark-disable"], "--update-baselines with --benchmark-disable: a baseline row needs"),
    ("", ["--update-baselines", "-n", "2"], "--update-baselines with -n: the latency benchmarks of pytest-xdist's workers"),
    ("", ["--results-json", "segcheck.toml"], "--results-json segcheck.toml is the input "),
    ("", ["--report-png", "baselines.json"], "--report-png baselines.json is the input "),
    ("", ["--results-json", "r.json", "--report-png", "r.json"], "--report-png r.json is also --results-json's output"),
    ("", ["--results-json", "."], "--results-json: . is a folder; name a file to write"),
    ("", ["--baselines", "mistyped.json"], "--baselines mistyped.json: no such file; correct the path, or add --update-baselines"),
    ('tier = "synthetic"\n', ["--skip-bad"], "--skip-bad has no effect on the synthetic tier: its generated samples are never unreadable; add --tier real"),
    ("", ["--segcheck-cache", "segcheck.toml"], "segcheck.toml is a file; name a folder with --segcheck-cache"),
    ('tier = "synthetic"\n', ["--num-images", "49"], "fcn_resnet101_voc on the synthetic tier: 49 images requested but the val split holds 48"),
    ('tier = "synthetic"\n', ["--calib-start", "200"], "fcn_resnet101_voc on the synthetic tier: calibration needs 32 images (2 batches x 16) from image 200 but the train split holds 224"),
    ('tier = "synthetic"\n', ["--num-images", "2", "--shard", "1/3"], "fcn_resnet101_voc on the synthetic tier: --shard 1/3 of 2 images holds none; split them into at most 2 shards"),
    ("", ["--results-json="], "--results-json is given an empty value; give one, or leave it out"),
], ids=["root-on-synthetic", "root-of-unused-dataset", "calib-with-exports-only", "batches-with-mode-none", "require-real-on-synthetic",
        "record-from-a-shard", "peers-in-a-shard", "a-peer-twice", "peer-option-twice", "one-option-two-spellings",
        "start-with-mode-none", "record-without-benchmarks", "record-with-benchmarks-disabled", "record-on-xdist-workers",
        "results-over-the-configuration", "chart-over-the-baselines", "results-and-chart-one-file", "results-into-a-folder",
        "a-mistyped-baseline-file", "skip-bad-on-synthetic", "a-cache-that-is-a-file", "more-images-than-the-split",
        "calibration-beyond-the-split", "an-empty-shard", "an-empty-value"])
def test_an_option_without_effect_is_a_usage_error(pytester, config, args, message):
    head, _, tail = config.partition("int8")
    model = '[[models]]\nnetwork = "fcn_resnet101_voc"\n' + (("int8" + tail) if tail else "")
    pytester.path.joinpath("segcheck.toml").write_text(head + model)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and message in result.stderr.str(), result.stderr.str()


def test_an_option_given_twice_names_pytest_addopts_where_that_gives_it(pytester, monkeypatch):
    """pytest puts PYTEST_ADDOPTS before the command line: the refusal says where the other value came from."""
    pytester.path.joinpath("segcheck.toml").write_text('tier = "synthetic"\n[[models]]\nnetwork = "fcn_resnet101_voc"\n')
    monkeypatch.setenv("PYTEST_ADDOPTS", "-q --tier=real")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--tier=synthetic")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--tier is given twice; give it once (PYTEST_ADDOPTS gives it too: -q --tier=real)" in result.stderr.str()


def test_a_write_failing_at_the_end_leaves_the_others_and_a_recording_of_nothing_fails(pytester, monkeypatch):
    """Every case skips (real tier, no weights, no data). The chart cannot be drawn (patched to raise), yet the
    results are written; --update-baselines, which records nothing, fails the run naming the model and why and writes
    no baseline file. Before, a failing chart skipped the recording, and a recording of nothing exited 0 saying that a
    file which did not exist "already holds these rows"."""
    no_voc = pytester.path / "no-voc"
    pytester.path.joinpath("segcheck.toml").write_text(
        f'tier = "real"\n[[models]]\nnetwork = "fcn_resnet101_voc"\ndataset = {{ root = "{no_voc}" }}\n')
    monkeypatch.setenv("MXNET_HOME", str(pytester.path / "no-store"))

    def undrawable(*args):
        raise SegcheckError("the chart cannot be drawn")

    monkeypatch.setattr(chart, "chart", undrawable)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--segcheck-cache", str(pytester.path / "cache"),
                                          "--results-json", "r.json", "--report-png", "c.png", "--update-baselines")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-2000:]
    assert "fcn_resnet101_voc" in report.load(pytester.path / "r.json").models
    assert "segcheck: the chart cannot be drawn" in out and not (pytester.path / "c.png").exists()
    assert "not recorded: fcn_resnet101_voc: its cases skipped (" in out
    assert (f"segcheck: --update-baselines: nothing was written to {pytester.path / 'baselines.json'} (every model's cases "
            "skipped)") in out and "already holds" not in out
    assert not (pytester.path / "baselines.json").exists()


def test_published_rows_are_never_recorded_over(pytester):
    root = Path(__file__).resolve().parents[1]
    pytester.path.joinpath("segcheck.toml").write_text(f'baselines = "{root / "baselines.json"}"\n[[models]]\nnetwork = "fcn_resnet101_voc"\n')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--update-baselines")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "holds published rows (match_environment false)" in result.stderr.str()


def _void_border(label: np.ndarray) -> np.ndarray:
    img = Image.fromarray(label)
    edges = np.asarray(img.filter(ImageFilter.MaxFilter(3))) != np.asarray(img.filter(ImageFilter.MinFilter(3)))
    return np.where(edges, 255, label).astype(np.uint8)


def handmade_voc(root: Path, count: int, first: int) -> list:
    """VOC-layout samples drawn here, not by segcheck's generator: odd sizes, one greyscale JPEG, 255 borders."""
    base = root / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(first)
    names = []
    for i in range(first, first + count):
        w, h = int(rng.integers(83, 157)) | 1, int(rng.integers(79, 149)) | 1  # odd sizes
        image = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(50, 70, size=3)))
        label = Image.new("L", (w, h), 0)
        for _ in range(int(rng.integers(1, 3))):
            cls = int(rng.integers(1, 21))
            x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            box = (x0, y0, x0 + int(rng.integers(w // 4, w // 2)), y0 + int(rng.integers(h // 4, h // 2)))
            ImageDraw.Draw(image).ellipse(box, fill=synthetic.appearance(cls).colour)
            ImageDraw.Draw(label).ellipse(box, fill=cls)
        name = f"2012_{i:06d}"
        if i == first:
            image = image.convert("L")  # a greyscale JPEG, as real VOC has a few
        image.save(base / "JPEGImages" / f"{name}.jpg", quality=90)
        mask = Image.fromarray(_void_border(np.asarray(label)), mode="P")
        mask.putpalette([c for k in range(256) for c in ((0, 0, 0) if k == 0 else (224, 224, 192) if k == 255 else synthetic.appearance(k % 20 + 1).colour)])
        mask.save(base / "SegmentationClass" / f"{name}.png")
        names.append(name)
    return names


OWN_CONFIG = """
metric_convention = "present"

[[models]]
name = "my_fcn"
model = "fcn"
backbone = "resnet101"
weights = "weights/my_fcn.params"
dataset = { name = "pascal_voc", root = "data/VOCdevkit", crop_size = 64 }
int8 = { batches = 1, batch_size = 8 }
min_speedup = { avx2 = 1.3, avx512 = 1.3, avx512_vnni = 1.5, amx = 2.0 }
# INT8 drop on these 6 hand-drawn images, which the model never saw: mIoU +1.89 (VNNI), +2.84 (AVX2 cap), +2.88
# (AVX512_CORE cap), bootstrap intervals up to [-0.5, +6.1]; pixAcc -0.34 to -0.41. 4 points fits every ISA.
tolerances = { int8_drop_miou_points = 4.0 }
"""


def test_a_folder_segcheck_never_generated_is_gated(pytester, segcheck):
    """Only a configuration, an FP32 params file and a hand-written VOC folder: pytest gates the model there.

    First run: no baseline row, so the accuracy cases skip saying how to record one (the rest of the gate runs).
    --update-baselines records the rows; the rerun passes every check, accuracy included.
    """
    folder = pytester.path
    (folder / "weights").mkdir()
    (folder / "weights" / "my_fcn.params").symlink_to(pipeline.fp32_params(segcheck.model_config("fcn_resnet101_voc")))
    voc = folder / "data" / "VOCdevkit"
    lists = {"train": handmade_voc(voc, 8, 0), "val": handmade_voc(voc, 6, 100)}
    for split, names in lists.items():
        (voc / "VOC2012/ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    (folder / "segcheck.toml").write_text(OWN_CONFIG)
    # a short latency budget: the adaptive rounds are not what this test is about (at least 5 rounds still run)
    cache = ["--segcheck-cache", str(segcheck.run.cache_dir), "--results-json", str(folder / "results.json"),
             "--benchmark-max-time=0.2"]

    keep = Reuse(keep=True)  # the first run builds, evaluates and compares the models; the later runs reuse that
    first, _ = outcomes(pytester, *cache, plugins=[keep])
    checks = {"test_accuracy[my_fcn-fp32]", "test_accuracy[my_fcn-int8]", "test_int8_drop[my_fcn]",
              "test_int8_graph_is_quantized_and_calibrated[my_fcn]", "test_fp32_graph_is_fused_on_onednn[my_fcn]",
              "test_deploy_round_trip[my_fcn]", "test_latency[my_fcn-fp32]", "test_latency[my_fcn-int8]",
              "test_int8_speedup[my_fcn]", "test_seeded_fp32_model_really_segments[my_fcn]", "test_int8_class_drop[my_fcn]",
              "test_int8_calibration_table[my_fcn]", "test_int8_layer_error[my_fcn]", "test_outputs_digest[my_fcn-fp32]",
              "test_outputs_digest[my_fcn-int8]", "test_int8_agreement[my_fcn]"}
    no_peer = {"test_peer_fp32_agrees_with_mxnet[no-peer]", "test_peer_accuracy[no-peer-fp32]",
               "test_peer_accuracy[no-peer-int8]", "test_peer_int8_drop[no-peer]"}  # this model names no peer runtime
    assert set(first) == checks | no_peer
    assert all(first[name][0] == "skipped" and "no model is gated on a peer runtime" in first[name][1] for name in no_peer)
    for name in ("test_accuracy[my_fcn-fp32]", "test_accuracy[my_fcn-int8]"):
        assert first[name][0] == "skipped" and "no real-tier baseline rows" in first[name][1] and "--update-baselines" in first[name][1]
    for name in ("test_outputs_digest[my_fcn-fp32]", "test_outputs_digest[my_fcn-int8]"):
        assert first[name][0] == "skipped" and "no golden digest" in first[name][1]
    ranges = first["test_int8_calibration_table[my_fcn]"]
    assert ranges[0] == "skipped" and "all present, concat inputs aligned, but no golden table" in ranges[1]  # nothing compared
    assert first["test_int8_layer_error[my_fcn]"][0] == "skipped" and "no golden per-layer curve" in first["test_int8_layer_error[my_fcn]"][1]
    assert first["test_int8_agreement[my_fcn]"][0] == "skipped" and "no per-image agreement" in first["test_int8_agreement[my_fcn]"][1]
    assert first["test_seeded_fp32_model_really_segments[my_fcn]"][0] == "skipped"
    compared = ("accuracy[", "seeded", "digest", "calibration_table", "layer_error", "agreement")  # nothing recorded yet
    assert all(outcome == "passed" for name, (outcome, _) in first.items()
               if name not in no_peer and not any(c in name for c in compared)), first

    accuracy = str(SUITE / "test_accuracy.py") + "::test_accuracy"
    required, _ = outcomes(pytester, *cache, "--require-baseline", accuracy, plugins=[keep])
    assert {n: o for n, (o, _) in required.items()} == {"test_accuracy[my_fcn-fp32]": "failed", "test_accuracy[my_fcn-int8]": "failed"}
    assert "--require-baseline: no real-tier baseline rows" in required["test_accuracy[my_fcn-int8]"][1]
    in_ci, _ = outcomes(pytester, *cache, accuracy, plugins=[keep], environ={"CI": "true"})  # what every CI system sets
    assert {n: o for n, (o, _) in in_ci.items()} == {"test_accuracy[my_fcn-fp32]": "failed", "test_accuracy[my_fcn-int8]": "failed"}
    assert "CI=true: no real-tier baseline rows" in in_ci["test_accuracy[my_fcn-int8]"][1]
    assert "record them from a trusted run with pytest --update-baselines" in in_ci["test_accuracy[my_fcn-int8]"][1]

    # the deploy round trip compares with no record and passed in the first run: the record and its rerun leave it out
    later = ["-k", "not deploy_round_trip"]
    recorded, result = outcomes(pytester, *cache, *later, "--update-baselines", plugins=[keep])
    assert '"my_fcn": {"fp32_latency_ms"' in result.stdout.str()
    rows = json.loads((folder / "baselines.json").read_text())["tiers"]["real"]["entries"]
    assert [list(e["rows"]) for e in rows] == [["my_fcn"]] and rows[0]["setting"]["crop_size"] == 64
    recorded_golden = json.loads((folder / "baselines.golden.json").read_text())["tiers"]["real"][0]["models"]["my_fcn"]
    assert set(recorded_golden) == {"ranges", "sqnr_db", "sqnr_per_image", "signal_per_image", "digest", "class_iou", "per_image", "agreement", "output_sqnr"}
    curves = [recorded_golden[k]["resnetv1s_conv0_fwd"] for k in ("sqnr_per_image", "signal_per_image")]
    assert [len(c) for c in curves] == [6, 6] and min(curves[1]) > 0  # every val image (fewer than 48), with its energy

    again, result = outcomes(pytester, *cache, *later, plugins=[keep])
    assert set(again) == set(first) - {"test_deploy_round_trip[my_fcn]"}
    assert all(outcome == "passed" for name, (outcome, _) in again.items() if "seeded" not in name and name not in no_peer), again
    assert "my_fcn | " in result.stdout.str() and "| PASS" in result.stdout.str()
    assert json.loads((folder / "results.json").read_text())["models"]["my_fcn"]["checks"]["speedup"]["status"] == "PASS"


def test_an_mxnet_without_an_onnx_exporter_skips_the_peer_cases_saying_so(segcheck, monkeypatch, tmp_path):
    """mxnet 1.8 has no mxnet.onnx: a model's peer cases skip (fail under --peer) naming that before anything else,
    since a peer environment could not help; with an exporter, a missing peer environment is said before any export."""
    import importlib.util

    from segcheck.cases import model_case as cases

    unavailable = (pytest.skip.Exception, pytest.fail.Exception)  # a skip, or a failure where --peer was given
    config = segcheck.model_config("fcn_resnet101_voc")
    monkeypatch.setenv("SEGCHECK_PEER_ENV", str(tmp_path / "none"))
    found = importlib.util.find_spec
    with monkeypatch.context() as patched:
        patched.setattr(cases.importlib.util, "find_spec", lambda name, *a: None if name == "mxnet.onnx" else found(name, *a))
        for part in (lambda case: case.onnx, lambda case: case.peer("openvino")):
            with pytest.raises(unavailable, match=r"mxnet \S+ has no ONNX exporter \(mxnet.onnx"):
                part(ModelCase(config, segcheck.unavailable))
    said = "no peer environment" if found("mxnet.onnx") is not None else "has no ONNX exporter"  # mxnet 1.8 has none
    with pytest.raises(unavailable, match=said):
        ModelCase(config, segcheck.unavailable).peer("openvino")

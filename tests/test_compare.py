"""`segcheck compare`: two runs' results side by side (an MXNet upgrade, another ISA cap), as text, PNG and JSON."""

import io
import json
import os

import pytest

from segcheck import atomic
from segcheck.errors import SegcheckError
from segcheck.gate.checks import CHANGED, FAIL, PASS, REGRESSED, Check
from segcheck.results import compare, report
from segcheck.results.records import Figures, RunResults

CLASSES = ["background", "airplane", "bicycle", "bird", "boat"]
PNG = b"\x89PNG\r\n\x1a\n"


def _layers(**sqnr):
    return [{"name": name, "sqnr_db": value, "cosine": 0.99} for name, value in sqnr.items()]


def _run(environment: dict, fcn: tuple, layers: dict, ranges: dict, status, psp: tuple, psp_subset: str, other: str):
    """A run's results: fcn_resnet101_voc with per-class IoU, layers and ranges, psp_resnet101_voc with figures only,
    and one model of its own (`other`)."""
    results = RunResults(tier="synthetic", convention="present", environment=environment)
    m = results.model("fcn_resnet101_voc")
    m.classes, m.setting = CLASSES, {"crop_size": 64}
    m.fp32, m.int8 = fcn
    m.layers, m.ranges = _layers(**layers), ranges
    results.check("fcn_resnet101_voc", "int8-accuracy", status)
    p = results.model("psp_resnet101_voc")
    (p.fp32, p.int8), p.subset = psp, psp_subset
    results.model(other).fp32 = Figures(pixacc=80.0, miou=40.0)
    return results


def _before():
    return _run({"mxnet": "1.9.1", "onednn": "2.6.0", "isa": "avx512_vnni", "onednn_isa": "avx512_core_vnni", "cap": "", "cpu": "Xeon 8375C"},
                (Figures(pixacc=92.5, miou=66.1, latency_ms=100.0, iou=[95.0, 60.0, 40.0, None, 70.0]),
                 Figures(pixacc=92.4, miou=65.9, latency_ms=40.0, iou=[94.5, 58.0, 41.0, None, 70.0])),
                dict(conv0=40.0, conv1=30.0, conv2=25.0, old_fc=20.0),
                {"conv0": {"range": [0.0, 4.0]}, "conv1": {"range": [-2.0, 2.0]}, "conv2": {"range": [0.0, 8.0]},
                 "gone": {"range": [0.0, 1.0]}}, Check(PASS, "within tolerance"),
                (Figures(pixacc=94.0, miou=70.0, latency_ms=120.0), Figures(pixacc=93.9, miou=69.8, latency_ms=50.0)),
                "first 100 of 1449", "fcn_resnet50_ade")


def _after():
    return _run({"mxnet": "2.0.0", "onednn": "2.6.0", "isa": "avx2", "onednn_isa": "avx2", "cap": "avx2", "cpu": "Xeon 8375C"},
                (Figures(pixacc=92.5, miou=66.1, latency_ms=110.0, iou=[95.0, 60.0, 40.0, None, 70.0]),
                 Figures(pixacc=91.9, miou=64.0, latency_ms=55.0, iou=[94.0, 50.0, 43.0, 12.0, 70.0])),
                dict(conv0=39.5, conv1=18.0, conv2=27.0, new_head=22.0),
                {"conv0": {"range": [0.0, 6.0]}, "conv1": {"range": [-2.2, 2.0]}, "conv2": {"range": [0.0, 8.0]},
                 "new": {"range": [0.0, 3.0]}}, Check(FAIL, "mIoU fell"),
                # psp's INT8 latency benchmark did not run
                (Figures(pixacc=94.0, miou=70.5, latency_ms=118.0), Figures(pixacc=93.8, miou=69.0)),
                "first 50 of 1449", "deeplab_resnet101_voc")


@pytest.fixture
def runs(tmp_path):
    return report.save(_before(), tmp_path / "before.json"), report.save(_after(), tmp_path / "after.json")


@pytest.fixture
def comparison(runs):
    return compare.compare(report.load(runs[0]), report.load(runs[1]), labels=("before.json", "after.json"))


def test_the_environment_keys_that_differ_come_first_and_marked(comparison):
    assert comparison.changed == ("mxnet", "isa", "onednn_isa", "cap")
    text = compare.markdown(comparison)
    assert text.startswith("# segcheck compare: before.json -> after.json\n\nchanged: **mxnet 1.9.1 -> 2.0.0**; "
                           "**isa avx512_vnni -> avx2**; **onednn_isa avx512_core_vnni -> avx2**; **cap '' -> avx2**\n")
    assert "unchanged: onednn 2.6.0, cpu Xeon 8375C\n" in text and "tier: synthetic\n" in text


def test_deltas_per_model_in_both_runs(comparison):
    assert [m.name for m in comparison.models] == ["fcn_resnet101_voc", "psp_resnet101_voc"]
    fcn = comparison.models[0]
    assert fcn.figures["int8_miou"].delta == pytest.approx(-1.9)
    assert fcn.figures["int8_pixacc"].delta == pytest.approx(-0.5)
    assert fcn.figures["fp32_miou"].delta == 0
    assert (fcn.speedup.before, fcn.speedup.after, fcn.speedup.delta) == (pytest.approx(2.5), pytest.approx(2.0), pytest.approx(-0.5))
    assert fcn.status == ("PASS", "FAIL int8-accuracy")
    text = compare.markdown(comparison)
    assert ("fcn_resnet101_voc | 92.50% -> 92.50% (+0.00) | 66.10 -> 66.10 (+0.00) | 92.40% -> 91.90% (-0.50) | "
            "65.90 -> 64.00 (-1.90) | 2.50x -> 2.00x (-0.50x) | PASS -> FAIL int8-accuracy") in text


def test_missing_latency_gives_a_dash(comparison):
    psp = comparison.models[1]
    assert psp.speedup.before == pytest.approx(2.4) and psp.speedup.after is None and psp.speedup.delta is None
    assert psp.figures["fp32_miou"].delta == pytest.approx(0.5)
    row = next(line for line in compare.markdown(comparison).splitlines() if line.startswith("psp_resnet101_voc | "))
    assert row.split(" | ")[5] == "2.40x -> - (-)"
    assert compare.cell(compare.Change.of(None, None)) == "-"


def test_what_differs_besides_the_environment_is_said(comparison):
    assert comparison.models[1].differs == {"subset": ("first 100 of 1449", "first 50 of 1449")}
    assert "## psp_resnet101_voc\nsubset differs: \"first 100 of 1449\" -> \"first 50 of 1449\"\n" in compare.markdown(comparison)
    after = _after()
    after.convention = "gluoncv"
    text = compare.markdown(compare.compare(_before(), after))
    assert "**convention differs: present -> gluoncv** (the figures may not be comparable)" in text
    assert compare.compare(_before(), _before()).changed == ()


def test_models_in_one_run_only_are_listed_not_an_error(comparison):
    assert comparison.only_before == ("fcn_resnet50_ade",) and comparison.only_after == ("deeplab_resnet101_voc",)
    text = compare.markdown(comparison)
    assert "only in before.json: fcn_resnet50_ade\n" in text and "only in after.json: deeplab_resnet101_voc\n" in text
    assert "## fcn_resnet50_ade" not in text and "## deeplab_resnet101_voc" not in text


def test_the_class_that_moved_most_comes_first_per_precision(comparison):
    fcn = comparison.models[0]
    assert [(c.precision, c.name, c.change.delta) for c in fcn.classes] == [
        ("int8", "airplane", pytest.approx(-8.0)), ("int8", "bicycle", pytest.approx(2.0)),
        ("int8", "background", pytest.approx(-0.5))]  # FP32 did not move; bird and boat kept their IoU
    assert [(c.precision, c.name, c.change.after) for c in fcn.classes_undefined] == [("int8", "bird", 12.0)]
    text = compare.markdown(comparison)
    assert "s8 | airplane | 58.00 -> 50.00 (-8.00)\ns8 | bicycle | 41.00 -> 43.00 (+2.00)\n" in text
    assert "s8 bird (absent before, 12.00 after)" in text
    assert comparison.models[1].classes == () and "classes: per-class IoU is not in both runs" in text


def test_top_five_classes_only():
    before, after = _before(), _after()
    before.models["fcn_resnet101_voc"].classes = after.models["fcn_resnet101_voc"].classes = [f"c{i}" for i in range(8)]
    before.models["fcn_resnet101_voc"].int8.iou = [50.0] * 8
    after.models["fcn_resnet101_voc"].int8.iou = [50.0 + i for i in range(8)]
    moved = compare.compare(before, after).models[0].classes
    assert [c.name for c in moved if c.precision == "int8"] == ["c7", "c6", "c5", "c4", "c3"]


def test_the_layer_whose_sqnr_moved_most_comes_first_and_layers_in_one_run_are_named(comparison):
    fcn = comparison.models[0]
    assert [(layer.name, layer.change.delta) for layer in fcn.layers] == [
        ("conv1", pytest.approx(-12.0)), ("conv2", pytest.approx(2.0)), ("conv0", pytest.approx(-0.5))]
    assert [(layer.name, layer.change.before, layer.change.after) for layer in fcn.layers_changed] == [
        ("old_fc", 20.0, None), ("new_head", None, 22.0)]
    text = compare.markdown(comparison)
    assert "layer | SQNR (before -> after)\n-- | --\nconv1 | 30.0 dB -> 18.0 dB (-12.0 dB)\n" in text
    assert "layers appeared: new_head\nlayers vanished: old_fc\n" in text


def test_layers_measured_on_48_and_on_8_images_are_compared_on_the_first_8():
    """A recording measures layers on 48 images and a run of the same kind on 8: their first 8 are the same images, so
    equal figures there are no move, whatever the other 40 held."""
    before, after = _before(), _after()
    for results, n in ((before, 48), (after, 8)):
        results.models["fcn_resnet101_voc"].layers = [
            {"name": "conv0", "sqnr_db": 30.0 if n == 8 else 25.0, "cosine": 0.99,
             "per_image": ([30.0] * 8 + [20.0] * 40)[:n], "signal": [1.0] * n}]
    fcn = compare.compare(before, after).models[0]
    assert not fcn.layers and not fcn.layers_changed


def test_the_range_that_moved_most_comes_first(comparison):
    fcn = comparison.models[0]
    assert [(r.name, r.relative) for r in fcn.ranges] == [("conv0", pytest.approx(0.5)), ("conv1", pytest.approx(0.1))]
    assert [(r.name, r.before is None) for r in fcn.ranges_changed] == [("gone", False), ("new", True)]
    text = compare.markdown(comparison)
    assert "conv0 | [0, 4] | [0, 6] | 50.0%\nconv1 | [-2, 2] | [-2.2, 2] | 10.0%\n" in text
    assert "calibrated ranges appeared: new\ncalibrated ranges vanished: gone\n" in text


def test_the_chart_is_a_png_and_a_failed_write_leaves_neither_output(comparison, runs, tmp_path, monkeypatch):
    assert compare.png(comparison)[:8] == PNG
    out = tmp_path / "charts"
    fsync = atomic.os.fsync

    def full_disk(fd):
        if ".again.png." in os.readlink(f"/proc/self/fd/{fd}"):  # the chart's temporary file
            raise OSError(28, "No space left on device")
        return fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    args = [str(runs[0]), str(runs[1]), "--json", str(out / "again.json"), "--png", str(out / "again.png")]
    with pytest.raises(OSError, match=r"No space left on device: '.*again.png'"):
        compare.main(args, io.StringIO())
    assert list(out.iterdir()) == []  # the JSON, staged first, is not left behind


def test_a_chart_needs_a_model_in_both_runs():
    only = compare.compare(RunResults(models={}), _after())
    with pytest.raises(SegcheckError, match="no model is in both"):
        compare.png(only)


def test_main_prints_the_report_and_writes_png_and_json(runs, tmp_path):
    out = io.StringIO()
    png, doc = tmp_path / "out" / "compare.png", tmp_path / "out" / "compare.json"
    assert compare.main([str(runs[0]), str(runs[1]), "--png", str(png), "--json", str(doc)], out) == 1  # AFTER fails a check
    text = out.getvalue()
    assert f"{runs[1]} fails 1 checks: fcn_resnet101_voc int8-accuracy (FAIL)" in text
    assert text.startswith(f"# segcheck compare: {runs[0]} -> {runs[1]}\n")
    assert f"json: {doc}\n" in text and f"chart: {png}\n" in text
    assert png.read_bytes()[:8] == PNG
    written = json.loads(doc.read_text())
    assert written["changed"][:2] == ["mxnet", "isa"] and written["only_after"] == ["deeplab_resnet101_voc"]
    fcn = written["models"][0]
    assert fcn["name"] == "fcn_resnet101_voc" and fcn["figures"]["int8_miou"]["delta"] == pytest.approx(-1.9)
    assert fcn["layers"][0]["name"] == "conv1" and fcn["speedup"]["after"] == pytest.approx(2.0)


def test_a_missing_or_garbage_file_is_an_error_naming_it(runs, tmp_path):
    with pytest.raises(SegcheckError, match="none.json: no such results file; check the path"):
        compare.main([str(tmp_path / "none.json"), str(runs[1])], io.StringIO())
    (tmp_path / "garbage.json").write_text("not json {")
    with pytest.raises(SegcheckError, match="garbage.json: not a segcheck results file"):
        compare.main([str(runs[0]), str(tmp_path / "garbage.json")], io.StringIO())


@pytest.mark.parametrize("status, strict, code", [(PASS, False, 0), (CHANGED, False, 0), (CHANGED, True, 1), (REGRESSED, False, 1)])
def test_the_exit_code_says_whether_the_after_run_failed(tmp_path, status, strict, code):
    """compare exits 1 where the run after the change failed a check: REGRESSED always, CHANGED where that run was
    strict about changes."""
    before, after = _before(), _after()
    after.check("fcn_resnet101_voc", "int8-accuracy", Check(status, "judged"))
    after.strict_changes = strict
    paths = [report.save(run, tmp_path / f"{name}.json") for name, run in (("before", before), ("after", after))]
    assert compare.main([str(p) for p in paths], io.StringIO()) == code

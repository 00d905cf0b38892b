"""The noise table (segcheck noise): spreads per tier from runs that differ from a reference in one thing each, the
tolerances derived from them, each layer's own band, and what `--write` puts into the baseline file."""

import io
import json
import re
from pathlib import Path

import pytest

from segcheck.config import tolerances
from segcheck.errors import SegcheckError
from segcheck.gate import baselines, noise as layer_noise
from segcheck.results import noise, report
from segcheck.results.records import Figures, RunResults

ROOT = Path(__file__).resolve().parents[1]


def _run(int8_miou, agreement, sqnr, lowest=20.0, hi=4.0, drop=0.2):
    """fcn's results: INT8 mIoU, per-image agreement, per-image SQNR of layers a (feeding b) and b, a range."""
    results = RunResults(tier="synthetic", convention="present",
                         environment={"mxnet": "1.9.1", "isa": "avx512_vnni", "cpu": "AMD EPYC", "threads": 2})
    m = results.model("fcn_resnet101_voc")
    m.fp32 = Figures(pixacc=92.0, miou=int8_miou + drop, iou=[90.0, 50.0], matrix=[[5000, 0], [0, 5000]])
    m.int8 = Figures(pixacc=91.9, miou=int8_miou, iou=[90.0, 50.0 - drop], agreement=agreement, output_sqnr=[20.0, 20.0])
    m.int8_key, m.tolerances = "naive/auto/2x16/train", {"class_min_pixels": 1000}
    m.layers = [{"name": "a", "sqnr_db": lowest + 10, "per_image": sqnr[0], "signal": [1.0, 1.0], "upstream": []},
                {"name": "b", "sqnr_db": lowest, "per_image": sqnr[1], "signal": [1.0, 1.0], "upstream": ["a"]}]
    m.ranges = {"a": {"range": [0.0, hi]}}
    return results


REFERENCE = _run(60.0, [99.0, 98.0], ([30.0, 31.0], [20.0, 21.0]))


def test_spreads_are_the_largest_deviation_per_tier_and_layers_are_charged_their_own_change():
    runs = {"exact": [("rerun", _run(60.0, [99.0, 98.0], ([30.0, 31.0], [20.0, 21.0])))],
            "recipe": [("start-32", _run(60.4, [98.8, 97.9], ([28.0, 29.0], [18.0, 19.0]), hi=4.4)),
                       ("start-64", _run(59.8, [99.1, 98.1], ([30.0, 31.0], [19.0, 20.0]), lowest=19.0, drop=0.5))]}
    table = noise.measure(REFERENCE, runs)
    assert table.spread["exact"] == {"fp32_pixacc_points": 0.0, "fp32_miou_points": 0.0, "int8_pixacc_points": 0.0,
                                     "int8_miou_points": 0.0, "agreement_points": 0.0, "output_sqnr_db": 0.0,
                                     "sqnr_drop_db": 0.0, "lowest_sqnr_db": 0.0, "range_rtol": 0.0, "class_iou_points": 0.0}
    recipe = table.spread["recipe"]
    assert recipe["int8_miou_points"] == pytest.approx(0.4) and recipe["agreement_points"] == pytest.approx(0.15)
    # the worst layer, b, fell 2 dB in start-32 on the images both runs measured
    assert recipe["range_rtol"] == pytest.approx(0.1) and recipe["lowest_sqnr_db"] == pytest.approx(2.0)
    # start-32: a fell 2 dB and b with it (own 0); start-64: b fell 1 dB by itself
    assert table.layers["fcn_resnet101_voc"]["recipe"] == {"a": 2.0, "b": 1.0} and recipe["sqnr_drop_db"] == pytest.approx(2.0)
    assert table.within["int8_drop_miou_points"] == pytest.approx(0.5) and table.within["lowest_sqnr_db"] == 19.0
    derived = noise.tolerances(table, 2.0)
    assert derived.tiers["recipe"]["int8_miou_points"] == tolerances.Tolerance(0.8, 0.4, 2.0)
    assert derived.tiers["exact"]["agreement_points"].value == tolerances.COMPARED["agreement_points"]  # the resolution
    assert not derived.tiers["isa"]["agreement_points"].measured  # no run: unmeasured, saying so
    assert derived.within_run["int8_drop_miou_points"] == tolerances.Tolerance(1.0, 0.5, 2.0)
    assert derived.within_run["sqnr_floor_db"] == tolerances.Tolerance(15.0, 2.0, 2.0, lowest=19.0)
    text = noise.markdown(table, derived)
    assert "recipe | recalibrations on other images of the same distribution | start-32, start-64" in text
    assert "int8_miou_points | 0 -> 0.0001 | - | - | 0.4 -> 0.8" in text and "AMD EPYC, 2 threads)" in text


def test_a_layer_is_judged_at_its_own_band_combined_across_tiers(tmp_path):
    table = tolerances.unmeasured().tiers
    measured = tolerances.ToleranceTable({**table, **{t: {k: tolerances.derived(k, 0.5, 2.0) for k in tolerances.COMPARED}
                                                      for t in ("exact", "isa", "recipe")}}, tolerances.unmeasured().within_run)
    spreads = {"m": {"exact": {"a": 0.0, "b": 0.0}, "isa": {"a": 0.3, "b": 0.1}, "recipe": {"a": 0.4, "b": 2.0}}}
    layer_noise.save(tmp_path / "baselines.json", layer_noise.recorded(tmp_path / "baselines.json", "synthetic", spreads))
    loaded = layer_noise.load(tmp_path / "baselines.json", "synthetic")
    assert loaded.layer_bands("m", ("recipe",), measured) == {"a": pytest.approx(0.8), "b": pytest.approx(4.0)}
    assert loaded.layer_bands("m", ("isa", "recipe"), measured)["a"] == pytest.approx(2 * 0.5)
    assert loaded.layer_bands("m", (), measured) == {"a": tolerances.COMPARED["sqnr_drop_db"], "b": tolerances.COMPARED["sqnr_drop_db"]}
    assert loaded.layer_bands("m", ("version",), measured) == {}  # version unmeasured: the tier's scalar band
    assert loaded.layer_bands("other", ("recipe",), measured) == {}
    assert layer_noise.load(tmp_path / "none.json", "synthetic").spreads == {}


def test_write_puts_the_derived_tolerances_with_their_provenance_into_the_baseline_file(tmp_path):
    path = tmp_path / "baselines.json"
    path.write_text((ROOT / "baselines.json").read_text())
    for name, run in (("reference", REFERENCE), ("start-32", _run(60.4, [98.8, 97.9], ([28.0, 29.0], [18.0, 19.0])))):
        report.save(run, tmp_path / f"{name}.json")
    out = io.StringIO()
    assert noise.main([str(tmp_path / "reference.json"), "--recipe", str(tmp_path / "start-32.json"), "--write", str(path),
                       "--md", str(tmp_path / "noise.md")], out) == 0
    tier = baselines.load(path).tier("synthetic")
    assert tier.tolerances.tiers["recipe"]["int8_miou_points"] == tolerances.Tolerance(0.8, 0.4, 2.0)
    assert json.loads(path.read_text())["tiers"]["synthetic"]["tolerances"]["recipe"]["int8_miou_points"] == {
        "value": 0.8, "spread": 0.4, "factor": 2.0}
    assert layer_noise.load(path, "synthetic").spreads["fcn_resnet101_voc"]["recipe"] == {"a": 2.0, "b": 0.0}
    assert (tmp_path / "noise.md").read_text().startswith("# Noise table: fcn_resnet101_voc")
    with pytest.raises(SystemExit):
        noise.main([str(tmp_path / "reference.json")], io.StringIO())  # no tier's runs: a usage error
    layers_file = layer_noise.path_for(path)
    before = path.read_text()
    layers_file.write_text('{"schema": 1, "tiers": ')  # cut short: one line naming it, and neither file written
    with pytest.raises(SegcheckError, match=rf"^{layers_file}: cannot read the per-layer noise .*; restore it from git, or delete it"):
        noise.main([str(tmp_path / "reference.json"), "--recipe", str(tmp_path / "start-32.json"), "--write", str(path)],
                   io.StringIO())
    assert path.read_text() == before and layers_file.read_text() == '{"schema": 1, "tiers": '


def test_write_refuses_runs_that_measure_nothing_and_outputs_over_its_inputs(tmp_path, capsys):
    """Each refusal is one error naming the run or the option, and neither baseline file changes; a later write of one
    variation tier keeps the per-layer spreads of the others, as it keeps their tolerances."""
    path = tmp_path / "baselines.json"
    path.write_text((ROOT / "baselines.json").read_text())
    empty = RunResults(tier="synthetic", convention="present")
    real = _run(60.4, [98.8, 97.9], ([28.0, 29.0], [18.0, 19.0]))
    real.tier = "real"
    for name, run in (("reference", REFERENCE), ("start-32", _run(60.4, [98.8, 97.9], ([28.0, 29.0], [18.0, 19.0]))),
                      ("empty", empty), ("real", real)):
        report.save(run, tmp_path / f"{name}.json")
    ref, start = str(tmp_path / "reference.json"), str(tmp_path / "start-32.json")
    assert noise.main([ref, "--recipe", start, "--write", str(path)], io.StringIO()) == 0
    before = {p.name: p.read_text() for p in (path, layer_noise.path_for(path))}
    for argv, message in (
            (["--exact", str(tmp_path / "empty.json")], "holds none of the reference's models"),
            (["--exact", ref], "is the reference itself"),
            (["--exact", str(tmp_path / "real.json")], "a real run under the present convention, the reference a synthetic"),
            (["--exact", start, "--json", str(path)], f"--json {path} is the input {path}, which it would overwrite"),
            (["--exact", start, "--md", ref], f"--md {ref} is the input {ref}"),
            # one run counted twice, a label twice, an empty label (before: each measured, or 'not measured')
            (["--exact", start, f"a={start}"], f"--exact {start} is also given as --exact {start}: one run counted twice"),
            (["--exact", start, "--isa", start], f"--isa {start} is also given as --exact {start}"),
            (["--exact", start, "--exact", start], f"--exact {start} is also given as --exact {start}: one run counted twice"),
            (["--exact", f"x={start}", f"x={ref}"], "--exact: the label 'x' is given twice"),
            (["--exact", f"={start}"], f"'={start}': no label before '='")):
        with pytest.raises(SegcheckError, match=re.escape(message)):
            noise.main([ref, *argv, "--write", str(path)], io.StringIO())
        assert {p.name: p.read_text() for p in (path, layer_noise.path_for(path))} == before
    with pytest.raises(SystemExit):  # before: "an older schema ... migrate it", advice that failed when followed
        noise.main([ref, "--exact", start, "--write", str(layer_noise.path_for(path))], io.StringIO())
    assert "a per-layer noise file, not a baseline file; name the baseline file" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in (path, layer_noise.path_for(path))} == before
    twin = tmp_path / "other" / "start-32.json"  # another cache's file of the same name: labelled by its path
    twin.parent.mkdir()
    twin.write_text(Path(start).read_text())
    both = io.StringIO()
    assert noise.main([ref, "--exact", start, "--exact", str(twin)], both) == 0  # the option twice: both runs count
    assert f"{start}, {twin}" in both.getvalue(), both.getvalue()
    odd = tmp_path / "ci=7.json"  # a file whose name holds '=' is a file, not LABEL=RESULTS
    odd.write_text(Path(start).read_text())
    assert noise.main([ref, "--exact", str(odd)], io.StringIO()) == 0
    assert noise.main([ref, "--exact", start, "--write", str(path)], io.StringIO()) == 0
    kept = layer_noise.load(path, "synthetic").spreads["fcn_resnet101_voc"]
    assert set(kept) == {"exact", "recipe"} and kept["recipe"] == {"a": 2.0, "b": 0.0}


"""The baseline table and its strict loader (segcheck.baselines)."""

import copy
import io
import json
import re
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcheck.cli import migrate as migrate_command
from segcheck.config import tolerances
from segcheck.gate import baselines
from segcheck.gate.baselines import BaselineError, Row
from segcheck.gate.checks import PASS, SKIP, Check
from segcheck.results import report
from segcheck.results.records import Figures, ModelResult, RunResults

REPO_BASELINES = Path(__file__).resolve().parents[1] / "baselines.json"

# The seed's Performance table, transcribed: fp32 / s8 latency (ms), fp32 pixAcc %, fp32 mIoU, s8 pixAcc %, s8 mIoU.
SEED_TABLE = {
    "fcn_resnet101_voc": (182.91, 37.97, 97.97, 90.77, 98.00, 91.02),
    "fcn_resnet101_coco": (192.65, 43.23, 91.28, 62.40, 90.96, 61.73),
    "psp_resnet101_voc": (252.17, 94.06, 98.46, 93.29, 98.45, 93.26),
    "psp_resnet101_coco": (253.49, 94.32, 91.82, 69.48, 91.88, 69.92),
    "deeplab_resnet101_voc": (239.82, 74.91, 98.36, 92.84, 98.34, 92.76),
    "deeplab_resnet101_coco": (241.02, 73.74, 91.86, 69.82, 91.98, 70.75),
}


@pytest.fixture
def doc():
    """The repository's table with no synthetic rows: a clean start for recording tests."""
    parsed = json.loads(REPO_BASELINES.read_text())
    parsed["tiers"]["synthetic"]["entries"] = []
    return parsed


def write(tmp_path, doc_or_text):
    path = tmp_path / "baselines.json"
    path.write_text(doc_or_text if isinstance(doc_or_text, str) else baselines.dumps(doc_or_text))
    return path


def test_real_tier_holds_the_seed_table_exactly():
    real = baselines.load(REPO_BASELINES).tier("real")
    assert real.metric_convention == "gluoncv"
    (entry,) = real.entries
    assert entry.setting == {"mode": "val", "crop_size": 480, "batch_size": 1, "num_images": "all"}
    assert {name: tuple(getattr(row, k) for k in baselines.ROW_KEYS) for name, row in entry.rows.items()} == SEED_TABLE
    assert not any(row.xfail_reason for row in entry.rows.values())


def test_lookup_ignores_environment_on_the_real_tier():
    table = baselines.load(REPO_BASELINES)
    setting = {"mode": "val", "crop_size": 480, "batch_size": 1, "num_images": "all"}
    found = table.lookup("real", "psp_resnet101_coco", {"isa": "avx2"}, setting, baselines.SEED_RECIPE)
    assert found.row == Row(253.49, 94.32, 91.82, 69.48, 91.88, 69.92) and found.reference.recipe is None
    assert found.row.accuracy("int8") == (91.88, 69.92)
    assert found.reference.difference == "published" and "against the published row" in found.reference.describe()
    other = table.lookup("real", "psp_resnet101_coco", {}, dict(setting, num_images=8))
    assert other.row is None and "num_images=8" in other.reason and "num_images=all" in other.reason


@pytest.mark.parametrize(
    "mutate, key, problem",
    [
        (lambda d: d.pop("schema"), "schema", "missing"),
        (lambda d: d.update(schema=3), "schema", "expected 2"),
        (lambda d: d.update(extra=1), "extra", "unknown key"),
        (lambda d: d["tiers"].update(nightly={}), "tiers.nightly", "unknown key"),
        (lambda d: d["tiers"]["real"]["tolerances"].pop("recipe"), "tiers.real.tolerances.recipe", "missing"),
        (lambda d: d["tiers"]["real"]["tolerances"]["exact"]["int8_miou_points"].update(value="0.3"), "tiers.real.tolerances.exact.int8_miou_points.value", "expected a number, got '0.3'"),
        (lambda d: d["tiers"]["real"]["tolerances"]["exact"]["int8_miou_points"].update(value=-1), "tiers.real.tolerances.exact.int8_miou_points.value", "outside"),
        (lambda d: d["tiers"]["real"]["tolerances"]["exact"]["int8_miou_points"].update(unmeasured=""), "tiers.real.tolerances.exact.int8_miou_points.unmeasured", "empty: say why"),
        (lambda d: d["tiers"]["real"]["tolerances"]["exact"]["int8_miou_points"].update(spread=0.1), "tiers.real.tolerances.exact.int8_miou_points", "both unmeasured and spread"),
        (lambda d: d["tiers"]["real"]["entries"][0].pop("int8"), "tiers.real.entries[0].int8", "missing"),
        (lambda d: d["tiers"]["real"].update(metric_convention="mean"), "tiers.real.metric_convention", "'mean' is not one of"),
        (lambda d: d["tiers"]["real"].update(match_environment="no"), "tiers.real.match_environment", "expected true or false"),
        (lambda d: d["tiers"]["real"]["min_speedup"]["avx512_vnni"].update(fcn="fast"), "tiers.real.min_speedup.avx512_vnni.fcn", "expected a number, got 'fast'"),
        (lambda d: d["tiers"]["real"]["entries"][0]["rows"]["fcn_resnet101_voc"].pop("s8_miou"), "tiers.real.entries[0].rows.fcn_resnet101_voc.s8_miou", "missing"),
        (lambda d: d["tiers"]["real"]["entries"][0]["rows"]["fcn_resnet101_voc"].update(fp32_miou=None), "tiers.real.entries[0].rows.fcn_resnet101_voc.fp32_miou", "expected a number, got None"),
        (lambda d: d["tiers"]["real"]["entries"][0]["rows"]["fcn_resnet101_voc"].update(fp32_pixacc=197.97), "tiers.real.entries[0].rows.fcn_resnet101_voc.fp32_pixacc", "outside [0.0, 100.0]"),
        (lambda d: d["tiers"]["real"]["entries"][0]["rows"].update({"my model": d["tiers"]["real"]["entries"][0]["rows"]["fcn_resnet101_voc"]}), "tiers.real.entries[0].rows.my model", "must start with a letter or digit and hold only"),
        (lambda d: d["tiers"]["real"]["entries"][0]["setting"].update(crop_size=[480]), "tiers.real.entries[0].setting.crop_size", "expected a string or number"),
        (lambda d: d["tiers"]["real"]["entries"].append(copy.deepcopy(d["tiers"]["real"]["entries"][0])), "tiers.real.entries", "the same model appears twice"),
    ],
    ids=["no-schema", "wrong-schema", "unknown-top-key", "unknown-tier", "missing-tolerance-tier", "string-tolerance",
         "negative-tolerance", "unexplained-unmeasured", "unmeasured-and-spread", "no-int8-key", "unknown-convention", "non-bool", "speedup-not-a-number", "missing-row-key", "null-value",
         "pixacc-over-100", "bad-model-name", "list-setting", "duplicate-row"],
)
def test_malformed_file_names_file_and_key(tmp_path, doc, mutate, key, problem):
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(BaselineError) as err:
        baselines.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: key '{key}': ")
    assert problem in message
    assert "\n" not in message


def test_a_key_with_a_newline_is_named_on_one_line(tmp_path, doc):
    doc["tiers"]["real"]["entries"][0]["rows"]["\n"] = None
    path = write(tmp_path, doc)
    with pytest.raises(BaselineError, match=r"key 'tiers\.real\.entries\[0\]\.rows\.\\n': model name '\\n' must start") as err:
        baselines.load(path)
    assert "\n" not in str(err.value)


def test_invalid_json_names_file_line_and_column(tmp_path):
    path = write(tmp_path, '{"schema": 1,\n  "tiers": {,}}')
    with pytest.raises(BaselineError, match=rf"^{path}: invalid JSON at line 2 column 13"):
        baselines.load(path)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(BaselineError, match=r"baseline file not found; pass --baselines or restore it from git"):
        baselines.load(tmp_path / "nope.json")


ENV = {"mxnet": "1.9.1", "onednn": "2.4.4", "isa": "avx2"}
SETTING = {"crop_size": 64, "num_images": 16, "seed": 0}
RECIPE = "naive/auto/2x16/train"


def test_record_adds_rows_atomically_and_shows_the_diff(tmp_path, doc):
    path = write(tmp_path, doc)
    row = Row(10.0, 4.0, 90.0, 60.0, 89.5, 59.0)
    diff = baselines.record(path, "synthetic", ENV, [(SETTING, RECIPE, {"fcn_resnet101_voc": row})])
    assert '+        "rows": {"fcn_resnet101_voc": {"fp32_latency_ms": 10.0' not in diff
    assert '"fcn_resnet101_voc": {"fp32_latency_ms": 10.0, "s8_latency_ms": 4.0, "fp32_pixacc": 90.0' in diff
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert removed == ['-      "entries": []']
    table = baselines.load(path)
    assert table.lookup("synthetic", "fcn_resnet101_voc", ENV, SETTING, RECIPE).row == row
    assert [p.name for p in tmp_path.iterdir()] == ["baselines.json"]
    assert baselines.record(path, "synthetic", ENV, [(SETTING, RECIPE, {"fcn_resnet101_voc": row})]) == ""


def test_a_row_of_another_environment_is_compared_at_the_tier_for_what_differs(tmp_path, doc):
    """The exact environment's row wins; else the nearest: another ISA before another version, the closest release,
    the closest ISA (the higher of two equally close); the tier's tolerances are those of what differs."""
    path = write(tmp_path, doc)
    vnni, avx2 = dict(ENV, isa="avx512_vnni"), ENV
    rows = {"avx2": Row(10.0, 4.0, 90.0, 60.0, 89.5, 59.0), "vnni": Row(10.0, 2.0, 90.0, 60.0, 89.9, 59.9),
            "old": Row(10.0, 3.0, 91.0, 61.0, 90.0, 60.0)}
    baselines.record(path, "synthetic", avx2, [(SETTING, RECIPE, {"fcn_resnet101_voc": rows["avx2"]})])
    baselines.record(path, "synthetic", vnni, [(SETTING, RECIPE, {"fcn_resnet101_voc": rows["vnni"]})])
    baselines.record(path, "synthetic", dict(vnni, mxnet="1.8.0.post0", onednn="1.7.0"), [(SETTING, RECIPE, {"fcn_resnet101_voc": rows["old"]})])
    table = baselines.load(path)

    def nearest(env):
        found = table.lookup("synthetic", "fcn_resnet101_voc", env, SETTING, RECIPE)
        return found.row, found.reference.difference, found.reference.environment

    assert nearest(vnni) == (rows["vnni"], "exact", vnni)
    assert nearest(dict(vnni, isa="amx")) == (rows["vnni"], "isa", vnni)
    assert nearest(dict(vnni, isa="avx512")) == (rows["vnni"], "isa", vnni)  # avx512 sits between avx2 and VNNI: the higher
    assert nearest(dict(vnni, mxnet="1.9.0")) == (rows["vnni"], "version", vnni)  # 1.9.0 is nearer 1.9.1 than 1.8.0
    assert nearest(dict(vnni, mxnet="1.7.0.post2", onednn="1.6.4")) == (rows["old"], "version", dict(vnni, mxnet="1.8.0.post0", onednn="1.7.0"))
    assert nearest(dict(avx2, mxnet="1.8.0.post0", onednn="1.7.0")) == (rows["old"], "isa", dict(vnni, mxnet="1.8.0.post0", onednn="1.7.0"))
    found = table.lookup("synthetic", "fcn_resnet101_voc", dict(vnni, isa="amx"), SETTING, RECIPE)
    assert "row recorded in mxnet 1.9.1, onednn 2.4.4, isa avx512_vnni (tolerance tier: isa)" in found.reference.describe()
    tier = table.tier("synthetic")
    exact, across = tier.tolerances_for(None, {}), tier.tolerances_for(found.reference, {})
    assert (exact.tier, across.tier) == ("exact", "isa")
    assert across.miou_points == tier.tolerances.tiers["isa"]["int8_miou_points"].value
    assert across.int8_drop_miou_points == exact.int8_drop_miou_points  # measured within the run: never widened
    own = tier.tolerances_for(found.reference, {"miou_points": 9.0})
    assert own.miou_points == 9.0 and own.range_rtol == across.range_rtol
    missing = table.lookup("synthetic", "psp_resnet101_voc", ENV, SETTING, RECIPE)
    assert missing.row is None and missing.reference is None
    assert "no synthetic-tier baseline row for psp_resnet101_voc" in missing.reason and "--update-baselines" in missing.reason


def test_fp32_is_compared_whatever_the_recipe_and_int8_with_the_recipe_it_replaces(tmp_path, doc):
    """FP32 figures do not depend on the INT8 recipe: a new recipe compares FP32 exactly. INT8 under a recipe with no row
    compares with the nearest recorded one (same environment first, then the recipe nearest in its parts), at the
    recipe tier, combined with the environment's where that differs too."""
    path = write(tmp_path, doc)
    vnni = dict(ENV, isa="avx512_vnni")
    recorded = Row(10.0, 2.0, 90.0, 60.0, 89.9, 59.9)
    baselines.record(path, "synthetic", vnni, [(SETTING, RECIPE, {"fcn_resnet101_voc": recorded}),
                                               (SETTING, "entropy/int8/5x32/val", {"fcn_resnet101_voc": Row(10.0, 2.0, 90.0, 60.0, 80.0, 50.0)})])
    table = baselines.load(path)
    fp32 = table.lookup("synthetic", "fcn_resnet101_voc", vnni, SETTING)
    assert fp32.reference.compared == "exact"
    new = table.lookup("synthetic", "fcn_resnet101_voc", vnni, SETTING, "naive/auto/1x16/train")
    assert new.row == recorded and new.reference.recipe == RECIPE and new.reference.compared == "recipe"
    assert f"INT8 under this run's new recipe against the recorded one, {RECIPE}" in new.reference.describe()
    both = table.lookup("synthetic", "fcn_resnet101_voc", avx2 := dict(vnni, isa="avx2"), SETTING, "naive/auto/1x16/train")
    assert both.reference.compared == "isa+recipe" and both.reference.differs == ("isa", "recipe")
    tier = table.tier("synthetic")
    combined = tier.tolerances_for(both.reference, {})
    assert combined.tier == "isa+recipe" and combined.miou_points == tolerances.combine(
        "int8_miou_points", [tier.tolerances.tiers["isa"]["int8_miou_points"], tier.tolerances.tiers["recipe"]["int8_miou_points"]])
    assert combined.miou_points >= max(tier.tolerances.tiers[t]["int8_miou_points"].value for t in ("isa", "recipe"))
    assert baselines.recipe_distance(RECIPE, "naive/auto/1x16/train") == 1
    assert table.lookup("synthetic", "fcn_resnet101_voc", avx2, SETTING, RECIPE).reference.compared == "isa"


def test_tiers_combine_their_spreads_in_quadrature_and_a_measured_value_must_be_factor_times_spread(tmp_path, doc):
    """Where two things differ, the spreads of their tiers add in quadrature (they are independent), times the factor;
    a measured tolerance whose value is not factor x spread is one error naming the key."""
    measured = {t: {k: tolerances.derived(k, spread, 2.0).to_dict() for k in tolerances.COMPARED}
                for t, spread in (("exact", 0.0), ("isa", 0.3), ("version", 0.4), ("recipe", 0.4))}
    doc["tiers"]["synthetic"]["tolerances"].update(measured)
    table = baselines.parse(baselines.dumps(doc), tmp_path / "b.json").tier("synthetic").tolerances
    assert table.resolve(("isa",)).miou_points == pytest.approx(0.6)
    assert table.resolve(("isa", "recipe")).miou_points == pytest.approx(2.0 * 0.5)
    assert table.resolve(()).miou_points == tolerances.COMPARED["int8_miou_points"]  # spread 0: the resolution
    assert table.resolve(("recipe",), "fp32", {"harm_miou_points": 0.25}).harm_miou_points == 0.25
    doc["tiers"]["synthetic"]["tolerances"]["isa"]["agreement_points"]["value"] = 0.9
    with pytest.raises(BaselineError, match=r"key 'tiers.synthetic.tolerances.isa.agreement_points': value 0.9 is not what "
                                            r"its spread and factor give \(0.6 \(2 x spread 0.3\)\)"):
        baselines.parse(baselines.dumps(doc), tmp_path / "b.json")


def test_a_schema_1_file_says_how_to_migrate_and_migrate_keys_int8_apart(tmp_path):
    """Schema 1 kept the calibration label in the setting: reading it names the command; `migrate` moves the label to
    the entry's INT8 key (the seed's recipe for the published rows), keeps the hand-set tolerances as unmeasured, and
    rewrites the golden records beside it, atomically."""
    old = json.loads((Path(__file__).parent / "data" / "baselines-schema1.json").read_text())
    path = write(tmp_path, json.dumps(old))
    golden_path = tmp_path / "baselines.golden.json"
    golden_path.write_text(json.dumps({"schema": 1, "tiers": {"synthetic": [
        {"environment": ENV, "setting": {**SETTING, "calibration": RECIPE}, "models": {"fcn_resnet101_voc": {"ranges": {}}}}]}}))
    with pytest.raises(BaselineError, match=rf"{path}: key 'schema': 1 is an older schema .* `segcheck migrate {path}`"):
        baselines.load(path)
    out = io.StringIO()
    assert migrate_command.main([str(path)], out) == 0
    diff = out.getvalue()
    assert '+  "schema": 2,' in diff and f'"int8": "{baselines.SEED_RECIPE}"' in diff
    table = baselines.load(path)
    entry = table.tier("synthetic").entries[0]
    assert entry.int8 == "naive/auto/2x16/train" and "calibration" not in entry.setting
    assert table.tier("synthetic").tolerances.tiers["version"]["int8_miou_points"].value == 2.0
    real = table.tier("real").tolerances.tiers  # it held no cross_environment: schema 1's defaults applied, and still do
    assert (real["version"]["range_rtol"].value, real["version"]["sqnr_drop_db"].value, real["isa"]["range_rtol"].value) == (0.1, 6.0, 1e-3)
    assert "schema 1" in table.tier("real").tolerances.tiers["exact"]["int8_miou_points"].unmeasured
    assert f"golden records migrated: {golden_path}" in diff  # rewritten by the same command
    assert json.loads(golden_path.read_text())["tiers"]["synthetic"][0]["int8"] == RECIPE
    again = io.StringIO()
    assert migrate_command.main([str(path)], again) == 0
    assert again.getvalue() == f"{path}: already schema {baselines.SCHEMA}\n"  # neither file migrated again


def test_migrate_of_a_missing_file_says_to_check_the_path(tmp_path):
    """Before: "cannot read it to migrate ([Errno 2] ...); restore it from git", for a path that was only mistyped."""
    with pytest.raises(BaselineError, match=rf"^{tmp_path / 'nope.json'}: no such file to migrate; check the path$"):
        migrate_command.main([str(tmp_path / "nope.json")], io.StringIO())


@pytest.mark.parametrize("golden_text", ['{"schema": 1, "tiers": ', '{"schema": 1, "tiers": {"synthetic": [{"models": {}}]}}'],
                         ids=["cut-short", "entry-without-setting"])
def test_migrate_writes_neither_file_when_one_cannot_be_migrated(tmp_path, golden_text):
    """Both files are migrated in memory first: a golden file that cannot be leaves the baseline file as it was."""
    old = (Path(__file__).parent / "data" / "baselines-schema1.json").read_text()
    path = write(tmp_path, old)
    golden_path = tmp_path / "baselines.golden.json"
    golden_path.write_text(golden_text)
    with pytest.raises(BaselineError, match=rf"^{golden_path}: (cannot read it|not a schema-1 golden file)"):
        migrate_command.main([str(path)], io.StringIO())
    assert path.read_text() == old and golden_path.read_text() == golden_text


def test_an_xfail_reason_and_the_recording_environment_are_kept_and_checked(tmp_path, doc):
    path = write(tmp_path, doc)
    row = Row(10.0, 4.0, 90.0, 60.0, 89.5, 59.0)
    baselines.record(path, "synthetic", ENV, [(SETTING, RECIPE, {"fcn_resnet101_voc": row})], provenance={"cpu": "AMD EPYC", "cap": ""})
    text = json.loads(path.read_text())
    entry = text["tiers"]["synthetic"]["entries"][-1]
    assert entry["provenance"] == {"cpu": "AMD EPYC", "cap": ""}
    entry["rows"]["fcn_resnet101_voc"]["xfail_reason"] = "AVX2 saturates u8 x s8 sums in int16 (OpenVINO's note)"
    path.write_text(json.dumps(text))
    baselines.record(path, "synthetic", ENV, [(SETTING, RECIPE, {"fcn_resnet101_voc": Row(11.0, 4.0, 90.1, 60.0, 89.5, 59.0)})])
    kept = baselines.load(path).lookup("synthetic", "fcn_resnet101_voc", ENV, SETTING, RECIPE).row
    assert kept.fp32_latency_ms == 11.0 and kept.xfail_reason.startswith("AVX2 saturates")
    text = json.loads(path.read_text())
    text["tiers"]["synthetic"]["entries"][-1]["rows"]["fcn_resnet101_voc"]["xfail_reason"] = " "
    path.write_text(json.dumps(text))
    with pytest.raises(BaselineError, match=r"rows.fcn_resnet101_voc.xfail_reason': empty: say why"):
        baselines.load(path)


def test_record_refuses_to_touch_a_malformed_file(tmp_path):
    path = write(tmp_path, '{"schema": 2, "tiers": ')
    with pytest.raises(BaselineError, match="invalid JSON"):
        baselines.record(path, "synthetic", ENV, [(SETTING, RECIPE, {})])
    assert path.read_text() == '{"schema": 2, "tiers": '


def _paths(node, prefix=()):
    """Every (path, value) in a parsed JSON document."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=8), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


def _dotted(path: tuple) -> str:
    """A path into the JSON document as the loader's messages spell it: tiers.synthetic.entries[0].rows."""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


def test_fuzzed_baseline_files_load_or_fail_with_one_named_key(tmp_path):
    """Replace, delete or add one value anywhere in a valid file: the loader accepts it or names, in one line, the key
    changed, one that holds it or one inside the value put there. Both must happen: a loader that accepted everything, or nothing, fails here."""
    seen = {"accepted": 0, "rejected": 0}

    @settings(max_examples=150)
    @given(data=st.data())
    def one(data):
        doc = json.loads(REPO_BASELINES.read_text())
        path = data.draw(st.sampled_from([p for p, _ in _paths(doc) if p]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = data.draw(JUNK)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            added = data.draw(st.text(string.ascii_letters + "_", min_size=1, max_size=6))
            parent[added] = data.draw(JUNK)
            path = path[:-1] + (added,)
        file = tmp_path / "fuzzed.json"
        file.write_text(json.dumps(doc))
        try:
            baselines.load(file)
        except BaselineError as err:
            seen["rejected"] += 1
            message = str(err)
            assert message.startswith(f"{file}: ") and "\n" not in message
            named = re.search(r"key '([^']*)'", message)
            assert named, message
            dotted = _dotted(path)
            key = named.group(1)
            assert dotted.startswith(key) or key.startswith(dotted), f"changed {dotted!r}, but the message names {key!r}: {message}"
        else:
            seen["accepted"] += 1

    one()
    assert seen["accepted"] and seen["rejected"], seen


def test_arbitrary_text_is_never_a_crash(tmp_path):
    """Any text is a table or one error naming the file; both happen (valid JSON tables are drawn too)."""
    seen = {"accepted": 0, "rejected": 0}
    valid = REPO_BASELINES.read_text()

    @settings(max_examples=100)
    @given(text=st.one_of(st.text(max_size=200), st.just(valid), st.just(json.dumps({"format": 1}))))
    def one(text):
        file = tmp_path / "text.json"
        file.write_text(text)
        try:
            baselines.load(file)
        except BaselineError as err:
            seen["rejected"] += 1
            assert str(err).startswith(f"{file}: ") and "\n" not in str(err)
        else:
            seen["accepted"] += 1

    one()
    assert seen["accepted"] and seen["rejected"], seen


def test_record_keeps_the_files_permissions(tmp_path, doc):
    path = write(tmp_path, doc)
    path.chmod(0o640)
    baselines.record(path, "synthetic", ENV, [(SETTING, RECIPE, {"fcn_resnet101_voc": Row(10.0, 4.0, 90.0, 60.0, 89.5, 59.0)})])
    assert path.stat().st_mode & 0o777 == 0o640


def test_record_creates_a_missing_file_or_tier_from_the_template_and_never_writes_published_rows(tmp_path, doc):
    row = Row(10.0, 4.0, 90.0, 60.0, 89.5, 59.0)
    path = tmp_path / "new" / "baselines.json"
    assert baselines.load(path, missing_ok=True).tiers == {}
    with pytest.raises(BaselineError, match="key 'tiers.real' is missing"):
        baselines.record(path, "real", ENV, [(SETTING, RECIPE, {"my_fcn": row})])
    assert not path.exists()
    diff = baselines.record(path, "real", ENV, [(SETTING, RECIPE, {"my_fcn": row})], baselines.new_tier("gluoncv", "mine"))
    assert diff.startswith(f"--- {path}\n") and '"my_fcn": {"fp32_latency_ms": 10.0' in diff
    table = baselines.load(path)
    assert table.lookup("real", "my_fcn", ENV, SETTING, RECIPE).row == row and table.tier("real").metric_convention == "gluoncv"
    published = write(tmp_path, doc)
    with pytest.raises(BaselineError, match="tier 'real' holds published rows .* never overwrites"):
        baselines.record(published, "real", ENV, [(SETTING, RECIPE, {"fcn_resnet101_voc": row})])


def test_a_recording_tells_a_model_left_out_from_one_whose_cases_all_skipped():
    """A model that ran with a figure missing (its latency benchmarks deselected) cannot be recorded, which fails an
    --update-baselines run; one whose every check skipped (a peer without its environment) is set apart, with its skip
    reason; a whole model is a row."""
    def measured(latency):
        return Figures(pixacc=90.0, miou=80.0, latency_ms=latency)

    whole = ModelResult("a", fp32=measured(2.0), int8=measured(1.0), int8_key="naive/auto/2x16/train", setting={"crop_size": 64})
    partial = ModelResult("b", fp32=measured(None), int8=measured(None), int8_key="naive/auto/2x16/train",
                          checks={"fp32-accuracy": Check(PASS), "speedup": Check(SKIP, "deselected")})
    peer = ModelResult("a+openvino", checks={"peer-fp32": Check(SKIP, "no peer environment: segcheck peer install"),
                                             "peer-int8": Check(SKIP, "no peer environment: segcheck peer install")})
    rows = report.rows_to_record(RunResults(tier="synthetic", models={m.name: m for m in (whole, partial, peer)}))
    assert [sorted(named) for _, _, named in rows.groups] == [["a"]]
    assert list(rows.missing) == ["b"] and rows.missing["b"].startswith("fp32_latency_ms, s8_latency_ms not measured in this run")
    assert rows.skipped == {"a+openvino": "no peer environment: segcheck peer install"}

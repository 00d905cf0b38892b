"""The committed variant tables (docs/kill-tables/, written by `pytest -m mutants` with SEGCHECK_KILL_TABLES set, one per
environment and recipe change) are the catalogue's: every variant of tests/plugins/mutants.py in its class, no other,
each judged by the oracle, with enough of each class to measure a rate. Whether the rates meet their targets is what
the opt-in run asserts (tests/test_mutants.py::test_error_rates) and docs/verdicts.md reports: a table is committed as
measured."""

from pathlib import Path

import pytest

from segcheck.data import loaders, synthetic
from segcheck.results import kills

from mutants import MUTANTS, _other_images, synthetic_kind

TABLES = sorted((Path(__file__).resolve().parents[1] / "docs" / "kill-tables").glob("*.json"))


def test_a_table_is_committed_for_the_recording_environment():
    assert any(kills.load(p).environment.get("isa") == "avx512_vnni" and kills.load(p).environment.get("mxnet") == "1.9.1"
               and not kills.load(p).recipe for p in TABLES), f"no committed table for mxnet 1.9.1 on VNNI in {[p.name for p in TABLES]}"


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.stem)
def test_a_committed_table_matches_the_catalogue_and_its_claims(path):
    table = kills.load(path)
    assert [r.name for r in table.rows] == list(MUTANTS), "the table's variants are not the catalogue's: run it again"
    assert all(r.kind == MUTANTS[r.name].kind for r in table.rows)
    assert path.with_suffix(".md").read_text() == kills.markdown(table)
    c = table.counts()
    assert c["harmful"] >= 30 and c["near_threshold"] >= 10 and c["benign"] >= 10, c  # enough to measure a rate
    assert not any(r.unexplained for r in table.rows)
    assert all(r.oracle for r in table.rows if r.kind != "speed"), "a variant the oracle did not judge"
    assert {"mxnet", "onednn", "isa", "cpu"} <= set(table.environment) and table.date[:4].isdigit()
    single = [r for r in table.rows if MUTANTS[r.name].single_layer]
    assert single and all(r.layer for r in single)


VERDICTS = Path(__file__).resolve().parents[1] / "docs" / "verdicts.md"


def _summary_cells(table) -> str:
    """A table's rates and naming as docs/verdicts.md's summary row gives them, after its environment's label."""
    c, named = table.counts(), table.naming()
    (ranges, single), (layers, _) = named["int8-ranges"], named["int8-layers"]
    return (f"{kills.rate(c['harmful_caught'], c['harmful'])} | {c['harmful_caught_strict']} / {c['harmful']} "
            f"| {kills.rate(c['benign_failed'], c['benign'])} | {c['benign_changed']} / {c['benign']} "
            f"| {ranges} / {layers} of {single}")


def test_the_docs_summary_quotes_the_committed_tables():
    """docs/verdicts.md's summary table has one row per committed table, giving its rates and naming as measured: a
    table measured again, added or removed changes the docs with it. (Rows are matched by their figures, so two
    environments with the same figures may swap labels unseen.)"""
    text = VERDICTS.read_text().split("| environment (AMD EPYC) |", 1)[1].split("\n\n", 1)[0]
    rows = sorted(line.strip(" |").split(" | ", 1)[1] for line in text.splitlines()[2:])
    assert rows == sorted(_summary_cells(kills.load(p)) for p in TABLES), \
        "docs/verdicts.md's summary table does not give the committed tables' figures: write them in from docs/kill-tables/*.md"


def test_tables_are_saved_under_the_whole_environment_key_and_recipe(tmp_path):
    table = kills.load(TABLES[0])
    md, js = kills.save(table, tmp_path)
    stem = kills.file_stem(table.environment, table.recipe)
    assert (md.name, js.name) == (f"{stem}.md", f"{stem}.json") and stem.count("-") == (2 if not table.recipe else 4), stem
    assert kills.load(js) == table and md.read_text() == kills.markdown(table)
    assert kills.file_stem({"mxnet": "1.9.1", "onednn": "2.4.4", "isa": "avx512_vnni"}, "naive/auto/3x16/train") == \
        "1.9.1-2.4.4-avx512_vnni-recipe-naive_auto_3x16_train"


def _row(name, verdict, killed=False, changed=(), task=True, fall=0.0, drop=0.6):
    oracle = {"kind": verdict, "task": task and verdict == "harmful", "layer": not task, "miou_drop": drop,
              "agreement_drop": 0.0, "own_fall": fall, "fall_layer": ""} if verdict != "equivalent" else {"kind": verdict}
    kills_ = (kills.Kill("int8-accuracy", kills.ASSERTION, "AssertionError: regressed"),) if killed else ()
    return kills.MutantRow(name, "range scaled", kills_, verdict == "equivalent", changed=tuple(changed), oracle=oracle)


def test_the_error_rates_are_the_gates_outcomes_counted_by_the_oracles_classes():
    """Harmful caught and benign failed in the default mode, the strict column adding what was only reported CHANGED;
    grey and equivalent variants are not scored; near-threshold harm is counted apart."""
    rows = (_row("a", "harmful", killed=True), _row("b", "harmful", changed=("int8-ranges",)),
            _row("c", "harmful", killed=True, task=False, fall=8.0), _row("d", "harmful", killed=True, drop=5.0),
            _row("e", "benign"), _row("f", "benign", changed=("int8-digest",)), _row("g", "benign", killed=True),
            _row("h", "grey", killed=True), _row("i", "equivalent"),
            kills.MutantRow("slow", "speed", (kills.Kill("speedup", kills.ASSERTION, "slow"),)))
    table = kills.KillTable({"mxnet": "1.9.1", "threads": 2}, "2026-12-04", "m", "passed", rows)
    c = table.counts()
    assert (c["harmful"], c["harmful_caught"], c["harmful_caught_strict"]) == (4, 3, 4)
    assert (c["task_harmful"], c["task_caught"], c["layer_only_harmful"], c["layer_only_caught"]) == (3, 2, 1, 1)
    assert c["near_threshold"] == 3  # d's drop of 5 points is beyond twice the threshold
    assert (c["benign"], c["benign_failed"], c["benign_failed_strict"], c["benign_changed"]) == (3, 1, 2, 1)
    assert (c["grey"], c["equivalent"], c["speed"]) == (1, 1, [True])
    text = kills.markdown(table)
    assert "(oneDNN level ?, 2 threads)" in text
    assert "harmful caught | 3 / 4 (75 %) | 4 / 4 (100 %)" in text and "benign failed | 1 / 3 (33 %) | 2 / 3 (67 %)" in text


def test_the_other_images_variants_calibrate_on_the_training_images_they_name(segcheck):
    """benign-images-K and benign-Nx16 swap MXNet's calibration batches for the synthetic training split's images from
    K on, read as segcheck reads them: the opt-in catalogue is the only other run that reaches this code."""
    cache = segcheck.run.cache_dir

    class Batches:  # what quantize_net_v2 is handed: its batch shape is all the variant reads of it
        provide_data, provide_label = [type("Shape", (), {"shape": (16, 3, 64, 64)})()], None

    swapped = _other_images(cache, 48, 32, None, {"calib_data": Batches()}, {})
    train = loaders.open_split(synthetic_kind(), synthetic.ensure(cache, "pascal_voc", synthetic.SyntheticSpec()),
                               "train", 64, cache)
    expected = [x.asnumpy() for x, _, _ in loaders.batches(train, range(48, 80), 16)]
    assert swapped["num_calib_examples"] == 32 and len(swapped["calib_data"].batches) == 2
    assert all((got.asnumpy() == want).all() for got, want in zip(swapped["calib_data"].batches, expected))

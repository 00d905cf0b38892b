"""The committed kill tables (docs/kill-tables/, written by `pytest -m mutants` with SEGCHECK_KILL_TABLES set) are the
catalogue's: every mutant of tests/plugins/mutants.py in its class, no other, and the figures they claim hold."""

from pathlib import Path

import pytest

from segcheck.results import kills

from mutants import MUTANTS

TABLES = sorted((Path(__file__).resolve().parents[1] / "docs" / "kill-tables").glob("*.json"))


def test_a_kill_table_is_committed_for_the_recording_environment():
    assert any(kills.load(p).environment.get("isa") == "avx512_vnni" and kills.load(p).environment.get("mxnet") == "1.9.1"
               for p in TABLES), f"no committed kill table for mxnet 1.9.1 on VNNI in {[p.name for p in TABLES]}"


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.stem)
def test_a_committed_table_matches_the_catalogue_and_its_claims(path):
    table = kills.load(path)
    assert [r.name for r in table.rows] == list(MUTANTS), "the table's mutants are not the catalogue's: run it again"
    assert all(r.kind == MUTANTS[r.name].kind for r in table.rows)
    assert path.with_suffix(".md").read_text() == kills.markdown(table)
    counts = table.counts()
    assert counts["non_equivalent"] >= 50 and counts["killed"] >= 0.95 * counts["non_equivalent"], counts
    assert counts["speed"] == [True] and not any(r.unexplained for r in table.rows)
    assert {"mxnet", "onednn", "isa", "cpu"} <= set(table.environment) and table.date[:4].isdigit()
    single = [r for r in table.rows if MUTANTS[r.name].single_layer]
    assert single and all(r.layer for r in single) and all(r.kills for r in single), "a single-layer mutant survived"


def test_tables_are_saved_under_the_whole_environment_key(tmp_path):
    table = kills.load(TABLES[0])
    md, js = kills.save(table, tmp_path)
    stem = kills.file_stem(table.environment)
    assert (md.name, js.name) == (f"{stem}.md", f"{stem}.json") and stem.count("-") == 2, stem
    assert kills.load(js) == table and md.read_text() == kills.markdown(table)

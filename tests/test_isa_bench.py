"""`segcheck isa-bench`: the latency benchmarks under each ISA level in a process of its own, one table, one
pytest-benchmark file, one chart."""

import contextlib
import io
import json
from pathlib import Path

import pytest

from segcheck.cli import commands, isa_bench
from segcheck.errors import SegcheckError

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _doc(level, fp32_s, int8_s):
    bench = [{"name": f"test_latency[fcn_resnet101_voc-{p}]", "stats": {"min": s, "median": s}, "extra_info": {
        "model": "fcn_resnet101_voc", "precision": p}} for p, s in (("fp32", fp32_s), ("int8", int8_s))]
    return {"machine_info": {"segcheck": {"isa": level}}, "benchmarks": bench, "version": "5.3.1"}


def test_levels_table_merged_json_and_chart(tmp_path):
    assert isa_bench.levels_of(None, ["sse41", "avx", "avx2", "avx512", "avx512_vnni", "avx512_bf16"]) == ["avx2", "avx512", "avx512_vnni"]
    assert isa_bench.levels_of("vnni,avx2", ["avx2", "avx512_vnni"]) == ["avx512_vnni", "avx2"]
    with pytest.raises(SegcheckError, match="--levels: this CPU cannot dispatch amx"):
        isa_bench.levels_of("amx", ["avx2"])
    with pytest.raises(SegcheckError, match=r"^--levels ',' names no level; choose among avx2$"):  # was an empty table
        isa_bench.levels_of(",", ["avx2"])
    with pytest.raises(SegcheckError, match=r"^--levels: unknown ISA 'bogus'"):
        isa_bench.levels_of("bogus", ["avx2"])
    docs = {"avx2": _doc("avx2", 0.10, 0.05), "avx512_vnni": _doc("avx512_vnni", 0.06, 0.015)}
    rows = [r for level, doc in docs.items() for r in isa_bench.measured(level, doc)]
    assert [(r.level, round(r.speedup, 2)) for r in rows] == [("avx2", 2.0), ("avx512_vnni", 4.0)]
    text = isa_bench.markdown(rows, {"avx2": (0, "1 passed"), "avx512_vnni": (1, "1 failed")})
    assert "fcn_resnet101_voc | avx2 | 100.0 | 50.0 | 2.00x" in text and "avx512_vnni: pytest exit status 1 (1 failed)" in text
    merged = isa_bench.merged(docs)
    assert [b["extra_info"]["isa"] for b in merged["benchmarks"]] == ["avx2"] * 2 + ["avx512_vnni"] * 2
    assert len({b["name"] for b in merged["benchmarks"]}) == 4 and merged["version"] == "5.3.1"
    assert isa_bench.png(rows)[:8] == PNG
    with pytest.raises(SegcheckError, match="measured nothing"):
        isa_bench.png([])


def test_the_cap_is_the_commands_own_and_all_is_its_job():
    with pytest.raises(SegcheckError, match="isa-bench sets --isa for each level itself"):
        isa_bench.main(["--", "--isa", "avx2"])
    err = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stderr(err):
        commands.main(["--benchmark", "--isa", "all"])
    assert "unknown ISA 'all'" in err.getvalue() and "`segcheck isa-bench` measures every level" in err.getvalue()


def test_outputs_that_cannot_both_be_written_are_refused_before_measuring(tmp_path, monkeypatch):
    """Before, --json x --png x measured for minutes, wrote the chart over the JSON and printed both lines."""
    monkeypatch.setattr(isa_bench, "run_level", lambda *a: pytest.fail("measured before its outputs were checked"))
    same = str(tmp_path / "isa.out")
    with pytest.raises(SegcheckError, match=f"--png {same} is also --json's output"):
        isa_bench.main(["--levels", "avx2", "--json", same, "--png", same], io.StringIO())
    with pytest.raises(SegcheckError, match=f"^--png: {tmp_path} is a folder; name a file to write$"):
        isa_bench.main(["--levels", "avx2", "--png", str(tmp_path)], io.StringIO())


def test_one_level_end_to_end(segcheck, tmp_path, monkeypatch):
    """The benchmarks of one model under the AVX2 cap (which every x86-64 CPU here has), in a pytest process of its own."""
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    code = isa_bench.main(["--levels", "avx2", "--json", str(tmp_path / "isa.json"), "--png", str(tmp_path / "isa.png"), "--",
                           "-k", "fcn_resnet101_voc", f"--segcheck-cache={segcheck.run.cache_dir}",
                           "--benchmark-max-time=0.2"], out)
    text = out.getvalue()
    assert code == 0, text
    assert "fcn_resnet101_voc | avx2 |" in text and "avx2: pytest exit status 0" in text
    doc = json.loads((tmp_path / "isa.json").read_text())
    assert {b["extra_info"]["isa"] for b in doc["benchmarks"]} == {"avx2"}
    assert {b["extra_info"]["segcheck"]["isa"] for b in doc["benchmarks"]} == {"avx2"}  # the child ran under the cap
    assert (tmp_path / "isa.png").read_bytes()[:8] == PNG

"""The mutant catalogue (tests/mutants.py), injected below segcheck in MXNet's quantization module: each mutant
calibrates fcn_resnet101_voc afresh in an inner gate run, and the run must fail. `pytest -m mutants`; the kill
table (mutant class x check) is printed and written to <segcheck cache>/mutants.md.

Runs need golden records for this environment and setting (`pytest --update-baselines` on a clean run).
"""

from collections import defaultdict
from pathlib import Path

import pytest

from segcheck.gate.checks import of_test_id
from segcheck.plugin.hooks import SESSION, SUITE
from segcheck.results import report

from junit import outcomes as junit_outcomes
from mutants import MUTANTS, Mutation

pytestmark = pytest.mark.mutants
ROOT = Path(__file__).resolve().parents[1]
MODEL = "fcn_resnet101_voc"
RESULTS = {}  # mutant -> (kind, killing checks, layer named first by the range and layer checks, layer hit)
EQUIVALENT = set()  # mutants whose INT8 model predicts bit for bit as the clean one


class ReuseFP32:
    def __init__(self, case):
        self.model, self.evaluation = case.fp32, case.evaluation("fp32")

    def pytest_sessionstart(self, session):
        session.config.stash[SESSION].preset(MODEL, "fp32", self.model, self.evaluation)


@pytest.fixture(scope="module")
def fresh_int8_cache(segcheck, tmp_path_factory):
    """A cache holding this session's FP32 models and data but no INT8 model: every mutant calibrates anew."""
    if segcheck.golden(segcheck.case(MODEL)) is None:
        pytest.skip("no golden records for this environment and setting: record them with pytest --update-baselines")
    cache = tmp_path_factory.mktemp("mutant-cache")
    (cache / "models").mkdir()
    for entry in (segcheck.run.cache_dir / "models").glob("fp32-*"):
        (cache / "models" / entry.name).symlink_to(entry)
    for name in ("datasets",) + tuple(p.name for p in segcheck.run.cache_dir.glob("environment-*.json")):
        (cache / name).symlink_to(segcheck.run.cache_dir / name)
    return cache


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_killed(name, segcheck, fresh_int8_cache, pytester):
    mutation = Mutation(name)
    junit, results = pytester.path / "mutant.xml", pytester.path / "mutant.json"
    pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT), f"--segcheck-cache={fresh_int8_cache}",
        f"--junitxml={junit}", f"--results-json={results}", str(SUITE), "-k", MODEL, "--benchmark-max-time=0.2",
        plugins=[mutation, ReuseFP32(segcheck.case(MODEL))])
    for stale in (fresh_int8_cache / "models").glob("int8-*"):  # the next mutant calibrates anew too
        __import__("shutil").rmtree(stale)
    outcomes = junit_outcomes(junit)
    killers = sorted({of_test_id(n) for n, (o, _) in outcomes.items() if o == "failed"})
    model = report.load(results).models[MODEL]
    named = {check: listed[0] for check, listed in (("int8-ranges", model.ranges_moved), ("int8-layers", model.layers_ranked))
             if listed and check in killers}
    RESULTS[name] = (mutation.mutant.kind, killers, named, mutation.state.get("layer"))
    if not killers:
        checks = model.checks
        if checks["int8-digest"].message.endswith("identical to the golden run (48 images)") and checks["int8-ranges"].status == "PASS":
            EQUIVALENT.add(name)
            pytest.xfail(f"{name} is equivalent here: the INT8 model it makes predicts exactly as the clean one")
    assert killers, f"{name} survived: every check passed"


def test_kill_table(segcheck):
    """At least 95 % of the catalogue killed; every single-layer range mutant killed, its layer named first in
    at least 90 % of them; the table (class x check) printed and written to the cache."""
    if len(RESULTS) < len(MUTANTS):
        pytest.skip("run the whole catalogue (pytest -m mutants) for the kill table")
    by_kind, checks = defaultdict(list), sorted({c for _, killers, _, _ in RESULTS.values() for c in killers})
    for name, (kind, killers, named, layer) in RESULTS.items():
        by_kind[kind].append((name, killers, named, layer))
    lines = ["mutant class | mutants | killed | " + " | ".join(checks), " | ".join(["--"] * (3 + len(checks)))]
    for kind, rows in by_kind.items():
        lines.append(f"{kind} | {len(rows)} | {sum(bool(r[1]) for r in rows)} | "
                     + " | ".join(str(sum(c in r[1] for r in rows)) for c in checks))
    killed = sum(bool(k) for _, k, _, _ in RESULTS.values())
    scale = [r for r in by_kind["range scaled"]]
    right = sum(r[3] is not None and r[3] in r[2].values() and all(v == r[3] for v in r[2].values()) for r in scale)
    lines += ["", f"killed {killed} of {len(RESULTS)} ({100 * killed / len(RESULTS):.1f} %; equivalent: {len(EQUIVALENT)}, "
              f"{100 * killed / (len(RESULTS) - len(EQUIVALENT)):.1f} % of the others); single-layer range mutants with "
              f"their layer named first by every naming check: {right} of {len(scale)}", ""]
    lines += [f"- {name}: {', '.join(killers) or ('EQUIVALENT' if name in EQUIVALENT else 'SURVIVED')}"
              + (f"; layer {layer}, named first: {named}" if layer else "") for name, (_, killers, named, layer) in RESULTS.items()]
    text = "\n".join(lines) + "\n"
    (segcheck.run.cache_dir / "mutants.md").write_text(text)
    print("\n" + text)
    assert killed >= 0.95 * len(RESULTS), text
    assert all(r[1] for r in scale), text
    assert right >= 0.9 * len(scale), text

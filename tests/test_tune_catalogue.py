"""The tune catalogue (opt in: `pytest -m tune_catalogue`, `tox -e tune-catalogue`): for one fault per class and
position, pinned to its layer by name below segcheck (tests/plugins/faults.py EDITS: a range scaled, min/max mixed up,
a layer's statistics from the layer whose range is most unlike its own), `segcheck tune fcn_resnet101_voc --write` must find
within 10 trials a recipe the gate verifies, whose FP32 fallback (where it has one) holds that layer, and
`pytest -k "fcn_resnet101_voc and not peer"` must then pass under the same fault. A fault the configured recipe already
passes is not harmful to the gate: its case skips, saying so.

Each row (trials, minutes, the recipe found) goes into the JSON file SEGCHECK_TUNE_TABLE names (default: the segcheck
cache's tune-catalogue.json), as the kill tables do.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segcheck import atomic
from segcheck.cli import commands
from segcheck.measure import calibration
from segcheck.models import build
from segcheck.tune import speed

import faults
import inner
from test_tune import MODEL, ROOT, _project

CASES = [(edit, position) for edit in faults.EDITS for position in faults.POSITIONS]
MAX_TRIALS = 10


def _path_of(segcheck, layer: str) -> str:
    """The dotted Gluon path of the convolution `layer` (a stable name) in the model."""
    config = segcheck.case(MODEL).config
    names = calibration.conv_layers(build.build(config.network, config.crop_size))
    return next(path for path, name in names.items() if name == layer)


def _record(segcheck, name: str, row: dict) -> None:
    table = Path(os.environ.get("SEGCHECK_TUNE_TABLE") or segcheck.run.cache_dir / "tune-catalogue.json")
    found = json.loads(table.read_text()) if table.is_file() else {}
    atomic.write_json(table, {**found, name: row})


@pytest.mark.tune_catalogue
@pytest.mark.parametrize(("edit", "position"), CASES, ids=[f"{e}-{p}" for e, p in CASES])
def test_tune_fixes_a_fault_pinned_to_one_layer(edit, position, segcheck, tmp_path, monkeypatch, capsys):
    layer, name = faults.POSITIONS[position], f"{edit}-{position}"
    _project(tmp_path)
    cache = inner.fresh_int8_cache(segcheck.run.cache_dir, tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    for owner, attribute, original in faults._pinned(edit, layer):  # in this process (tune's trials), undone at the end
        patched = getattr(owner, attribute)
        setattr(owner, attribute, original)
        monkeypatch.setattr(owner, attribute, patched)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests" / "plugins"))  # ... and in the gate runs
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p faults")
    monkeypatch.setenv("SEGCHECK_FAULT", f"pinned:{edit}:{layer}")
    started = time.monotonic()
    rc = commands.main(["tune", MODEL, "--segcheck-cache", str(cache), "--max-trials", str(MAX_TRIALS),
                        "--json", str(tmp_path / "tune.json"), "--write"])
    tuned = time.monotonic() - started
    out = capsys.readouterr().out
    found = json.loads((tmp_path / "tune.json").read_text())[MODEL]
    trials = found["trials"]
    cost = found.get("speed_cost", {})
    against_configured = cost.get("reference") == speed.CONFIGURED  # else FP32: the configured recipe built no INT8
    row = {"layer": layer, "trials": len(trials), "tune_minutes": round(tuned / 60, 2), "chosen": found["chosen"],
           "speed_cost": cost.get("ratio") if against_configured else None,
           "speedup_over_fp32": round(cost["reference_ms"] / cost["chosen_ms"], 3) if cost and not against_configured else None,
           "configured_failed": [
               v["check"] for v in trials[0]["verdicts"] if v["status"] in ("FAIL", "REGRESSED", "ERROR")]}
    if trials[0]["passed"]:
        _record(segcheck, name, {**row, "outcome": "not harmful to the gate: the configured recipe passes under it"})
        pytest.skip(f"{name}: the configured recipe passes the gate's INT8 checks under this fault: nothing to tune")
    assert rc == 0 and found["verified"] and len(trials) <= MAX_TRIALS, out
    kept = found["chosen"].partition("/exclude=")[2]
    # A fallback must hold the layer; a recipe alone may fix a fault its calibration makes harmless (max equal to min
    # under entropy's symmetric thresholds is the same int8 scale), which the verifying gate run has just confirmed.
    assert not kept or _path_of(segcheck, layer) in kept.split("+"), out
    row["fixed_by"] = "keeping the layer in FP32" if kept else "the recipe alone (no layer kept in FP32)"
    started = time.monotonic()
    gate = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--segcheck-cache", str(cache),
                           "-k", f"{MODEL} and not peer"], cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    row.update(gate_minutes=round((time.monotonic() - started) / 60, 2), gate=(gate.stdout.strip().splitlines() or [""])[-1],
               outcome="fixed" if gate.returncode == 0 else "the gate failed with the recipe found")
    _record(segcheck, name, row)
    assert gate.returncode == 0, gate.stdout[-4000:]

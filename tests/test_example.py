"""The runnable example (examples/own-model), run end to end from an empty folder as a user runs it."""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from segcheck.config import project

from junit import outcomes as junit_outcomes

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-model"
ONE_MODEL_GB = 2.0  # issue 29: a one-model gate from an empty folder


def test_the_example_configuration_loads():
    (model,) = project.load(EXAMPLE / "segcheck.toml").models
    assert (model.name, model.network.name, model.weights) == ("my_fcn", "fcn_resnet50_voc", EXAMPLE / "weights/my_fcn.params")
    assert model.int8_export == EXAMPLE / "model/my_fcn-int8" and model.data.root == EXAMPLE / "data/VOCdevkit"


def _run(args, cwd, env, expect=0) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == expect, f"{' '.join(map(str, args))} -> {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _installed_venv(tmp_path: Path) -> Path:
    """A fresh virtualenv that sees this environment's packages (MXNet, GluonCV, pytest) and gets segcheck installed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "segcheck-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = tmp_path / "source"
    shutil.copytree(ROOT / "segcheck", source / "segcheck", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(source)],
         tmp_path, os.environ)
    return venv


@pytest.mark.slow
def test_the_example_end_to_end_from_an_empty_folder(tmp_path):
    """install, make the inputs, calibrate the shipped INT8 model, pytest (no rows), --update-baselines, pytest (green);
    then the shipped INT8 model broken (ranges rescaled) and damaged (params cut short): pytest fails, naming why."""
    venv = _installed_venv(tmp_path)
    user = tmp_path / "team-repo"
    user.mkdir()
    for name in ("segcheck.toml", "make_inputs.py"):
        shutil.copy(EXAMPLE / name, user / name)
    env = dict(os.environ, SEGCHECK_CACHE_DIR=str(tmp_path / "cache"), MXNET_HOME=str(tmp_path / "mxnet"))
    python = str(venv / "bin" / "python")
    _run([python, "make_inputs.py"], user, env)
    _run([str(venv / "bin" / "segcheck"), "--model", "fcn", "--backbone", "resnet50", "--resume", "weights/my_fcn.params",
          "--voc-root", "data/VOCdevkit", "--crop-size", "64", "--calibration", "--calib-batches", "2", "--calib-batch-size", "8",
          "--model-prefix", "model/my_fcn-int8"], user, env)
    pytest_ = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={user / 'junit.xml'}"]

    text = _run(pytest_ + ["--trace-config"], user, env)
    plugin = re.search(r"<module 'segcheck\.plugin\.hooks' from '([^']+)'>", text).group(1)
    assert plugin.startswith(str(venv)), plugin  # the plugin came from the package installed in the new environment
    first = junit_outcomes(user / "junit.xml")
    assert first["test_accuracy[my_fcn-int8]"][0] == "skipped" and "--update-baselines" in first["test_accuracy[my_fcn-int8]"][1]
    assert first["test_int8_speedup[my_fcn]"][0] == "passed" and first["test_int8_graph_is_quantized_and_calibrated[my_fcn]"][0] == "passed"

    _run(pytest_ + ["--update-baselines"], user, env)
    assert list(json.loads((user / "baselines.json").read_text())["tiers"]["real"]["entries"][0]["rows"]) == ["my_fcn"]
    _run(pytest_, user, env)
    green = junit_outcomes(user / "junit.xml")
    not_passed = [n for n, (o, _) in green.items() if o != "passed" and "[no-peer" not in n]  # the example names no peer
    assert not_passed == ["test_seeded_fp32_model_really_segments[my_fcn]"], green
    # a team's one-model gate fits a small runner: its peak resident set (pytest or a forked child) within 2 GB
    memory = _run([str(venv / "bin" / "segcheck"), "report", "--results", str(tmp_path / "cache" / "last-run.json"),
                   "--max-memory", str(ONE_MODEL_GB)], user, env)
    assert "memory: peak resident set" in memory, memory

    symbol = user / "model" / "my_fcn-int8-symbol.json"
    good = symbol.read_text()
    doc = json.loads(good)
    for node in doc["nodes"]:
        for key in ("min_calib_range", "max_calib_range"):
            if key in node.get("attrs", {}):
                node["attrs"][key] = repr(float(node["attrs"][key]) / 8)
    symbol.write_text(json.dumps(doc))
    _run(pytest_, user, env, expect=1)
    broken = junit_outcomes(user / "junit.xml")
    assert {n for n, (o, _) in broken.items() if o == "failed"} >= {"test_accuracy[my_fcn-int8]", "test_int8_drop[my_fcn]"}
    assert "accuracy regressed" in broken["test_accuracy[my_fcn-int8]"][1]

    symbol.write_text(good)
    params = user / "model" / "my_fcn-int8-0000.params"
    params.write_bytes(params.read_bytes()[: params.stat().st_size // 2])
    _run(pytest_, user, env, expect=1)
    damaged = junit_outcomes(user / "junit.xml")
    assert f"{params}: cannot be loaded" in damaged["test_accuracy[my_fcn-int8]"][1]
    assert damaged["test_accuracy[my_fcn-fp32]"][0] == "passed"

"""Peer runs reused across runs (peers.reuse): read back under the same files and settings with their latency measured
again on the kept model, run again when any file or setting changes, and never trusted when damaged. A stand-in
runner (this interpreter, no peer environment) counts what it was asked."""

import functools
import json
import sys

import numpy as np
import pytest

from segcheck.peers import protocol, reuse

RUNNER = """
import json, sys
from pathlib import Path
import numpy as np
request = json.loads(Path(sys.argv[1]).read_text())
out = Path(request["out"])
with open(request["log_of_calls"], "a") as calls:
    calls.write(json.dumps({k: request.get(k) for k in ("precision", "predict", "quantized")}) + "\\n")
Path(request["onnx"]).read_bytes()  # a missing model: no answer, as the peer's runner
answer = {"ok": True, "quantizer": "stand-in", "versions": {}, "settings": {}, "quantized_ops": 1, "quantized_convs": [1, 1],
          "latency": {"rounds": 2, "min_ms": float(request["latency_ms"]), "median_ms": 1.0, "iqr_pct": 0.0},
          "predictions": None, "logits0": None, "model": request.get("quantized") or request["onnx"]}
if request.get("predict", True):
    images = np.load(request["eval"])
    np.save(out / "predictions.npy", (images[:, 0] > 0).astype(np.uint8))
    np.save(out / "logits0.npy", images[0])
    answer.update(predictions=str(out / "predictions.npy"), logits0=str(out / "logits0.npy"))
    if request["precision"] == "int8":
        (out / "int8.onnx").write_bytes(b"quantized " + Path(request["calib"]).read_bytes()[:16])
        answer["model"] = str(out / "int8.onnx")
(out / "answer.json").write_text(json.dumps(answer))
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A stand-in runner in place of the peer's, and the files of one request."""
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    monkeypatch.setattr(reuse, "run", functools.partial(protocol.run, runner=runner))
    rng = np.random.default_rng(0)
    made = {}
    for name in ("onnx", "eval", "calib"):
        made[name] = tmp_path / f"{name}.npy"
        np.save(made[name], rng.standard_normal((3, 3, 4, 4)).astype(np.float32))
    return made


def ask(tmp_path, files, precision="int8", latency_ms=5.0, **changes):
    request = {**files, "runtime": "onnxruntime", "precision": precision, "quantizer": "onnxruntime", "threads": 2,
               "out": tmp_path / "out", "log_of_calls": str(tmp_path / "calls.jsonl"), "latency_ms": latency_ms, **changes}
    return reuse.answer(sys.executable, request, 60, tmp_path / "cache", tmp_path / "peer.log")


def calls(tmp_path) -> list:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_second_run_reads_the_predictions_and_times_the_kept_model_again(tmp_path, files, precision):
    first = ask(tmp_path, files, precision, latency_ms=5.0)
    second = ask(tmp_path, files, precision, latency_ms=7.0)
    assert np.array_equal(np.load(first["predictions"]), np.load(second["predictions"]))
    assert "cached" not in first and second["cached"] and first["predictions"] == second["predictions"]
    assert (first["latency"]["min_ms"], second["latency"]["min_ms"]) == (5.0, 7.0)  # the latency is this run's
    kept_model = second["model"] if precision == "int8" else None
    assert calls(tmp_path) == [{"precision": precision, "predict": None, "quantized": None},
                               {"precision": precision, "predict": False, "quantized": kept_model}]
    if precision == "int8":
        assert kept_model.startswith(second["cached"]) and open(kept_model, "rb").read().startswith(b"quantized ")


@pytest.mark.parametrize("changed", ["onnx", "eval", "calib", "threads", "runtime", "precision", "runner"])
def test_any_changed_file_or_setting_runs_the_peer_again(tmp_path, files, changed, monkeypatch):
    ask(tmp_path, files, precision="fp32" if changed == "precision" else "int8")
    if changed == "runner":  # the peer's runner edited: its quantizer or its argmax may answer otherwise
        edited = tmp_path / "edited-runner.py"
        edited.write_text(reuse.RUNNER.read_text() + "\n# edited\n")
        monkeypatch.setattr(reuse, "RUNNER", edited)
        again = ask(tmp_path, files)
    elif changed == "precision":
        again = ask(tmp_path, files, precision="int8")
    elif changed in files:
        data = np.load(files[changed])
        data[0, 0, 0, 0] += 1.0
        np.save(files[changed], data)
        again = ask(tmp_path, files)
    else:
        again = ask(tmp_path, files, **{changed: {"threads": 1, "runtime": "openvino"}[changed]})
    assert "cached" not in again and [c["predict"] for c in calls(tmp_path)] == [None, None]


def test_a_damaged_entry_is_run_again_never_trusted(tmp_path, files, caplog):
    first = ask(tmp_path, files)
    predictions = np.load(first["predictions"])
    np.save(first["predictions"], 1 - predictions)  # a bit flipped on disk
    again = ask(tmp_path, files)
    assert "cached" not in again and np.array_equal(np.load(again["predictions"]), predictions)
    assert "is damaged" in caplog.text and [c["predict"] for c in calls(tmp_path)] == [None, None]
    assert ask(tmp_path, files)["cached"]  # rebuilt whole, it is read again


def test_a_request_naming_a_missing_file_goes_to_the_runner_uncached(tmp_path, files):
    """The runner, not the cache, answers where a file is missing (the peer's runner names it); nothing is kept."""
    ask(tmp_path, {**files, "calib": tmp_path / "none.npy"}, precision="fp32")  # an fp32 request takes no calib
    with pytest.raises(protocol.PeerCrash):
        ask(tmp_path, {**files, "onnx": tmp_path / "none.onnx"}, precision="fp32")
    assert len(calls(tmp_path)) == 2 and len(list((tmp_path / "cache" / "models").glob("peer-run-*"))) == 1

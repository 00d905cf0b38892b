"""Peer runs reused across runs: a peer's predictions (and, for INT8, the model its quantizer made) depend only on the
ONNX file, the images sent, the calibration images, the runtime and its quantizer, the peer environment's pins, the
runner's own code, the thread count and the ISA, so an entry of that key is read instead of run again. Its latency is
measured again, on the model kept in the entry, as a run's latency belongs to the run.

Entries live in the model cache (models.cache): written atomically, a damaged one is run again, never trusted. A
changed export or calibration (a plugin's fault) changes the files' digests, so it never meets another's entry.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from .. import atomic
from ..config import isa
from ..models import cache
from .environment import requirements_digest
from .protocol import RUNNER, run

log = logging.getLogger("segcheck.peers")

FORMAT = 1  # of an entry
KEPT = ("answer.json", "predictions.npy", "logits0.npy", "int8.onnx", "int8.xml", "int8.bin")  # what a runner's out holds


def fields(request: dict) -> dict | None:
    """The key of `request`'s answer, or None where a file it names is missing (the runner then says which)."""
    files = ("onnx", "eval") + (("calib",) if request["precision"] == "int8" else ())
    if not all(Path(request[name]).is_file() for name in files):
        return None
    return {"format": FORMAT, **{name: atomic.digest_of(request[name]) for name in files},
            **{name: request[name] for name in ("runtime", "precision", "quantizer", "threads")},
            "pins": requirements_digest(), "runner": atomic.digest_of(RUNNER), "isa": isa.effective_level()}


def answer(python, request: dict, timeout_s: float, cache_dir, log_file: Path) -> dict:
    """The runner's answer to `request` (its "out" unused: an entry's folder holds the files), from the cache where
    an entry of the same key holds it, its latency measured again; else run, and kept for the next run."""
    key = fields(request)
    if key is None:
        return run(python, request, timeout_s, log=log_file)

    def build(folder: Path) -> dict:
        run(python, {**request, "out": folder}, timeout_s, log=log_file)
        for extra in folder.iterdir():
            if extra.is_dir():
                shutil.rmtree(extra)
            elif extra.name not in KEPT:
                extra.unlink()
        return {"peer": f"{request['runtime']} {request['precision']}"}

    entry = cache.get_or_build(cache_dir, "peer-run", key, build)
    try:
        kept = _kept(entry, request["precision"])
    except (OSError, ValueError, KeyError, TypeError) as err:  # intact on disk, but not an answer this code reads
        log.warning("cached peer run %s is unreadable (%s); removed, and the peer run again", entry.path, err)
        shutil.rmtree(entry.path, ignore_errors=True)  # the next run builds it afresh
        return run(python, request, timeout_s, log=log_file)
    if entry.built:
        return kept
    quantized = {"quantized": kept["model"]} if request["precision"] == "int8" else {}
    with tempfile.TemporaryDirectory(prefix="segcheck-peer-latency-") as tmp:
        timed = run(python, {**request, **quantized, "predict": False, "out": tmp}, timeout_s, log=log_file)
    return {**kept, "latency": timed["latency"], "cached": str(entry.path)}


def _kept(entry: cache.Entry, precision: str) -> dict:
    """An entry's answer, its file names resolved in the entry's folder (the runner wrote them in the staged one)."""
    kept = json.loads(entry.file("answer.json").read_text())
    moved = ("predictions", "logits0") + (("model",) if precision == "int8" else ())
    return {**kept, **{name: str(entry.file(Path(kept[name]).name)) for name in moved}}

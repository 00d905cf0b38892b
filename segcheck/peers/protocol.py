"""The runner protocol: segcheck writes images and a request to files, runs peers/runner.py with the peer
interpreter, and reads its answer file; a runner that dies, hangs or answers without what was asked is a PeerCrash."""

from __future__ import annotations

import io
import json
import signal
import subprocess
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import SegcheckError
from .environment import INSTALL_COMMAND, peer_env, last_text

RUNNER = Path(__file__).with_name("runner.py")


class PeerCrash(SegcheckError):
    """The peer runner died (a signal, a time-out) or exited without writing its answer."""


def write_images(path, batches) -> Path:
    """Stack image batches (NDArrays or arrays, N x 3 x H x W, or single 3 x H x W images) into one float32 .npy, atomically."""
    arrays = []
    for batch in batches:
        array = np.asarray(batch.asnumpy() if hasattr(batch, "asnumpy") else batch, dtype=np.float32)
        arrays.append(array[None] if array.ndim == 3 else array)
    if not arrays:
        raise SegcheckError(f"{path}: no images to write")
    shapes = {a.shape[1:] for a in arrays}
    if any(a.ndim != 4 or a.shape[1] != 3 for a in arrays) or len(shapes) != 1:
        raise SegcheckError(f"{path}: image batches must all be N x 3 x H x W of one size, got {sorted(shapes)}")
    buffer = io.BytesIO()
    np.save(buffer, np.concatenate(arrays), allow_pickle=False)
    return atomic.write_bytes(path, buffer.getvalue())


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _last_line(log: Path) -> str:
    try:
        return last_text(log.read_text(errors="replace"))
    except OSError:
        return ""


def run(python, request: dict, timeout_s: float, runner=RUNNER, log: Path | None = None) -> dict:
    """Run the peer runner on `request` (written to <out>/request.json) with interpreter `python` and return its answer;
    its output goes to `log` (default <out>/runner.log), which the error messages name.

    PeerCrash when the runner dies by a signal, outlives `timeout_s` or exits without an answer;
    SegcheckError with the runner's own error line when it answers that it failed.
    """
    out = Path(request["out"])
    what = f"{request.get('runtime', '?')} {request.get('precision', '?')}"
    atomic.ensure_writable(out, "choose a writable folder for the peer's answer")
    answer_file, log = out / "answer.json", Path(log) if log else out / "runner.log"
    atomic.ensure_writable(log.parent, "choose a writable segcheck cache (--segcheck-cache) for the peer's log")
    answer_file.unlink(missing_ok=True)
    request_file = atomic.write_json(out / "request.json", {k: str(v) if isinstance(v, Path) else v for k, v in request.items()})
    with open(log, "wb") as handle:
        try:
            done = subprocess.run([str(python), "-I", str(runner), str(request_file)], stdout=handle, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=peer_env(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise PeerCrash(f"peer runner for {what} did not answer within {timeout_s:g} s and was killed; "
                            f"its log is {log}") from None
        except OSError as err:
            raise PeerCrash(f"peer runner for {what} could not start with {python} ({err.strerror}); "
                            f"recreate the peer environment with `{INSTALL_COMMAND}`") from None
    try:
        answer = json.loads(answer_file.read_text())
    except (OSError, ValueError):
        answer = None
    if isinstance(answer, dict) and not answer.get("ok") and done.returncode >= 0:
        raise SegcheckError(f"peer runner for {what} failed: {answer.get('error', 'no error given')}; its log is {log}")
    if done.returncode != 0 or not isinstance(answer, dict):
        last = _last_line(log)
        when = "after answering" if isinstance(answer, dict) else "without an answer"
        raise PeerCrash(f"peer runner for {what} {_exit_status(done.returncode)} {when}"
                        f"{f' ({last})' if last else ''}; its log is {log}")
    return answer



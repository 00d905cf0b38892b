"""Backend work in a forked child process, so that a crash in MXNet or oneDNN (a signal, an abort) fails only the case
that ran it and the rest of the run goes on.

The child is a fork: it holds this process's models, patches, state and warning filters, runs one function and sends
back its result (or its exception) and the warnings it raised, which are raised again here. A child that dies by a signal or exits without an answer is a
BackendCrash naming what it was doing. Where the platform has no fork, or SEGCHECK_IN_PROCESS=1 asks for it (to debug
with pdb), the work runs in this process.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import select
import signal
import sys
import time
import warnings

from tqdm import tqdm

from ..errors import SegcheckError

# tqdm's monitor thread could hold tqdm's lock at the moment of a fork, and a child's progress bar would then wait for it
tqdm.monitor_interval = 0
TIMEOUT_S = float(os.environ.get("SEGCHECK_BACKEND_TIMEOUT", "3600"))


class BackendCrash(SegcheckError):
    """The backend died (a signal, an abort, an exit) while doing one case's work."""


def in_process() -> bool:
    return not hasattr(os, "fork") or os.environ.get("SEGCHECK_IN_PROCESS", "") == "1"


def isolated(what: str, work):
    """`work()` run in a forked child; its result, or its exception raised here. `what` names the work in a crash
    ("fcn_resnet101_voc int8 evaluation")."""
    if in_process():
        return work()
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, then leave at once (no atexit, no pytest teardown)
        os.close(read_end)
        faulthandler.disable()  # a crash is reported by the parent; SEGCHECK_IN_PROCESS=1 shows its native traceback
        status = 0
        try:
            with warnings.catch_warnings(record=True) as caught:  # under this process's filters, as in process
                answer = ("result", work())
            raised = [(str(w.message), w.category, w.filename, w.lineno) for w in caught]
        except BaseException as err:  # noqa: BLE001 - every exception goes back to the parent
            answer, raised = ("error", err), []
        try:
            payload = pickle.dumps((answer, raised))
        except Exception as err:  # noqa: BLE001 - an answer that cannot travel is an error of its own
            payload = pickle.dumps((("error", SegcheckError(f"{what}: its result cannot be sent back ({err})")), []))
        try:
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
        except OSError:
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    os.close(write_end)
    data = _read_all(read_end, pid, what)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        raise BackendCrash(f"{what}: the backend died with {name} (a crash in MXNet or oneDNN); the rest of the run goes on")
    if not data:
        code = os.WEXITSTATUS(status)
        note = " (MXNet's own handler exits so after a segmentation fault, printing its stack)" if code == 255 else ""
        raise BackendCrash(f"{what}: the backend process exited with status {code} without an answer{note}")
    (kind, value), raised = pickle.loads(data)
    for message, category, filename, lineno in raised:  # the child's filters passed them: shown, not filtered again
        warnings.showwarning(category(message), category, filename, lineno)
    if kind == "error":
        raise value
    return value


def _read_all(fd: int, pid: int, what: str) -> bytes:
    """Everything the child writes, until it closes the pipe; a child that takes longer than TIMEOUT_S is killed."""
    chunks, deadline = [], time.monotonic() + TIMEOUT_S
    with os.fdopen(fd, "rb") as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise BackendCrash(f"{what}: the backend did not answer within {TIMEOUT_S:g} s "
                                   "(SEGCHECK_BACKEND_TIMEOUT); it was stopped")
            chunk = pipe.read1(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

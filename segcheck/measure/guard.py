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

from ..config import threads
from ..errors import SegcheckError
from .memory import child_peaked, peak_mb

# tqdm's monitor thread could hold tqdm's lock at the moment of a fork, and a child's progress bar would then wait for it
tqdm.monitor_interval = 0


class BackendCrash(SegcheckError):
    """The backend died (a signal, an abort, an exit) while doing one case's work."""


def in_process() -> bool:
    return not hasattr(os, "fork") or os.environ.get("SEGCHECK_IN_PROCESS", "") == "1"


LEAST_S = 300.0  # the shortest default timeout of a case's work
# Fused FP32 at 64 px on this project's 2-core AMD EPYC (about 60 ms); INT8 and the unfused calibration forward cost no
# more per image. A forward costs as the crop's area: at 480 px, 3.4 s (measured 2.3 to 4.5 s).
SECONDS_PER_IMAGE_AT_64 = 0.06


def limit(images: int, crop: int, configured: float | None = None) -> float:
    """How long a child doing work over `images` images at `crop` px may take before it is stopped: `configured`
    (--case-timeout, the configuration's case_timeout), else the larger of LEAST_S and three times the estimate."""
    if configured is not None:
        return float(configured)
    return max(LEAST_S, 3 * images * SECONDS_PER_IMAGE_AT_64 * (crop / 64) ** 2)


def isolated(what: str, work, timeout_s: float = LEAST_S, footprint: dict | None = None, phase: str | None = None):
    """`work()` run in a forked child; its result, or its exception raised here. `what` names the work in a crash
    ("fcn_resnet101_voc int8 evaluation"); a child that has not answered within `timeout_s` is stopped. `footprint`,
    where given, gets footprint[what]: the MB the child's resident set rose above what it shared at the fork. The
    child's peak counts for the run's phase `phase` (calibration, evaluation, ...), where given."""
    if in_process():
        return work()
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _answer(what, work, write_end)
    os.close(write_end)
    try:
        data = _read_all(read_end, what, timeout_s)
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # an interrupt or a timeout here leaves no child behind
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    try:
        (kind, value), raised, (shared_mb, child_mb) = pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        raise BackendCrash(_death(what, status)) from None
    child_peaked(child_mb, phase)
    rose_mb = child_mb - shared_mb
    if footprint is not None:
        footprint[what] = max(footprint.get(what, 0.0), rose_mb)
    for message, category, filename, lineno in raised:  # the child's filters passed them: shown, not filtered again
        warnings.showwarning(category(message), category, filename, lineno)
    if kind == "error":
        raise value
    return value


def _answer(what: str, work, write_end: int) -> None:
    """The child: run `work`, send back (result or exception, warnings), and leave at once (no atexit, no teardown),
    whatever happens here: the child never goes on into its parent's code."""
    status = 1
    try:
        status = _send(what, work, write_end)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _send(what: str, work, write_end: int) -> int:
    """Run `work` and write its answer to `write_end`; the child's exit status."""
    faulthandler.disable()  # a crash is reported by the parent; SEGCHECK_IN_PROCESS=1 shows its native traceback
    threads.alone_in_this_thread()  # the parent's OpenMP team did not come along
    shared_mb = peak_mb()  # a fork starts at the resident set it shares with its parent
    with warnings.catch_warnings(record=True) as caught:  # under this process's filters, as in process
        try:
            answer = ("result", work())
        except BaseException as err:  # noqa: BLE001 - every exception goes back to the parent
            answer = ("error", err)
    raised = [(str(w.message), w.category, w.filename, w.lineno) for w in caught]
    try:
        payload = pickle.dumps((answer, raised, (shared_mb, peak_mb())))
    except Exception as err:  # noqa: BLE001 - an answer that cannot travel is an error of its own
        payload = pickle.dumps((("error", SegcheckError(f"{what}: its result cannot be sent back ({err})")), raised,
                                (shared_mb, peak_mb())))
    try:
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
    except OSError:
        return 1
    return 0


def _death(what: str, status: int) -> str:
    """How a child that sent no whole answer ended."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        return f"{what}: the backend died with {name} (a crash in MXNet or oneDNN); the rest of the run goes on"
    code = os.WEXITSTATUS(status)
    note = " (MXNet's own handler exits so after a segmentation fault, printing its stack)" if code == 255 else ""
    return f"{what}: the backend process exited with status {code} without an answer{note}"


def _read_all(fd: int, what: str, seconds: float) -> bytes:
    """Everything the child writes, until it closes the pipe; a child that takes longer than `seconds` is stopped,
    whatever it is doing (a loop in Python, a call blocked in C): the parent waits on the pipe, not on the child."""
    chunks = []
    deadline = time.monotonic() + seconds
    with os.fdopen(fd, "rb") as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise BackendCrash(f"{what}: the backend did not answer within {seconds:g} s (--case-timeout, or the "
                                   "configuration's case_timeout); it was stopped")
            chunk = pipe.read1(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

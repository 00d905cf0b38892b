"""Backend work in a forked child (measure.guard): results and exceptions come back, a crash is one error naming what
crashed and how, and the process that asked goes on."""

import ctypes
import os
import signal
import subprocess
import sys
import time
import warnings

import inner
import pytest

from segcheck.errors import SegcheckError
from segcheck.measure import guard


def test_a_result_an_exception_and_the_warnings_come_back():
    assert guard.isolated("sum", lambda: sum(range(10))) == 45
    with pytest.raises(SegcheckError, match="^named in the child$"):
        guard.isolated("raise", lambda: (_ for _ in ()).throw(SegcheckError("named in the child")))

    def warn():
        warnings.warn("left out: one sample", UserWarning)
        return os.getpid()

    with pytest.warns(UserWarning, match="left out: one sample"):
        child = guard.isolated("warn", warn)
    assert child != os.getpid()  # it ran in another process


def test_a_childs_footprint_is_what_it_added_beyond_what_it_shared_at_the_fork():
    """The memory a forked work costs beyond the pytest process: 191 MiB held by the child are counted, not the
    parent's resident set (however large) that the child shares, and a work run twice keeps its larger footprint."""
    import numpy as np

    footprint = {}
    assert guard.isolated("allocates", lambda: float(np.ones(25_000_000).sum()), footprint=footprint) == 25_000_000
    assert 180 < footprint["allocates"] < 260, footprint
    guard.isolated("allocates", lambda: 0, footprint=footprint)
    guard.isolated("small", lambda: 0, footprint=footprint)
    assert 180 < footprint["allocates"] < 260 and footprint["small"] < 50, footprint


@pytest.mark.parametrize("death, named", [
    (lambda: ctypes.CDLL(None).abort(), "SIGABRT"),
    (lambda: os.kill(os.getpid(), signal.SIGILL), "SIGILL"),  # AMX without Linux's tile permission
    (lambda: os.kill(os.getpid(), signal.SIGKILL), "SIGKILL"),
], ids=["abort", "illegal-instruction", "killed"])
def test_a_child_that_dies_by_a_signal_is_a_crash_naming_the_work_and_the_signal(death, named):
    with pytest.raises(guard.BackendCrash, match=rf"^fcn int8 evaluation: the backend died with {named} "):
        guard.isolated("fcn int8 evaluation", death)
    assert guard.isolated("after", lambda: "still here") == "still here"


def test_a_segmentation_fault_under_mxnet_is_a_crash_saying_so():
    import mxnet  # noqa: F401 - MXNet's segfault handler prints its stack and exits with status 255

    with pytest.raises(guard.BackendCrash, match="exited with status 255 without an answer .MXNet's own handler"):
        guard.isolated("segfault", lambda: os.kill(os.getpid(), signal.SIGSEGV))


@pytest.mark.parametrize("hang", [lambda: time.sleep(60), lambda: ctypes.CDLL(None).sleep(60)], ids=["in-python", "in-c"])
def test_a_child_that_leaves_without_an_answer_or_hangs_is_a_crash(hang):
    """A hang in C (libc's sleep: no Python code runs, no signal handler) is stopped as surely as one in Python: the
    parent waits on the pipe, not on the child."""
    with pytest.raises(guard.BackendCrash, match="exited with status 3 without an answer"):
        guard.isolated("exit", lambda: os._exit(3))
    open_fds = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(guard.BackendCrash, match=r"did not answer within 0.5 s \(--case-timeout, or the configuration's"):
        guard.isolated("hang", hang, timeout_s=0.5)  # had it waited for the child, it would say the child exited
    assert sorted(os.listdir("/proc/self/fd")) == open_fds, "the stopped child's pipe was left open"
    with pytest.raises(ChildProcessError):  # ... or the child itself, unreaped
        os.waitpid(-1, os.WNOHANG)
    assert guard.isolated("after", lambda: "still here") == "still here"


def test_a_case_may_take_what_its_work_needs():
    """At least 300 s; three times the estimate of a larger work (1449 images at 480 px: hours); what is configured."""
    assert guard.limit(48, 64) == guard.LEAST_S
    assert guard.limit(1449, 480) == pytest.approx(3 * 1449 * guard.SECONDS_PER_IMAGE_AT_64 * (480 / 64) ** 2)
    assert guard.limit(1449, 480, configured=5.0) == 5.0


def test_an_answer_that_cannot_travel_is_an_error_of_its_own():
    with pytest.raises(SegcheckError, match="lambda: its result cannot be sent back"):
        guard.isolated("lambda", lambda: (lambda: None))


def test_in_process_when_asked(monkeypatch):
    monkeypatch.setenv("SEGCHECK_IN_PROCESS", "1")
    assert guard.isolated("here", os.getpid) == os.getpid()


def test_a_peer_run_takes_the_case_timeout(segcheck, monkeypatch):
    """The peer's requests are stopped at the case's limit (--case-timeout, case_timeout), not at a fixed hour."""
    from segcheck.cases import model_case as cases
    from segcheck.peers import scoring

    asked = []
    monkeypatch.setattr(cases, "exporter_present", lambda: None)
    monkeypatch.setattr(cases, "usable_python", lambda: "python")
    monkeypatch.setattr(scoring, "gate_run", lambda runtime, onnx, split, indices, calibration, cache_dir, latency, skip_bad,
                        timeout_s, model: asked.append((model, timeout_s)))
    mc = segcheck.model_config("fcn_resnet101_voc")
    case = cases.ModelCase(mc.with_(run=mc.run.with_(case_timeout=7.0)), on_missing=lambda err: None,
                           hooks=inner.Hooks(pytest_segcheck_reuse=lambda case, part: "model.onnx" if part == "onnx" else None))
    case.peer("onnxruntime")
    assert asked == [("fcn_resnet101_voc", 7.0)]


FORK_AFTER_OPENMP = """
import mxnet as mx
from segcheck.measure import guard
mx.random.seed(0)
net = mx.gluon.nn.HybridSequential()
net.add(mx.gluon.nn.Conv2D(64, 3, padding=1), mx.gluon.nn.Conv2D(64, 3, padding=1))
net.initialize()
net.hybridize(static_alloc=True, static_shape=True)
x = mx.nd.random.uniform(shape=(1, 3, 128, 128))
net(x).asnumpy()  # oneDNN's reorder, on this main thread, in an OpenMP team of two
print(guard.isolated("a read in a child", lambda: net(x).asnumpy().shape, 20))
"""


def test_a_child_forked_after_a_two_thread_openmp_region_answers():
    """GNU libgomp keeps the team of threads a parent's main thread ran with, and a fork does not copy them: without
    config.threads.alone_in_this_thread, the child's first region (oneDNN reordering the array it reads) waits for
    them until the case timeout stops it."""
    done = subprocess.run([sys.executable, "-c", FORK_AFTER_OPENMP], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert done.returncode == 0 and "(1, 64, 128, 128)" in done.stdout, done.stderr[-2000:]

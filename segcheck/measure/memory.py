"""Peak memory of a run: the high-water mark of this process's resident set and of its largest forked child (the cases'
backend work), the steps that raised this process's mark, largest first, and the peak of each phase (fit,
calibration, evaluation, benchmarks, ...).

The marks are Linux's VmHWM (/proc/self/status), not getrusage's ru_maxrss: a process started by exec from a large one
inherits that one's ru_maxrss (so a subprocess of a 10 GB pytest reports 10 GB), while VmHWM starts afresh with its
memory. A forked child starts at the resident set it shares with its parent. A phase's own peak needs the mark reset as it
begins (Linux's /proc/self/clear_refs); the run's peak is then kept here across the resets.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import resource
from contextlib import contextmanager
from dataclasses import dataclass, field

RECLAIM_MB = 256.0  # a resident set this much above where it was last reclaimed is reclaimed (reclaim)
NOTICED_MB = 16.0  # a rise smaller than this is allocator noise, not a step's footprint
_ACTIVE: list = []  # the Watermarks measuring now; the innermost (an in-process inner run's) gets the phases


@dataclass
class _Marks:
    """This process's peak before its mark was last reset, the largest peak a forked child of it reported
    (guard.isolated), and the peak so far of each phase open now."""

    peak_mb: float = 0.0
    children_peak_mb: float = 0.0
    open: list = field(default_factory=list)  # _Region, innermost last


_MARKS = _Marks()


def _forget_parents_marks() -> None:
    """A forked child's marks are its own: its parent's peaks and phases are not."""
    _MARKS.peak_mb, _MARKS.children_peak_mb, _MARKS.open = 0.0, 0.0, []
    _ACTIVE.clear()


if hasattr(os, "register_at_fork"):  # where there is no fork, work runs in process (guard.in_process)
    os.register_at_fork(after_in_child=_forget_parents_marks)


def _status_mb(field_name: str) -> float | None:
    """A memory field of /proc/self/status ("VmHWM", "VmRSS"), MB; None where /proc is not there."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith(f"{field_name}:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _mark_mb() -> float:
    """This process's mark: its peak resident set since the mark was last reset, MB (VmHWM; ru_maxrss, in KiB on Linux,
    where /proc is not there)."""
    found = _status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if found is None else found


def peak_mb() -> float:
    """This process's peak resident set so far, MB."""
    return max(_mark_mb(), _MARKS.peak_mb)


class _Region:
    """An open phase's peak so far, MB (compared by identity: two phases may share a peak)."""

    __slots__ = ("mb",)

    def __init__(self, mb: float):
        self.mb = mb


def _fold() -> None:
    """The mark into the run's peak and into every open phase's, before it is reset or a phase ends."""
    now = _mark_mb()
    _MARKS.peak_mb = max(_MARKS.peak_mb, now)
    for region in _MARKS.open:
        region.mb = max(region.mb, now)


def _reset_mark() -> bool:
    """Reset this process's mark to its resident set now; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


@contextmanager
def phase(name: str):
    """The block as phase `name` of the run measuring now (the innermost): it gets the largest resident set this
    process had in it (the larger, where the phase ran before). Phases nest. Nothing is recorded where the mark cannot
    be reset."""
    _fold()
    measured = _reset_mark()
    region = _Region(resident_mb())
    _MARKS.open.append(region)
    try:
        yield
    finally:
        _fold()
        _MARKS.open.remove(region)
        for mark in _ACTIVE[-1:] if measured else ():
            mark.phases[name] = max(mark.phases.get(name, 0.0), region.mb)


def resident_mb() -> float:
    """This process's resident set now, MB (VmRSS; 0 where /proc is not there)."""
    return _status_mb("VmRSS") or 0.0


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (another C library); looked up once (find_library runs ldconfig)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def reclaim() -> float:
    """Give back what this process no longer uses, and return its resident set after, MB: collect unreachable cycles
    (a Gluon network is one: its blocks refer to each other, so it outlives its last reference until a collection) and
    trim glibc's heaps (MXNet frees CPU arrays into malloc, whose arenas keep the pages; malloc_trim returns them)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    return resident_mb()


def settle() -> None:
    """Once per process, before the run builds anything: collect, then set what is alive (the imports, the collected
    tests) apart from later collections (gc.freeze), so that each reclaim() walks only what the run made since. What
    is set apart is never collected, so a network built before this would never be freed: a run inside a running
    test (pytester's) leaves the outer test's objects alone."""
    if gc.get_freeze_count() == 0 and "PYTEST_CURRENT_TEST" not in os.environ:
        gc.collect()
        gc.freeze()


def child_peaked(mb: float, work: str | None) -> None:
    """A forked child's peak resident set (the pages it shares with this process included), as it reported it, doing
    `work` (calibration, evaluation, ...; None: a work that is no phase of a run)."""
    _MARKS.children_peak_mb = max(_MARKS.children_peak_mb, mb)
    for mark in _ACTIVE[-1:] if work is not None else ():
        mark.child_phases[work] = max(mark.child_phases.get(work, 0.0), mb)


def children_peak_mb() -> float:
    """The largest peak resident set a forked child of this process reported, MB (0 when none forked)."""
    return _MARKS.children_peak_mb


@dataclass(eq=False)
class Watermark:
    """Where this process's peak rose: `step(name)` after each step (a test) credits that step with the rise, and
    reclaims what the step left behind once the resident set is RECLAIM_MB above where it was last reclaimed, so that
    what one step freed is not still held when the next one allocates. While open, it gets the run's phases."""

    last_mb: float = field(default_factory=peak_mb)
    rises: dict = field(default_factory=dict)  # step -> MB it added to the peak
    reclaimed_mb: float = field(default_factory=resident_mb)  # the resident set after the last reclaim
    phases: dict = field(default_factory=dict)  # phase -> this process's peak in it, MB (phase(), while open)
    child_phases: dict = field(default_factory=dict)  # work -> the largest peak a forked child doing it reported, MB

    def open(self) -> None:
        """Record the phases that run from now on (until close)."""
        _ACTIVE.append(self)

    def close(self) -> None:
        """Stop recording phases: the run has ended."""
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def step(self, name: str) -> None:
        now = peak_mb()
        if now - self.last_mb >= NOTICED_MB:
            self.rises[name] = self.rises.get(name, 0.0) + now - self.last_mb
        self.last_mb = max(self.last_mb, now)
        if resident_mb() - self.reclaimed_mb >= RECLAIM_MB:
            self.reclaimed_mb = reclaim()

    def largest(self, count: int = 5) -> tuple:
        """The `count` steps that raised the peak most: ((step, MB), ...), largest first."""
        return tuple(sorted(self.rises.items(), key=lambda item: -item[1])[:count])

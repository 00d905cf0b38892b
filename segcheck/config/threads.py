"""The OpenMP threads MXNet and oneDNN run with: OMP_NUM_THREADS where it is set, else this machine's physical cores,
set by segcheck before MXNet loads. MXNet's own default is half the logical CPUs (it counts on two hyperthreads per
core), so on a machine without them, such as a 2-core CI runner, it ran one thread and left a core idle.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

VARIABLE = "OMP_NUM_THREADS"
SYSFS = Path("/sys/devices/system/cpu")


def physical_cores(sysfs: Path = SYSFS) -> int:
    """The physical cores among the CPUs this process may run on (a core's hyperthreads count once); the CPUs
    themselves where the topology cannot be read."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return len(cores) or 1


def _set() -> int | None:
    value = os.environ.get(VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def select() -> int:
    """The thread count this process runs MXNet with: OMP_NUM_THREADS as set, else the physical cores, put into
    OMP_NUM_THREADS now for MXNet to read when it loads (where it has loaded already, its own default stays)."""
    if _set() is None and "mxnet" not in sys.modules:
        os.environ[VARIABLE] = str(physical_cores())
    return in_force()


def in_force() -> int:
    """OMP_NUM_THREADS where set, else MXNet's own default (half the logical CPUs, at least one)."""
    return _set() or max(1, (os.cpu_count() or 1) // 2)


def alone_in_this_thread() -> None:
    """OpenMP parallel regions started by this thread run on it alone. For a forked child's main thread: GNU libgomp
    keeps the team of threads the parent's main thread ran with, which the fork did not copy, so a region here (oneDNN
    reordering an array as it is read) waits for them forever. MXNet's engine threads, new in the child, make their
    own teams and keep every thread."""
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(1)
    except (OSError, AttributeError):  # no GNU OpenMP here (mxnet-mkl's Intel OpenMP is fork-safe)
        pass

"""oneDNN's ISA levels: the names --isa and the configuration's `isa` take, the cap each one sets, and how a process
selects one. oneDNN reads its cap when it creates its first primitive, so the cap must be set before MXNet runs
anything; AMX also needs Linux's tile permission, which oneDNN 2.4.4 never asks for (without it: SIGILL)."""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

from ..errors import SegcheckError

# Short name -> oneDNN's cap value (DNNL_MAX_CPU_ISA), lowest first. The short names are the ISA keys segcheck
# reports, but for avx512_bf16, which runs INT8 on the same VNNI kernels and reports as avx512_vnni.
CAPS = {"sse41": "SSE41", "avx": "AVX", "avx2": "AVX2", "avx512": "AVX512_CORE", "avx512_vnni": "AVX512_CORE_VNNI",
        "avx512_bf16": "AVX512_CORE_BF16", "amx": "AVX512_CORE_AMX"}
# oneDNN's own spellings are accepted too.
ALIASES = {"avx512_core": "avx512", "avx512_core_vnni": "avx512_vnni", "vnni": "avx512_vnni",
           "avx512_core_bf16": "avx512_bf16", "avx512_core_amx": "amx", **{k: k for k in CAPS}}
# The ISA keys baseline rows and minimums are filed under, lowest first: the level INT8 dispatches to (avx_vnni: a VNNI
# CPU without AVX-512, which this oneDNN has no cap for). A level's key is its name, but where INT8 runs as a lower one.
KEYS = ("sse4", "avx", "avx2", "avx_vnni", "avx512", "avx512_vnni", "amx")
LEVEL_KEYS = {"sse41": "sse4", "avx512_bf16": "avx512_vnni"}
# The levels of distinct INT8 kernels this oneDNN can be capped at, for measuring every one (segcheck isa-bench).
INT8_LEVELS = ("avx2", "avx512", "avx512_vnni", "amx")
# The variables oneDNN reads, by generation: DNNL (1.x-2.x), ONEDNN (2.x and later), MKLDNN (MKL-DNN 0.x/1.0).
VARIABLES = ("DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "MKLDNN_MAX_CPU_ISA")
# What each level needs from the CPU (flags of /proc/cpuinfo).
NEEDS = {"sse41": ("sse4_1",), "avx": ("avx",), "avx2": ("avx2",), "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
         "avx512_vnni": ("avx512_vnni",), "avx512_bf16": ("avx512_bf16",), "amx": ("amx_tile", "amx_int8")}
ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA, SYS_ARCH_PRCTL = 0x1023, 18, 158


def cpu_flags() -> set:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(match.group(1).split()) if match else set()


def cpu_model() -> str:
    """The CPU's model name (provenance beside the ISA key)."""
    try:
        match = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return "unknown"
    return match.group(1).strip() if match else "unknown"


def name(text: str) -> str:
    """The short name of an ISA level given by the user (avx2, avx512_core_vnni, amx, ...)."""
    key = str(text).strip().lower()
    if key not in ALIASES:
        every = "; one process runs under one cap: `segcheck isa-bench` measures every level" if key == "all" else ""
        raise SegcheckError(f"unknown ISA {text!r}; choose one of {', '.join(CAPS)} (or oneDNN's names: "
                            f"{', '.join(k for k in ALIASES if k not in CAPS)}){every}")
    return ALIASES[key]


def key_of(level: str) -> str:
    """The ISA key of a level (avx512_bf16 -> avx512_vnni: its INT8 runs on the VNNI kernels)."""
    return LEVEL_KEYS.get(level, level)


def supported(flags: set | None = None) -> list:
    """The ISA levels this CPU can run, lowest first."""
    flags = cpu_flags() if flags is None else flags

    def has(level):
        return all(f in flags for f in NEEDS[level])

    levels = []
    for level in ("sse41", "avx", "avx2", "avx512", "avx512_vnni"):
        if not has(level):
            break
        levels.append(level)
    if levels[-1:] == ["avx512_vnni"]:
        levels += [level for level in ("avx512_bf16", "amx") if has(level)]
    return levels


def effective_level(flags: set | None = None) -> str:
    """The level oneDNN runs at in this process: the cap's, where the CPU has it, else the CPU's highest."""
    levels = supported(flags)
    capped = next((level for level, cap in CAPS.items() if cap == current_cap()), None)
    return capped if capped in levels else (levels[-1] if levels else "unknown")


def current_cap() -> str:
    """The cap in force in this process's environment (oneDNN's value, e.g. AVX2), or '' for none."""
    return next((os.environ[v] for v in VARIABLES if os.environ.get(v)), "")


def request_amx() -> None:
    """Ask Linux for AMX tile state for this process; SegcheckError saying why when the CPU or kernel refuses."""
    flags = cpu_flags()
    if not all(f in flags for f in NEEDS["amx"]):
        raise SegcheckError(f"AMX was asked for, but this CPU ({cpu_model()}) has no AMX (no amx_tile/amx_int8 in "
                            "/proc/cpuinfo); pick another --isa or run on a CPU with AMX (Sapphire Rapids or later)")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0:
        errno = ctypes.get_errno()
        raise SegcheckError(f"AMX was asked for, but Linux refused the tile permission (arch_prctl ARCH_REQ_XCOMP_PERM: "
                            f"{os.strerror(errno)}); AMX needs Linux 5.16 or later")


def _within_cpu(level: str, source: str) -> None:
    """A cap above what this CPU runs would change nothing (oneDNN runs the CPU's own highest level): an error naming
    `source` and the flags the CPU lacks. AMX is left to request_amx, which says what a CPU or a kernel without it lacks."""
    flags = cpu_flags()
    levels = supported(flags)
    if level == "amx" or level in levels or not levels:
        return
    order = list(NEEDS)
    lacking = [f for above in order[order.index(levels[-1]) + 1: order.index(level) + 1] for f in NEEDS[above] if f not in flags]
    raise SegcheckError(f"{source} asks for {level}, but this CPU ({cpu_model()}) runs oneDNN at most at {levels[-1]} "
                        f"(no {'/'.join(lacking)} in /proc/cpuinfo), so the cap would change nothing; choose one of "
                        f"{', '.join(levels)}, or run on a CPU that has {level}")


def environment_for(level: str) -> dict:
    """The environment variables that cap oneDNN at `level` (every generation's name)."""
    return {v: CAPS[level] for v in VARIABLES}


_PROCESS: dict = {}  # the cap this process runs under, fixed the first time segcheck selects one


def select(level: str | None, source: str) -> str:
    """Cap oneDNN at `level` for the rest of this process (None: leave the cap, if any, as the environment set it),
    asking for AMX's tile permission where needed; return the cap in force.

    A process keeps the cap it was first given: oneDNN reads it once, so asking for another later (an in-process
    inner run, a command after the gate) is an error naming `source` (the option or key that asked).
    """
    wanted = CAPS[name(level)] if level else current_cap()
    if "cap" in _PROCESS and _PROCESS["cap"] != wanted:
        raise SegcheckError(f"{source}: this process already runs oneDNN capped at {_PROCESS['cap'] or 'none (its own choice)'}, "
                            f"and oneDNN reads its cap only once; run {wanted or 'it without a cap'} in a new process")
    if level:
        _within_cpu(name(level), source)
        if wanted == CAPS["amx"] and not _PROCESS.get("amx"):
            request_amx()
            _PROCESS["amx"] = True
        os.environ.update(environment_for(name(level)))
    _PROCESS["cap"] = wanted
    return wanted

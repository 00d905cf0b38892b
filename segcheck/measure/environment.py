"""What the numbers were measured on: MXNet and oneDNN versions, the ISA oneDNN dispatches to, threads.

The ISA comes from oneDNN itself (its verbose log, read once in a subprocess and cached), because
that, not the CPU's marketing name, decides whether INT8 runs on VNNI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from .. import atomic
from ..errors import SegcheckError

_PROBE = (
    "import mxnet as mx\n"
    "x = mx.nd.ones((1, 3, 8, 8)); w = mx.nd.ones((4, 3, 3, 3))\n"
    "mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=4, no_bias=True).wait_to_read()\n"
)


def cpu_flags() -> set:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(match.group(1).split()) if match else set()


def isa_from_text(text: str) -> str:
    """oneDNN's ISA description reduced to a short key: avx512_vnni, avx512, avx2, ..."""
    lowered = text.lower()
    if "amx" in lowered:
        return "amx"
    if "dl boost" in lowered or "vnni" in lowered:
        return "avx512_vnni" if "512" in lowered else "avx_vnni"
    if "avx-512" in lowered or "avx512" in lowered:
        return "avx512"
    if "avx2" in lowered:
        return "avx2"
    if "avx" in lowered:
        return "avx"
    return "sse4"


def isa_from_flags(flags: set) -> str:
    if "amx_int8" in flags:
        return "amx"
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx_vnni" in flags:
        return "avx_vnni"
    return "avx2" if "avx2" in flags else ("avx" if "avx" in flags else "sse4")


def mxnet_distribution() -> tuple[str, str]:
    for dist in ("mxnet", "mxnet-mkl"):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "mxnet", "unknown"


def probe_onednn() -> dict:
    """Run one convolution with oneDNN's verbose log on and read its version and ISA."""
    env = dict(os.environ, MKLDNN_VERBOSE="1", DNNL_VERBOSE="1")
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
        log = out.stdout + out.stderr
    except (OSError, subprocess.TimeoutExpired):
        log = ""
    version = re.search(r"(?:oneDNN|MKL-DNN|DNNL)\s+v?(\d+\.\d+(?:\.\d+)?)", log)
    isa = re.search(r"isa:([^\n]*)|Detected ISA is ([^\n]*)", log)
    return {
        "onednn": version.group(1) if version else "unknown",
        "isa": isa_from_text(next(g for g in isa.groups() if g)) if isa else isa_from_flags(cpu_flags()),
    }


# What the probe found, by environment key, for this process: the machine does not change under a running process,
# so runs in the same process with other cache folders (the tests' inner runs) do not probe again
_PROBED: dict = {}


def fingerprint(cache_dir) -> dict:
    """The environment key of baseline rows: backend, its version, oneDNN version and ISA (cached on disk)."""
    dist, version = mxnet_distribution()
    flags = sorted(cpu_flags())
    key = hashlib.sha1(json.dumps([dist, version, flags, sys.executable]).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"environment-{key}.json"
    try:
        onednn = json.loads(path.read_text())
    except (OSError, ValueError):
        onednn = _PROBED.get(key) or probe_onednn()
        try:
            atomic.write_json(path, onednn)
        except (OSError, SegcheckError):  # an unwritable cache only costs the probe next time
            pass
    _PROBED[key] = onednn
    return {"mxnet": version if dist == "mxnet" else f"{dist} {version}", "onednn": onednn["onednn"], "isa": onednn["isa"]}


def threads() -> int:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else os.cpu_count() or 1

"""What the numbers were measured on: MXNet and oneDNN versions, the ISA oneDNN dispatches to, the CPU, threads.

The ISA comes from oneDNN itself (its verbose log, read once in a subprocess under this process's ISA cap and
cached), because that, not the CPU's marketing name, decides whether INT8 runs on VNNI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from .. import atomic
from ..config import isa
from ..config import threads as omp
from ..errors import SegcheckError

# The tile permission AMX needs (config.isa.request_amx), asked for before MXNet loads in the probe's own process.
_AMX_PERMISSION = (
    "import ctypes\n"
    f"ctypes.CDLL(None).syscall({isa.SYS_ARCH_PRCTL}, {isa.ARCH_REQ_XCOMP_PERM}, {isa.XFEATURE_XTILEDATA})\n"
)
_PROBE = (
    "import mxnet as mx\n"
    "x = mx.nd.ones((1, 3, 8, 8)); w = mx.nd.ones((4, 3, 3, 3))\n"
    "mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=4, no_bias=True).wait_to_read()\n"
)


# A run is filed under the ISA key oneDNN's own description of what it dispatches reduces to (config.isa.KEYS); the
# level's own name is kept beside the key (onednn_isa: avx512_bf16 runs INT8 on the VNNI kernels, key avx512_vnni).
KEY_FIELDS = ("mxnet", "onednn", "isa")  # what baseline rows and golden records are keyed by; the rest is provenance
UNKNOWN = "unknown"  # a part of the environment the probe could not read


def isa_from_text(text: str) -> str:
    """oneDNN's ISA description reduced to a short key: amx, avx512_vnni, avx512, avx2, ..."""
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


def level_from_text(text: str) -> str:
    """oneDNN's ISA description as its level's name (isa.CAPS's keys): avx512_bf16 where bfloat16 is supported."""
    lowered = text.lower()
    if "amx" not in lowered and "bfloat16" in lowered:
        return "avx512_bf16"
    key = isa_from_text(text)
    return next((level for level, k in isa.LEVEL_KEYS.items() if k == key and level != "avx512_bf16"), key)


def mxnet_distribution() -> tuple[str, str]:
    for dist in ("mxnet", "mxnet-mkl"):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "mxnet", UNKNOWN


def probe_onednn() -> dict:
    """Run one convolution with oneDNN's verbose log on, under this process's ISA cap, and read its version and ISA."""
    env = dict(os.environ, MKLDNN_VERBOSE="1", DNNL_VERBOSE="1", ONEDNN_VERBOSE="1")
    code = (_AMX_PERMISSION if isa.current_cap() == isa.CAPS["amx"] else "") + _PROBE
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        log = out.stdout + out.stderr
    except (OSError, subprocess.TimeoutExpired):
        log = ""
    version = re.search(r"(?:oneDNN|MKL-DNN|DNNL)\s+v?(\d+\.\d+(?:\.\d+)?)", log)
    found = re.search(r"isa:([^\n]*)|Detected ISA is ([^\n]*)", log)
    text = next(g for g in found.groups() if g).strip() if found else ""
    level = level_from_text(text) if text else isa.effective_level()  # no log: what the cap and the CPU allow
    return {
        "onednn": version.group(1) if version else UNKNOWN,
        "isa": isa_from_text(text) if text else isa.key_of(level),
        "onednn_isa": level,
        "probed": bool(version and text),
    }


# What the probe found, by environment key, for this process: the machine does not change under a running process,
# so runs in the same process with other cache folders (the tests' inner runs) do not probe again
_PROBED: dict = {}


@dataclass(frozen=True)
class Environment:
    """What a run measures on: the key its baseline rows and golden records are filed under (MXNet, oneDNN, the ISA
    key), and provenance reported beside every figure (oneDNN's own ISA level, the cap in force, the CPU model, the
    threads: a calibration on another thread count may round a range apart; 0 where unknown)."""

    mxnet: str
    onednn: str
    isa: str
    onednn_isa: str = "unknown"
    cap: str = ""
    cpu: str = "unknown"
    threads: int = 0

    def key(self) -> dict:
        return {k: getattr(self, k) for k in KEY_FIELDS}

    def provenance(self) -> dict:
        """What is reported beside the key: oneDNN's own ISA level, the cap in force ('' for none), the CPU model, the
        threads."""
        return {k: v for k, v in asdict(self).items() if k not in KEY_FIELDS}

    def to_dict(self) -> dict:
        return asdict(self)


def fingerprint(cache_dir) -> Environment:
    """This process's environment (the probe is cached on disk under everything that changes what oneDNN dispatches:
    the MXNet distribution and version, the CPU's flags, the interpreter and the ISA cap)."""
    dist, version = mxnet_distribution()
    caps = {v: os.environ[v] for v in isa.VARIABLES if os.environ.get(v)}
    key = hashlib.sha1(json.dumps([dist, version, sorted(isa.cpu_flags()), sys.executable, caps]).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"environment-{key}.json"
    try:
        onednn = json.loads(path.read_text())
        onednn["onednn_isa"]  # a probe written before the ISA level was kept is probed again
    except (OSError, ValueError, KeyError, TypeError):
        onednn = _PROBED.get(key) or probe_onednn()
        if onednn.get("probed"):  # a probe that read no log is not kept: the next run probes again
            try:
                atomic.write_json(path, onednn)
            except (OSError, SegcheckError):  # an unwritable cache only costs the probe next time
                pass
    _PROBED[key] = onednn
    return Environment(version if dist == "mxnet" else f"{dist} {version}", onednn["onednn"], onednn["isa"],
                       onednn["onednn_isa"], isa.current_cap(), isa.cpu_model(), threads())


def threads() -> int:
    """The OpenMP threads MXNet runs with here (config.threads)."""
    return omp.in_force()

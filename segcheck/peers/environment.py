"""The peer runtimes' virtualenv (ONNX Runtime, OpenVINO, NNCF, pinned): where it lives, whether it is usable, and why not.

The peers need numpy >= 1.24, which mxnet 1.9.1 cannot import, so they never load into this process: they run in
their own interpreter (peers.protocol), which this module finds and checks; peers.network_install makes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from ..errors import MissingResource, SegcheckError

ENV_VARIABLE = "SEGCHECK_PEER_ENV"
INSTALL_COMMAND = "segcheck peer install"
REQUIREMENTS = Path(__file__).with_name("peer-requirements.txt")  # the peer environment's pins, shipped in the package
MARKER = "segcheck-peer.json"  # written last by install(): a folder without it is no peer environment
BUILDING = "segcheck-peer.building"  # written first by install(): a folder with it is segcheck's to replace
CHECK = "import numpy, onnxruntime, onnxruntime.quantization, openvino; print(numpy.__version__)"
CHECK_TIMEOUT_S = 120

# what python_of found, by folder, for this process: importing the runtimes takes a second or two
_FOUND: dict = {}


class PeerMissing(MissingResource):
    """No usable peer environment: the peer cases skip, naming the command that makes one."""


class PeerEnvironmentMissing(PeerMissing):
    """No usable peer virtualenv (none, unfinished, other pins, runtimes that do not import): a CI gate whose models
    name peers fails, since its peer cases would compare nothing (an MXNet without an exporter, which no install can
    fix here, still skips)."""


def environment_folder() -> Path:
    """Where the peer virtualenv lives: $SEGCHECK_PEER_ENV, else a folder per set of pins in the user's cache
    (~/.cache/segcheck-peers/<pins>), outside segcheck's own cache: a hermetic run (a fresh $SEGCHECK_CACHE_DIR, as
    CI's) reuses the environment these pins built, and other pins never overwrite it."""
    chosen = os.environ.get(ENV_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("segcheck-peers")).expanduser() / requirements_digest()[:16]


def interpreter(folder: Path) -> Path:
    """The virtualenv's own python."""
    return Path(folder) / "bin" / "python"


def requirements_file() -> Path:
    """The pinned requirements of the peer environment."""
    if not REQUIREMENTS.is_file():
        raise SegcheckError(f"{REQUIREMENTS}: the peer requirements are missing from this segcheck installation; "
                            "reinstall segcheck (pip install -e . from its repository)")
    return REQUIREMENTS


def requirements_digest() -> str:
    """sha256 of the pinned requirements' package lines, so that an environment built from other pins is stale."""
    lines = [line.strip() for line in requirements_file().read_text().splitlines()]
    return hashlib.sha256("\n".join(line for line in lines if line and not line.startswith("#")).encode()).hexdigest()


def python_of(folder) -> Path | None:
    """The peer interpreter in `folder` when install() finished it for the current pins and it imports the
    runtimes (checked once per process, in a subprocess), else None (missing_message says why)."""
    return _found(folder)[0]


def forget(folder) -> None:
    """Check `folder` again at the next python_of (install() changes it)."""
    _FOUND.pop(Path(folder).expanduser().resolve(), None)


def _found(folder) -> tuple:
    folder = Path(folder).expanduser().resolve()
    if folder not in _FOUND:
        _FOUND[folder] = _check(folder)
    return _FOUND[folder]


def _check(folder: Path) -> tuple:
    """(interpreter, "") for a usable environment, else (None, why not)."""
    python = interpreter(folder)
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        unfinished = (folder / BUILDING).is_file()
        return None, f"{'an unfinished' if unfinished else 'no'} peer environment (ONNX Runtime, OpenVINO) at {folder}"
    if not isinstance(marker, dict) or marker.get("requirements") != requirements_digest():
        return None, f"the peer environment at {folder} was built from other pins than {REQUIREMENTS.name}"
    if not python.exists():
        return None, f"the peer environment at {folder} has no {python.relative_to(folder)}"
    try:
        done = subprocess.run([str(python), "-I", "-c", CHECK], capture_output=True, text=True, timeout=CHECK_TIMEOUT_S,
                              env=peer_env())
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"the peer environment at {folder} does not start ({type(err).__name__})"
    if done.returncode != 0:
        last = last_text(done.stderr + done.stdout)
        return None, f"the peer environment at {folder} does not import its runtimes ({last or f'exit status {done.returncode}'})"
    return python, ""


def missing_message(folder) -> str:
    """Why a test or command cannot run the peers, and the command that fixes it."""
    why = _found(folder)[1] or f"no peer environment (ONNX Runtime, OpenVINO) at {folder}"
    return f"{why}; create it with `{INSTALL_COMMAND}` (or point ${ENV_VARIABLE} at one)"


def peer_env() -> dict:
    """This process's environment without what would make the peer interpreter import this one's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def last_text(text: str) -> str:
    """The last non-blank line of a process's output: the error it names."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def usable_python() -> Path:
    """The peer environment's python; PeerMissing, saying why and how to make one, where it is not usable."""
    folder = environment_folder()
    python = python_of(folder)
    if python is None:
        raise PeerEnvironmentMissing(missing_message(folder))
    return python



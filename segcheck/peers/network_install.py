"""Network code: `segcheck peer install` builds the peer virtualenv with pip from the package registry (the
only network access outside `segcheck fetch`; never run by the gate or its tests against a real host)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .. import atomic
from ..errors import SegcheckError
from .environment import (BUILDING, CHECK, ENV_VARIABLE, INSTALL_COMMAND, MARKER, forget, peer_env, interpreter,
                          python_of, requirements_digest, requirements_file)


def base_python() -> str:
    """The interpreter to build the virtualenv with: this one's base interpreter (segcheck needs Python 3.11)."""
    for candidate in (getattr(sys, "_base_executable", ""), shutil.which("python3.11"), sys.executable):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SegcheckError("no python3.11 to build the peer environment with; install Python 3.11")


def install(folder, out=sys.stdout) -> Path:
    """Create the peer virtualenv in `folder` from the pinned requirements and return its interpreter.

    A half-made environment is never taken for a made one: the marker file that python_of looks for is written
    last. Only a folder that is empty or that install() made is replaced; any other is left alone.
    """
    folder = Path(folder).expanduser().resolve()
    requirements = requirements_file()
    atomic.ensure_writable(folder.parent, f"choose another folder with ${ENV_VARIABLE}")
    forget(folder)
    if python_of(folder) is not None:
        print(f"{folder}: the peer environment is already there (remove the folder to build it again)", file=out)
        return interpreter(folder)
    forget(folder)
    if folder.exists():
        ours = (folder / MARKER).is_file() or (folder / BUILDING).is_file()
        if any(folder.iterdir()) and not ours:
            raise SegcheckError(f"{folder}: exists and is not a peer environment that segcheck made, so it is not replaced; "
                                f"choose another folder with ${ENV_VARIABLE} or empty it")
        print(f"{folder}: removing the unfinished or outdated peer environment", file=out)
        shutil.rmtree(folder)
    folder.mkdir()
    (folder / BUILDING).write_text(f"segcheck is building this peer environment: unfinished until {MARKER} exists\n")
    steps = ([base_python(), "-m", "venv", str(folder)],
             [str(interpreter(folder)), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
              "-r", str(requirements)])
    for step in steps:
        print(f"$ {' '.join(step)}", file=out)
        done = subprocess.run(step, capture_output=True, text=True, env=peer_env())
        if done.returncode != 0:
            lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("ERROR")] or lines or [f"exit status {done.returncode}"]
            raise SegcheckError(f"{folder}: creating the peer environment failed at `{' '.join(step[:4])} ...` "
                                f"({errors[-1]}); fix that and run `{INSTALL_COMMAND}` again")
    atomic.write_json(folder / MARKER, {"requirements": requirements_digest(), "from": str(requirements)})
    (folder / BUILDING).unlink()
    python = python_of(folder)
    if python is None:
        raise SegcheckError(f"{folder}: the peer environment was installed but does not import its runtimes; "
                            f"run `{interpreter(folder)} -c \"{CHECK}\"` to see why")
    print(f"peer environment ready: {python}", file=out)
    return python



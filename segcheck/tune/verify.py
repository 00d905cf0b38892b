"""The verifying gate run of a chosen recipe: segcheck's suite, the model's INT8 checks and latency benchmarks, in a
pytest process of its own, on a copy of the configuration that holds the recipe (beside it, so its relative paths hold)
and with the run's options."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config.project import Project
from ..config.recipes import CalibRecipe
from . import recipe_file

TIMEOUT_S = 3600


@dataclass(frozen=True)
class Verified:
    passed: bool
    command: str
    tail: tuple  # the last lines pytest printed


def _copy(project: Project, index: int, model: str, recipe: CalibRecipe, defaults: CalibRecipe) -> Path:
    text = recipe_file.plain(recipe_file.with_recipe(project.path.read_text(encoding="utf-8"), project.path, index, model,
                                                     recipe, defaults), project.path)
    handle, name = tempfile.mkstemp(prefix=".segcheck-tune-", suffix=".toml", dir=project.folder)
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(name)


def gate(project: Project, index: int, model: str, recipe: CalibRecipe, defaults: CalibRecipe, options: list) -> Verified:
    """Run the gate of model `model` (the project's `index`th) with `recipe`; `options`: the run's own, as argv."""
    path = _copy(project, index, model, recipe, defaults)
    args = [sys.executable, "-m", "pytest", "--pyargs", "segcheck.plugin.suite", "-q", "-p", "no:cacheprovider",
            "--segcheck-config", str(path), *options, "-k", f"{model} and (int8 or test_latency) and not peer"]
    command = " ".join(args[1:])
    try:
        done = subprocess.run(args, cwd=project.folder, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Verified(False, command, (f"the gate run took more than {TIMEOUT_S} s and was stopped",))
    finally:
        path.unlink(missing_ok=True)
    return Verified(done.returncode == 0, command, tuple(done.stdout.strip().splitlines()[-12:]))

"""`segcheck tune --write`: the chosen recipe into the model's [[models]].int8 table of segcheck.toml (or
[tool.segcheck] in pyproject.toml), edited in place by tomlkit so that the file's comments and layout stay, written
atomically, with the diff shown."""

from __future__ import annotations

import difflib
from pathlib import Path

import tomlkit
import tomlkit.items

from .. import atomic
from ..config.project import RECIPE_FIELDS
from ..config.recipes import CalibRecipe
from ..errors import SegcheckError


def _entries(doc, path: Path):
    table = doc.get("tool", {}).get("segcheck") if path.name == "pyproject.toml" else doc
    models = table.get("models") if table is not None else None
    if models is None:
        raise SegcheckError(f"{path}: has no [[models]] tables to write a recipe into")
    return models


def with_recipe(text: str, path: Path, model: str, recipe: CalibRecipe, defaults: CalibRecipe) -> str:
    """`text` (the configuration at `path`) with model `model`'s int8 table set to `recipe`: every key it holds is
    updated, a field that differs from the tier's default (`defaults`) is added, the rest of the file is kept."""
    doc = tomlkit.parse(text)
    entry = next((m for m in _entries(doc, path) if m.get("name", m.get("network")) == model), None)
    if entry is None:
        raise SegcheckError(f"{path}: no [[models]] table is named {model!r}; tune a configured model")
    table = entry.get("int8", tomlkit.inline_table())
    if "export" in table:
        raise SegcheckError(f"{path}: {model} is gated on a shipped INT8 export (int8.export), which has no recipe to write")
    values = dict(table)
    for key, name in RECIPE_FIELDS.items():
        value, default = (list(v) if isinstance(v, tuple) else v for v in (getattr(recipe, name), getattr(defaults, name)))
        if key in values or value != default:
            values[key] = value
    if isinstance(table, tomlkit.items.InlineTable):  # rebuilt, so that its keys are spaced as tomlkit spaces a new one
        rebuilt = tomlkit.inline_table()
        rebuilt.update(values)
        rebuilt.trivia.comment, rebuilt.trivia.comment_ws = table.trivia.comment, table.trivia.comment_ws
        entry["int8"] = rebuilt
    else:
        table.update(values)
    return tomlkit.dumps(doc)


def diff(old: str, new: str, path: Path) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{path} (before)", f"{path} (tuned)"))


def write(path: Path, model: str, recipe: CalibRecipe, defaults: CalibRecipe) -> str:
    """Write the recipe into the configuration at `path`, atomically; the diff (empty: nothing changed)."""
    old = path.read_text()
    new = with_recipe(old, path, model, recipe, defaults)
    if new != old:
        atomic.write_text(path, new)
    return diff(old, new, path)

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


def with_recipe(text: str, path: Path, index: int, model: str, recipe: CalibRecipe, defaults: CalibRecipe) -> str:
    """`text` (the configuration at `path`) with its `index`th [[models]] table (model `model`) given `recipe` as its
    int8 table: every key it holds is updated, a field that differs from the tier's default (`defaults`) is added,
    the rest of the file is kept."""
    doc = tomlkit.parse(text)
    entries = _entries(doc, path)
    if not 0 <= index < len(entries):
        raise SegcheckError(f"{path}: has no model {model!r} at [[models]] {index + 1}; tune a configured model")
    entry = entries[index]
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


def plain(text: str, path: Path) -> str:
    """A configuration as a segcheck.toml of its own: [tool.segcheck] of a pyproject.toml, else `text` itself."""
    return tomlkit.dumps(tomlkit.parse(text)["tool"]["segcheck"]) if path.name == "pyproject.toml" else text


def diff(old: str, new: str, path: Path) -> str:
    """The unified diff of the configuration before and after tuning."""
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{path} (before)", f"{path} (tuned)"))


def write(path: Path, index: int, model: str, recipe: CalibRecipe, defaults: CalibRecipe) -> str:
    """Write the recipe into the configuration at `path`, atomically; the diff (empty: nothing changed)."""
    old = path.read_text(encoding="utf-8")
    new = with_recipe(old, path, index, model, recipe, defaults)
    if new != old:
        atomic.write_text(path, new)
    return diff(old, new, path)

"""A strict reader of parsed JSON or TOML documents: the first problem is one error naming the file and the dotted key."""

from __future__ import annotations

import math
from pathlib import Path

from .errors import SegcheckError


class Reader:
    """Checks values of a parsed document; every failure raises `error(f"{path}: key '...': {problem}; {remedy}")`."""

    def __init__(self, path: Path, remedy: str, error=SegcheckError):
        self.path, self.remedy, self.error = path, remedy, error

    def fail(self, key: str, problem: str):
        shown = key.encode("unicode_escape").decode("ascii")  # a key holding a newline stays on one line
        raise self.error(f"{self.path}: key '{shown}': {problem}; {self.remedy}")

    @staticmethod
    def join(key: str, sub) -> str:
        return f"{key}.{sub}" if key else str(sub)

    def obj(self, value, key: str, required: tuple = (), optional: tuple = (), free: bool = False) -> dict:
        """A table with the `required` keys and no others than `optional` (any keys when `free`)."""
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {type(value).__name__}")
        for k in required:
            if k not in value:
                self.fail(self.join(key, k), "missing")
        if not free:
            for k in value:
                if k not in required and k not in optional:
                    self.fail(self.join(key, k), "unknown key")
        return value

    def number(self, value, key: str, lo: float = 0.0, hi: float = math.inf) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"expected a number, got {value!r}")
        if not lo <= value <= hi:
            self.fail(key, f"{value} is outside [{lo}, {hi}]")
        return float(value)

    def integer(self, value, key: str, lo: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {value!r}")
        if value < lo:
            self.fail(key, f"{value} is below {lo}")
        return value

    def string(self, value, key: str, choices: tuple = ()) -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {value!r}")
        if choices and value not in choices:
            self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def boolean(self, value, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
        return value

    def strings(self, value, key: str) -> tuple:
        if not isinstance(value, list):
            self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(self.string(v, f"{key}[{i}]") for i, v in enumerate(value))

    def flat(self, value, key: str) -> dict:
        """A table of strings and numbers (environment and setting descriptions)."""
        self.obj(value, key, free=True)
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                self.fail(self.join(key, k), f"expected a string or number, got {v!r}")
        return dict(value)

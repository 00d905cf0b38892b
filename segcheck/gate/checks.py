"""The gate's checks and their outcomes: the statuses a check reports, the order in which a model's status names
its first failing check, and the seed's spelling of INT8 as s8 (s8 latency, s8 mIoU)."""

from __future__ import annotations

from dataclasses import dataclass

PASS, FAIL, IMPROVED, SKIP, ERROR, CHANGED = "PASS", "FAIL", "IMPROVED", "SKIP", "ERROR", "CHANGED"
FAILING = (FAIL, IMPROVED, ERROR)
SEED_PREFIX = {"fp32": "fp32", "int8": "s8"}
# The order in which a model's status names its first failing check.
CHECK_ORDER = ("fp32-accuracy", "int8-accuracy", "int8-drop", "int8-class-drop", "int8-graph", "int8-ranges",
               "int8-layers", "fp32-digest", "int8-digest", "fp32-graph", "fp32-segments", "deploy", "fp32-latency",
               "int8-latency", "speedup")


@dataclass(frozen=True)
class Check:
    """The outcome of one gate test of a model, as its report said."""

    status: str
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILING

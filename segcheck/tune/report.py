"""What `segcheck tune --json` writes for each model: its trials, the choice, why the search stopped and what is left,
and, for a recipe other than the configured one, its speed cost and whether the verifying gate run passed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .search import Outcome
from .speed import SpeedCost


@dataclass(frozen=True)
class Tuned:
    """One model's search and what became of its choice."""

    outcome: Outcome
    speed_cost: SpeedCost | None = None  # where a recipe other than the configured one was chosen
    verified: bool | None = None  # None: no gate run verified it (nothing chosen, the configured recipe, --no-verify)

    def to_dict(self) -> dict:
        found = self.outcome
        doc = {"trials": [{**t.to_dict(), "passed": t.passed, "speedup": round(t.speedup, 3)} for t in found.trials],
               "chosen": found.chosen.label if found.chosen else None, "stopped": found.reason, "left": found.left}
        if self.speed_cost is not None:
            doc["speed_cost"] = {**asdict(self.speed_cost), "ratio": round(self.speed_cost.ratio, 4)}
        if self.verified is not None:
            doc["verified"] = self.verified
        return doc

"""Peak memory of a run: the high-water marks of the resident set (getrusage) of this process and of its largest child
(forked cases, the peers' runner, subprocesses), and the steps that raised this process's mark, largest first."""

from __future__ import annotations

import resource
from dataclasses import dataclass, field

NOTICED_MB = 16.0  # a rise smaller than this is allocator noise, not a step's footprint


def peak_mb() -> float:
    """This process's peak resident set so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_mb() -> float:
    """The largest peak resident set of a finished child of this process, MB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


@dataclass
class Watermark:
    """Where this process's peak rose: `step(name)` after each step (a test) credits that step with the rise."""

    last_mb: float = field(default_factory=peak_mb)
    rises: dict = field(default_factory=dict)  # step -> MB it added to the peak

    def step(self, name: str) -> None:
        now = peak_mb()
        if now - self.last_mb >= NOTICED_MB:
            self.rises[name] = self.rises.get(name, 0.0) + now - self.last_mb
        self.last_mb = max(self.last_mb, now)

    def largest(self, count: int = 5) -> tuple:
        """The `count` steps that raised the peak most: ((step, MB), ...), largest first."""
        return tuple(sorted(self.rises.items(), key=lambda item: -item[1])[:count])

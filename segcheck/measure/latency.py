"""Latency of one forward pass, the same for the `segcheck --benchmark` command and the gate's benchmarks.

MXNet is asynchronous: the clock stops only when the output exists (wait_to_read).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..models.build import logits

# The gate's benchmarks run rounds until pytest-benchmark knows the mean to +-2 % (at its 99 % confidence),
# at least --benchmark-min-rounds and within --benchmark-max-time: a busy host gets more rounds.
PRECISION = 0.02


def forward(model, x):
    """Run `model` on `x` and wait for its main output."""
    out = logits(model, x)
    out.wait_to_read()
    return out


@dataclass(frozen=True)
class Timing:
    """Seconds per forward pass over the timed iterations."""

    times: tuple

    @property
    def mean(self) -> float:
        return sum(self.times) / len(self.times)

    @property
    def min(self) -> float:
        return min(self.times)


def measure(model, x, iterations: int, warmup: int) -> Timing:
    """Time `iterations` waited forward passes after `warmup` untimed ones."""
    for _ in range(warmup):
        forward(model, x)
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        forward(model, x)
        times.append(time.perf_counter() - started)
    return Timing(tuple(times))


def alternating(models, x, rounds: int, warmup: int = 3) -> list:
    """A Timing of each of `models`, timed one waited forward pass each in turn for `rounds` rounds (after `warmup`
    untimed passes each), the order reversed every other round: drift of a shared host (a slow second) falls on all of
    them alike, and none always runs first, so their ratios hold."""
    for model in models:
        measure(model, x, 0, warmup)
    times = [[] for _ in models]
    for r in range(rounds):
        for k in range(len(models)) if r % 2 == 0 else reversed(range(len(models))):
            times[k].extend(measure(models[k], x, 1, 0).times)
    return [Timing(tuple(t)) for t in times]

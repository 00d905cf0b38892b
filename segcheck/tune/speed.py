"""The chosen recipe's speed cost: its INT8 latency against the configured recipe's, timed interleaved in one process
with enough rounds to resolve one layer kept in FP32, which at 64 px costs less than a single trial's timing can see."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.recipes import CalibRecipe
from ..measure import latency
from ..models import pipeline
from .trial import Bench

ROUNDS = 40  # interleaved rounds per model


@dataclass(frozen=True)
class SpeedCost:
    """The chosen recipe's INT8 latency against the configured recipe's, timed interleaved in one process."""

    chosen_ms: float  # median of the rounds
    configured_ms: float
    chosen_iqr_ms: float
    configured_iqr_ms: float
    rounds: int
    crop_size: int

    @property
    def ratio(self) -> float:
        """How much slower the chosen INT8 runs (1.05: 5% slower)."""
        return self.chosen_ms / self.configured_ms

    def describe(self) -> str:
        return (f"INT8 {self.chosen_ms:.2f} ms with the chosen recipe against {self.configured_ms:.2f} ms with the "
                f"configured one at {self.crop_size} px: {self.ratio:.3f}x ({self.rounds} interleaved rounds each, "
                f"interquartile ranges {self.chosen_iqr_ms:.2f} and {self.configured_iqr_ms:.2f} ms)")


def cost(bench: Bench, chosen: CalibRecipe, configured: CalibRecipe, rounds: int = ROUNDS) -> SpeedCost:
    """Time both INT8 models (from the model cache) round after round, alternating, so that drift of the machine falls
    on both alike: at 64 px one layer kept in FP32 costs less than one benchmark's precision."""
    mc = bench.config
    models = [pipeline.int8_model(mc.with_(calib=r), r).block for r in (chosen, configured)]
    x = bench.layer_images[0]
    for model in models:
        latency.measure(model, x, 0, 3)
    times = [[], []]
    for _ in range(rounds):
        for k, model in enumerate(models):
            times[k].extend(latency.measure(model, x, 1, 0).times)
    ms = [1e3 * np.asarray(t) for t in times]
    iqr = [float(np.subtract(*np.percentile(m, [75, 25]))) for m in ms]
    return SpeedCost(round(float(np.median(ms[0])), 3), round(float(np.median(ms[1])), 3), round(iqr[0], 3),
                     round(iqr[1], 3), rounds, mc.crop_size)

"""The chosen recipe's speed cost: its INT8 latency against the configured recipe's (against FP32 where the configured
recipe's trial errored and left no INT8 model), timed interleaved in one process with enough rounds to resolve one layer
kept in FP32, which at 64 px costs less than a single trial's timing can see."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.recipes import CalibRecipe
from ..measure import latency
from ..models import pipeline
from .trial import Bench

ROUNDS = 40  # interleaved rounds per model


CONFIGURED, FP32 = "configured", "fp32"  # what the chosen recipe's INT8 is timed against (the JSON's `reference`)


@dataclass(frozen=True)
class SpeedCost:
    """The chosen recipe's INT8 latency against the configured recipe's INT8, timed interleaved in one process; against
    FP32 where the configured recipe's trial errored (MXNet refused its graph, its calibration crashed or hung)."""

    chosen_ms: float  # median of the rounds
    reference_ms: float
    chosen_iqr_ms: float
    reference_iqr_ms: float
    rounds: int
    crop_size: int
    reference: str = CONFIGURED

    @property
    def ratio(self) -> float:
        """The chosen INT8's latency over the reference's (against the configured INT8, 1.05: 5% slower)."""
        return self.chosen_ms / self.reference_ms

    def describe(self) -> str:
        rounds = (f"{self.rounds} interleaved rounds each, interquartile ranges {self.chosen_iqr_ms:.2f} and "
                  f"{self.reference_iqr_ms:.2f} ms")
        if self.reference == FP32:
            return (f"the configured recipe's trial errored, leaving no INT8 model of it to time; the chosen INT8 runs "
                    f"{self.chosen_ms:.2f} ms against FP32's {self.reference_ms:.2f} ms at {self.crop_size} px, a "
                    f"speed-up of {1 / self.ratio:.2f}x ({rounds})")
        return (f"INT8 {self.chosen_ms:.2f} ms with the chosen recipe against {self.reference_ms:.2f} ms with the "
                f"configured one at {self.crop_size} px: {self.ratio:.3f}x ({rounds})")


def cost(bench: Bench, chosen: CalibRecipe, configured: CalibRecipe | None, rounds: int = ROUNDS) -> SpeedCost:
    """Time the chosen INT8 model (from the model cache) and the configured one's (None: FP32 instead) round after
    round, alternating, so that drift of the machine falls on both alike: at 64 px one layer kept in FP32 costs less
    than one benchmark's precision."""
    mc = bench.config
    models = [pipeline.int8_model(mc.with_(calib=chosen), chosen).block,
              pipeline.int8_model(mc.with_(calib=configured), configured).block if configured else bench.fp32]
    ms = [1e3 * np.asarray(t.times) for t in latency.alternating(models, bench.layer_images[0], rounds)]
    iqr = [float(np.subtract(*np.percentile(m, [75, 25]))) for m in ms]
    return SpeedCost(round(float(np.median(ms[0])), 3), round(float(np.median(ms[1])), 3), round(iqr[0], 3),
                     round(iqr[1], 3), rounds, mc.crop_size, CONFIGURED if configured else FP32)

"""One model of a run (NNCF-style case): FP32 and INT8 built lazily, each evaluated at most once."""

from __future__ import annotations

from functools import cached_property

from . import data, pipeline
from .catalog import ModelSpec
from .config import RunConfig
from .errors import MissingResource
from .evaluate import Evaluation, evaluate


class ModelCase:
    """`on_missing(err)` decides what absent weights or data mean (the pytest wiring skips or fails)."""

    def __init__(self, spec: ModelSpec, config: RunConfig, on_missing):
        self.spec, self.config, self._on_missing = spec, config, on_missing
        self._evaluations = {}

    def _guard(self, build):
        try:
            return build()
        except MissingResource as err:
            self._on_missing(err)
            raise

    @cached_property
    def fp32(self):
        return self._guard(lambda: pipeline.fp32_net(self.config, self.spec))

    @cached_property
    def int8(self) -> pipeline.Int8Model:
        return self._guard(lambda: pipeline.int8_model(self.config, self.spec))

    def model(self, precision: str):
        return self.fp32 if precision == "fp32" else self.int8.block

    @cached_property
    def val(self) -> data.Split:
        return self._guard(lambda: pipeline.open_split(self.config, self.spec.dataset, "val"))

    def evaluation(self, precision: str) -> Evaluation:
        if precision not in self._evaluations:
            model = self.model(precision)
            self._evaluations[precision] = evaluate(
                model, self.val, data.first(self.val, self.config.num_images), self.config.batch_size,
                self.config.skip_bad, desc=f"evaluating {self.spec.name} {precision}",
            )
        return self._evaluations[precision]

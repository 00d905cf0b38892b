"""One model of a run (NNCF-style case): FP32 and INT8 built lazily, each evaluated at most once."""

from __future__ import annotations

from functools import cached_property

from ..config.run import ModelConfig
from ..data import loaders
from ..errors import MissingResource
from ..models import export, pipeline
from . import layers
from .evaluate import Evaluation, evaluate

LAYER_IMAGES = 2  # the fixed images (the split's first) per-layer error is measured on


class ModelCase:
    """`on_missing(err)` decides what absent weights or data mean (the pytest plugin skips or fails)."""

    def __init__(self, config: ModelConfig, on_missing):
        self.config, self._on_missing = config, on_missing
        self._evaluations = {}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def classes(self) -> tuple:
        return self.config.kind.classes

    def _guard(self, build):
        try:
            return build()
        except MissingResource as err:
            self._on_missing(err)
            raise

    @cached_property
    def fp32(self):
        return self._guard(lambda: pipeline.fp32_net(self.config))

    @cached_property
    def int8(self) -> pipeline.Int8Model:
        return self._guard(lambda: pipeline.int8_model(self.config))

    def preset(self, precision: str, model, evaluation: Evaluation | None = None) -> None:
        """Take a model (fp32: the block; int8: the Int8Model), and its evaluation if given, made elsewhere in
        this process: the self-checks reuse what their own session built."""
        self.__dict__[precision] = model
        if evaluation is not None:
            self._evaluations[precision] = evaluation

    _SHARED = ("fp32", "int8", "val", "fp32_symbol", "localisation")

    def adopt(self, other: ModelCase) -> None:
        """Take what a case of the same configuration made earlier in this process: its models, evaluations,
        FP32 graph and layer comparison (in-process reruns of the gate then redo only latency and the export round trip)."""
        if other.config != self.config:
            raise ValueError(f"{self.name}: a case of another configuration cannot be adopted")
        self.__dict__.update({key: other.__dict__[key] for key in self._SHARED if key in other.__dict__})
        self._evaluations.update(other._evaluations)

    def model(self, precision: str):
        return self.fp32 if precision == "fp32" else self.int8.block

    @cached_property
    def val(self) -> loaders.Split:
        return self._guard(lambda: pipeline.open_split(self.config, self.config.split))

    @cached_property
    def fp32_symbol(self) -> str:
        """The graph the fused FP32 model runs, as JSON (its fusion is checked)."""
        return export.graph_json(self.fp32)

    @cached_property
    def localisation(self) -> layers.Localisation:
        """Per-layer SQNR and cosine of INT8 against the fused FP32, and the low-margin flip rate, on fixed images."""
        images = [x for x, _, _ in loaders.batches(self.val, loaders.first(self.val, min(LAYER_IMAGES, len(self.val))), 1)]
        return layers.localise(self.fp32, self.int8.block, images)

    @cached_property
    def whole(self) -> loaders.Subset:
        """The images a run evaluates when not sharded (a shard evaluates a contiguous block of them)."""
        return loaders.Subset(self.config.split, tuple(self.val.ids[i] for i in loaders.first(self.val, self.config.num_images)))

    def evaluation(self, precision: str) -> Evaluation:
        if precision not in self._evaluations:
            model = self.model(precision)
            indices = loaders.shard(loaders.first(self.val, self.config.num_images), self.config.run.shard)
            self._evaluations[precision] = evaluate(
                model, self.val, indices, self.config.run.batch_size, self.config.run.skip_bad,
                desc=f"evaluating {self.name} {precision}",
            )
        return self._evaluations[precision]

"""A run's results as typed records, built from the gate tests' reports, and their JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..gate.checks import CHANGED, CHECK_ORDER, PASS, SKIP, Check

FORMAT = 4  # 3: CHANGED and REGRESSED verdicts, per-image agreement and output SQNR, INT8 keys, the run's strictness;
# 4: the run's memory and each model's footprint
READABLE = (3, 4)  # the formats this segcheck reads (3 has no memory figures)


def speedup(fp32_ms: float | None, int8_ms: float | None) -> float | None:
    """The INT8 speed-up over FP32, None where a latency is missing."""
    return fp32_ms / int8_ms if fp32_ms and int8_ms else None


@dataclass
class Figures:
    """One precision of one model: accuracy in percent, latency in milliseconds (minimum of the rounds)."""

    pixacc: float | None = None
    miou: float | None = None
    iou: list | None = None  # per class, percent; None where the class is absent from label and prediction
    latency_ms: float | None = None
    latency_median_ms: float | None = None
    latency_iqr_pct: float | None = None  # interquartile range of the rounds over their median, percent
    latency_rounds: int | None = None
    matrix: list | None = None  # the confusion matrix (rows: labels, columns: predictions) behind the figures
    per_image: list | None = None  # each image's matrix as [[row, column, count], ...], in subset order
    digest: str | None = None  # sha256 of the argmax predictions, image after image
    image_digests: list | None = None
    predicted: list | None = None  # predicted pixels per class
    cached: bool | None = None  # the figures come from an evaluation of an earlier run (measure.evaluation_cache)
    agreement: list | None = None  # INT8: per compared image, its pixels whose class equals FP32's, percent
    output_sqnr: list | None = None  # INT8: per compared image, its logits' SQNR against FP32's, dB


@dataclass
class ModelResult:
    name: str
    fp32: Figures = field(default_factory=Figures)
    int8: Figures = field(default_factory=Figures)
    subset: str = ""
    setting: dict = field(default_factory=dict)
    int8_share: float | None = None
    int8_source: str = ""
    baseline: dict = field(default_factory=dict)  # precision -> the baseline row its accuracy was judged against (seed's units)
    reference: dict = field(default_factory=dict)  # precision -> where that row was recorded, how it differs (baselines.Reference)
    accuracy_tolerances: dict = field(default_factory=dict)  # precision -> the tolerances its accuracy was judged at
    int8_key: str = ""  # what the INT8 figures are keyed by: the recipe's label, or the shipped file's digest
    classes: list = field(default_factory=list)  # the dataset's class names, in label order
    tolerances: dict = field(default_factory=dict)  # the tolerances (baselines.Tolerances) applied to this model
    shard: dict | None = None  # {"index": K, "count": N, "ids": [...], "of": {"count": M, "digest": ...}}
    ranges: dict = field(default_factory=dict)  # the INT8 calibration table (calibration.table)
    layers: list = field(default_factory=list)  # per quantized layer, in graph order: measure.layers.LayerError's fields
    # ("name", "sqnr_db", "cosine", "per_image" SQNR and "signal" energy on each image) and its "upstream" layers
    flip: dict = field(default_factory=dict)  # flip rate of low-margin pixels and of all pixels, on the layer images
    drop_interval: dict = field(default_factory=dict)  # stats.Interval of the INT8 drop
    baseline_class_iou: dict = field(default_factory=dict)  # precision -> per-class IoU of the golden run
    ranges_moved: list = field(default_factory=list)  # layers whose calibrated range moved, largest change first
    layers_ranked: list = field(default_factory=list)  # layers the per-layer check names, most to blame first (gate.verdicts.layer_error)
    min_speedup: float | None = None  # the speed-up gate's minimum for this ISA, where one is recorded
    speedup_paired: dict = field(default_factory=dict)  # what the speed-up gate judged: FP32 and INT8 timed in turn
    # ("fp32_ms", "int8_ms": the minimum of each one's "rounds"), as measure.latency.alternating times them
    footprint_mb: dict = field(default_factory=dict)  # forked work -> MB it added beyond the pytest process (cases.ModelCase.footprints)
    agreement_pct: float | None = None  # a peer's row: its FP32 argmax equal to MXNet's, percent of the pixels compared
    golden_digest: dict = field(default_factory=dict)  # a shard's: precision -> the golden digest and its reference, for merge
    baseline_per_image: dict = field(default_factory=dict)  # a shard's: precision -> the golden per-image matrices, for merge
    checks: dict = field(default_factory=dict)  # check name -> Check

    def figures(self, precision: str) -> Figures:
        return self.int8 if precision == "int8" else self.fp32

    def layer_curves(self) -> dict:
        """layer -> (its SQNR on each image, dB; its FP32 energy on each image), as gate.harm.layers pools them (empty
        tuples where a run kept none)."""
        return {layer["name"]: (layer.get("per_image", ()), layer.get("signal", ())) for layer in self.layers}

    def speedup(self) -> float | None:
        """FP32 over INT8 latency (minimum of the rounds), where both were measured: the speed-up gate's paired timing
        where it ran, else the two benchmarks'."""
        if self.speedup_paired:
            return speedup(self.speedup_paired["fp32_ms"], self.speedup_paired["int8_ms"])
        return speedup(self.fp32.latency_ms, self.int8.latency_ms)

    def status(self, strict_changes: bool = False) -> str:
        """The first failing check in CHECK_ORDER (e.g. 'FAIL int8-graph', 'REGRESSED int8-accuracy'; CHANGED fails under
        strict_changes), else the first CHANGED one ('CHANGED int8-ranges'), else PASS; SKIP when nothing ran."""
        order = sorted(self.checks, key=lambda c: (CHECK_ORDER.index(c) if c in CHECK_ORDER else len(CHECK_ORDER), c))
        for name in order:
            if self.checks[name].failing(strict_changes):
                return f"{self.checks[name].status} {name}"
        for name in order:
            if self.checks[name].status == CHANGED:
                return f"{CHANGED} {name}"
        return PASS if any(c.status == PASS for c in self.checks.values()) else SKIP

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["checks"] = {k: asdict(v) for k, v in self.checks.items()}
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> "ModelResult":
        doc = dict(doc)
        fp32, int8 = Figures(**doc.pop("fp32", {})), Figures(**doc.pop("int8", {}))
        checks = {k: Check(**v) for k, v in doc.pop("checks", {}).items()}
        return cls(fp32=fp32, int8=int8, checks=checks, **doc)


@dataclass(frozen=True)
class Memory:
    """A run's peak resident set, MB: the pytest process's, its largest forked child's (the cases' backend work; the
    peers' runner and other subprocesses are not counted), the tests that raised the process's peak most
    (measure.memory.Watermark), and the peak of each phase, largest first."""

    peak_mb: float
    children_peak_mb: float
    rose_in: tuple = ()  # ((test id, MB it added), ...)
    phases: tuple = ()  # ((phase, MB), ...): this process's peak in each (fit, accuracy, benchmarks, peers, test modules)
    child_phases: tuple = ()  # ((work, MB), ...): the largest peak of a forked child doing it (calibration, evaluation, ...)

    @classmethod
    def from_dict(cls, doc: dict) -> "Memory":
        def pairs(key):
            return tuple((str(s), float(mb)) for s, mb in doc.get(key, ()))

        return cls(float(doc["peak_mb"]), float(doc["children_peak_mb"]), pairs("rose_in"), pairs("phases"), pairs("child_phases"))


@dataclass
class RunResults:
    tier: str = ""
    convention: str = ""
    strict_changes: bool = False  # CHANGED failed this run (--strict-changes)
    gate_drop_interval: bool = False  # the INT8 drop was gated on its interval's upper bound (--gate-drop-interval)
    warnings: list = field(default_factory=list)  # what the run did otherwise than asked (an unknown probe, ...)
    environment: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # name -> ModelResult
    memory: Memory | None = None  # measured by the pytest run (a merge of shards has none)

    def model(self, name: str) -> ModelResult:
        return self.models.setdefault(name, ModelResult(name))

    def apply(self, payload: dict) -> None:
        """Fold in what one gate test reported about its model (its figures, its subset, its baseline...), and the
        warnings it reported for the run (each once)."""
        self.warnings += [w for w in payload.get("warnings", ()) if w not in self.warnings]
        result = self.model(payload["model"])
        for precision in ("fp32", "int8"):
            for key, value in payload.get(precision, {}).items():
                setattr(result.figures(precision), key, value)
        for key in ("baseline", "reference", "accuracy_tolerances", "golden_digest", "baseline_per_image"):  # per precision
            if key in payload:
                setattr(result, key, {**getattr(result, key), **payload[key]})
        for key in ("subset", "setting", "int8_key", "int8_share", "int8_source", "classes", "tolerances", "min_speedup",
                    "speedup_paired", "shard", "ranges", "layers", "flip", "drop_interval", "baseline_class_iou",
                    "ranges_moved", "layers_ranked", "agreement_pct"):
            if key in payload:
                setattr(result, key, payload[key])

    def check(self, model: str, name: str, check: Check) -> None:
        self.model(model).checks[name] = check

    def to_dict(self) -> dict:
        return {"format": FORMAT, "tier": self.tier, "convention": self.convention, "environment": self.environment,
                "strict_changes": self.strict_changes, "gate_drop_interval": self.gate_drop_interval, "warnings": self.warnings,
                "models": {n: m.to_dict() for n, m in sorted(self.models.items())},
                "memory": asdict(self.memory) if self.memory is not None else None}

    @classmethod
    def from_dict(cls, doc: dict) -> "RunResults":
        known = {f.name for f in fields(cls)} - {"models", "memory"}
        memory = Memory.from_dict(doc["memory"]) if doc.get("memory") else None
        return cls(models={n: ModelResult.from_dict(m) for n, m in doc.get("models", {}).items()}, memory=memory,
                   **{k: v for k, v in doc.items() if k in known})

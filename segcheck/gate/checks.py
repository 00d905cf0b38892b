"""The gate's checks, written once: each check's name, the shipped test that judges it and their order; the
statuses a check reports; and the seed's spelling of INT8 as s8 (s8 latency, s8 mIoU)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config.recipes import PEERS

PASS, FAIL, REGRESSED, SKIP, ERROR, CHANGED, XFAIL = "PASS", "FAIL", "REGRESSED", "SKIP", "ERROR", "CHANGED", "XFAIL"
# FAIL: an absolute check broke (the INT8 drop, the graph, the speed-up); REGRESSED: against the reference it replaces,
# a figure fell beyond noise with confidence and harm cannot be excluded; CHANGED: beyond noise, not shown harmful (it
# fails only under --strict-changes, the run's mode: see failing()).
FAILING = (FAIL, REGRESSED, ERROR)
PRECISIONS = ("fp32", "int8")
SEED_PREFIX = {"fp32": "fp32", "int8": "s8"}


@dataclass(frozen=True)
class GateCheck:
    """One check of a model: judged by the shipped test `test`, once per precision in `precisions`
    (named fp32-accuracy, int8-accuracy) or once per model when `precisions` is empty (named deploy)."""

    key: str
    test: str
    precisions: tuple = ()

    def names(self) -> tuple:
        return tuple(f"{p}-{self.key}" for p in self.precisions) or (self.key,)

    def name(self, precision: str | None = None) -> str:
        if not self.precisions:
            return self.key
        if len(self.precisions) == 1:
            return f"{self.precisions[0]}-{self.key}"
        if precision not in self.precisions:
            raise ValueError(f"check {self.key} is judged per precision ({', '.join(self.precisions)}), got {precision!r}")
        return f"{precision}-{self.key}"


ACCURACY = GateCheck("accuracy", "test_accuracy", PRECISIONS)
AGREEMENT = GateCheck("agreement", "test_int8_agreement", ("int8",))
DROP = GateCheck("drop", "test_int8_drop", ("int8",))
CLASS_DROP = GateCheck("class-drop", "test_int8_class_drop", ("int8",))
INT8_GRAPH = GateCheck("graph", "test_int8_graph_is_quantized_and_calibrated", ("int8",))
RANGES = GateCheck("ranges", "test_int8_calibration_table", ("int8",))
LAYERS = GateCheck("layers", "test_int8_layer_error", ("int8",))
DIGEST = GateCheck("digest", "test_outputs_digest", PRECISIONS)
FP32_GRAPH = GateCheck("graph", "test_fp32_graph_is_fused_on_onednn", ("fp32",))
SEGMENTS = GateCheck("segments", "test_seeded_fp32_model_really_segments", ("fp32",))
DEPLOY = GateCheck("deploy", "test_deploy_round_trip")
LATENCY = GateCheck("latency", "test_latency", PRECISIONS)
SPEEDUP = GateCheck("speedup", "test_int8_speedup")
# A peer runtime's checks, judged on its own row of results ("<model>+<runtime>")
PEER_AGREEMENT = GateCheck("agreement", "test_peer_fp32_agrees_with_mxnet", ("fp32",))
PEER_ACCURACY = GateCheck("peer-accuracy", "test_peer_accuracy", PRECISIONS)
PEER_DROP = GateCheck("peer-drop", "test_peer_int8_drop", ("int8",))

# In this order a model's status names its first failing check.
CHECKS = (ACCURACY, AGREEMENT, DROP, CLASS_DROP, INT8_GRAPH, RANGES, LAYERS, DIGEST, FP32_GRAPH, SEGMENTS, DEPLOY, LATENCY, SPEEDUP,
          PEER_AGREEMENT, PEER_ACCURACY, PEER_DROP)
CHECK_ORDER = tuple(name for check in CHECKS for name in check.names())
BY_TEST = {check.test: check for check in CHECKS}


def of_test(function: str, precision: str | None = None) -> str | None:
    """The check a shipped test stands for (test_accuracy, 'int8' -> int8-accuracy); None for any other test."""
    check = BY_TEST.get(function)
    return check.name(precision) if check else None


def peer_row(model: str, runtime: str) -> str:
    """The name a model gated on a peer runtime goes by in results and baseline rows."""
    return f"{model}+{runtime}"


def of_peer_row(name: str) -> tuple:
    """(model, runtime) of a peer's row name, (name, None) for a model's own."""
    model, plus, runtime = name.rpartition("+")
    return (model, runtime) if plus and runtime in PEERS else (name, None)


def of_test_id(test_id: str) -> str | None:
    """The check of a test by its pytest name: test_accuracy[fcn_resnet101_voc-int8] -> int8-accuracy."""
    function, _, params = test_id.partition("[")
    last = params.rstrip("]").rpartition("-")[2]
    return of_test(function, last if last in PRECISIONS else None)


@dataclass(frozen=True)
class Check:
    """The outcome of one gate test of a model, as its report said; `compared` says what a check that compares with a
    recorded row or golden record compared against: exact (this environment and INT8 key), isa, version, recipe or a
    combination (isa+recipe: another environment or recipe, at that tolerance tier), published (the seed's table), or
    none (nothing was there to compare)."""

    status: str
    message: str = ""
    compared: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILING

    def failing(self, strict_changes: bool) -> bool:
        """Whether the check fails a run in its mode: a failure always, CHANGED under --strict-changes."""
        return self.failed or (strict_changes and self.status == CHANGED)

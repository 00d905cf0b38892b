"""segcheck's options, declared once: the pytest plugin and the `segcheck` command add them from this table.

The first flag of an option is its name in messages; later flags are the spellings of the seed's test.py,
accepted by both front ends. Every default is None, so "given" and "left to the configuration" differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
from dataclasses import dataclass

from ..data.kinds import ALL, DATASETS
from ..errors import SegcheckError
from . import isa
from .recipes import CALIB_MODES, PEERS, QUANTIZED_DTYPES, TIERS


def _integer(text, least: int, said: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a {said} integer, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a {said} integer, got {value}")
    return value


def positive(text) -> int:
    return _integer(text, 1, "positive")


def non_negative(text) -> int:
    return _integer(text, 0, "non-negative")


def _positive(unit: str):
    """An argparse type: a positive, finite number of `unit`."""
    def parse(text) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number of {unit}, got {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive number of {unit}, got {text!r}")
        return value

    return parse


positive_seconds = _positive("seconds")
positive_gb = _positive("GB")


def count_or_all(text) -> int | str:
    return ALL if text == ALL else positive(text)


def isa_level(text) -> str:
    """An ISA level for oneDNN's cap (avx2, avx512_core_vnni, amx, ...)."""
    try:
        return isa.name(text)
    except SegcheckError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def peer_names(text) -> tuple:
    """A comma-separated list of peer runtimes (onnxruntime, openvino)."""
    names = tuple(n.strip() for n in str(text).split(",") if n.strip())
    unknown = [n for n in names if n not in PEERS]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct peer runtimes among {', '.join(PEERS)}, got {text!r}")
    return names


def shard_spec(text) -> tuple:
    """K/N with 1 <= K <= N: shard K of N."""
    k, slash, n = str(text).partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 2/4, got {text!r}") from None
    if not slash or not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return k, n


class _Once(argparse.Action):
    """An option's value, which may be given once: a second one would silently replace the first (`--peer onnxruntime
    --peer openvino` gating OpenVINO alone), and an option that changes nothing is a usage error."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} is given twice; give it once"
                         + (" (several runtimes: --peer onnxruntime,openvino)" if self.dest == "peer" else "") + self.elsewhere())
        setattr(namespace, self.dest, True if self.nargs == 0 else values)

    def elsewhere(self) -> str:
        return ""


class _OnceUnderPytest(_Once):
    """As _Once, saying where PYTEST_ADDOPTS gives the option too: pytest puts it before the command line."""

    def elsewhere(self) -> str:
        addopts = os.environ.get("PYTEST_ADDOPTS", "")
        try:
            words = shlex.split(addopts)
        except ValueError:
            words = addopts.split()
        given = any(word.split("=")[0] in self.option_strings for word in words)
        return f" (PYTEST_ADDOPTS gives it too: {addopts.strip()})" if given else ""


class Parser(argparse.ArgumentParser):
    """argparse's parser for every segcheck command, refusing an option or argument given an empty value: an unset
    shell variable (`--results "$R"`) would otherwise fall back to the option's default unseen."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, extra = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if any(isinstance(v, str) and not v.strip() for v in (value if isinstance(value, list) else [value])):
                self.error(_empty(action.option_strings[0] if action.option_strings else f"the {action.metavar or action.dest} argument"))
        return parsed, extra


def _empty(name: str) -> str:
    return f"{name} is given an empty value; give one, or leave it out"


def refuse_empty(values: "GateOptions") -> None:
    """A run's option given an empty value, which pytest's parser takes silently, is an error naming it."""
    for o in RUN + GATE:
        value = getattr(values, o.dest)
        if isinstance(value, str) and not value.strip():
            raise SegcheckError(_empty(o.name))


@dataclass(frozen=True)
class Option:
    flags: tuple
    help: str
    type: object = None
    choices: tuple = ()
    flag: bool = False  # store_true
    metavar: str | None = None

    @property
    def name(self) -> str:
        return self.flags[0]

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    def kwargs(self) -> dict:
        if self.flag:
            return dict(dest=self.dest, action=_Once, nargs=0, default=None, help=self.help)
        extra = {"choices": self.choices} if self.choices else {}
        return dict(dest=self.dest, action=_Once, type=self.type, default=None, help=self.help, metavar=self.metavar, **extra)


# Options of a run that both front ends take: evaluation, calibration, data and cache.
RUN = (
    Option(("--crop-size", "--image-shape"), "evaluation crop in pixels (synthetic tier 64, real tier 480, "
           "else the model's configuration)", positive),
    Option(("--num-images",), "evaluate the first N images of the split, or 'all' (synthetic tier 48, real tier all)",
           count_or_all, metavar="N|all"),
    Option(("--batch-size",), "evaluation batch size (default 1, as the seed)", positive),
    Option(("--shard",), "evaluate shard K of N of the images (calibration is the same in every shard); "
           "combine the shards' results with `segcheck merge`", shard_spec, metavar="K/N"),
    Option(("--calib-mode",), "calibration mode (default naive)", choices=CALIB_MODES),
    Option(("--calib-dtype", "--quantized-dtype"), "quantized dtype (default auto)", choices=QUANTIZED_DTYPES),
    Option(("--calib-batches", "--num-calib-batches"), "calibration batches (synthetic tier 2, real tier 5, as the seed)", positive),
    Option(("--calib-batch-size",), "images per calibration batch (synthetic tier 16, real tier 32)", positive),
    Option(("--calib-split",), "calibration split (default train, disjoint from val; 'val' reproduces the seed)"),
    Option(("--calib-start",), "the calibration split's first image calibrated on (default 0): other images of the same "
           "distribution from another start", non_negative, metavar="N"),
    Option(("--segcheck-cache", "--cache-dir"), "segcheck's model and data cache (default $SEGCHECK_CACHE_DIR, else ~/.cache/segcheck)"),
    *(Option((kind.option,), f"{kind.key} root (else ${kind.env}, else {kind.default_root})") for kind in DATASETS.values()),
    Option(("--skip-bad",), "leave out unreadable samples with a warning (they are counted) instead of failing", flag=True),
    Option(("--case-timeout",), "seconds a case's backend work (calibration, an evaluation, the per-layer comparison, a "
           "peer run) may take before it is stopped and its checks fail (default: the configuration's case_timeout, else "
           "the larger of 300 s and three times its estimate)", positive_seconds, metavar="SECONDS"),
    Option(("--isa",), f"cap oneDNN at this ISA level ({', '.join(isa.CAPS)}; oneDNN's names such as avx512_core_vnni "
           "too), set before MXNet runs; amx also asks Linux for the tile permission (default: the configuration's isa, "
           "else oneDNN's own choice)", isa_level, metavar="LEVEL"),
)
CALIBRATION = ("calib_mode", "calib_dtype", "calib_batches", "calib_batch_size", "calib_split", "calib_start")
ROOTS = {kind.option.lstrip("-").replace("-", "_"): kind.key for kind in DATASETS.values()}

# Options of the pytest plugin only: what a gate run does with its results.
GATE = (
    Option(("--segcheck-config",), "segcheck.toml or pyproject.toml to read (default: the first found in the folder "
           "you run in, its parents, then the rootdir)"),
    Option(("--tier",), "synthetic (seeded models on generated data) or real (configured weights and data); "
           "default: the configuration's tier", choices=TIERS),
    Option(("--require-real",), "fail, instead of skipping, where weights or data are missing", flag=True),
    Option(("--require-baseline",), "fail, instead of skipping, where a model has no baseline row", flag=True),
    Option(("--baselines",), "baseline table (default: the configuration's, else baselines.json beside it)"),
    Option(("--update-baselines",), "record this run's rows for this environment and setting (shows the diff)", flag=True),
    Option(("--results-json",), "where this run's results go (default <segcheck-cache>/last-run.json)"),
    Option(("--report-png",), "also draw the results as a PNG chart"),
    Option(("--strict-changes", "--strict-digest"), "fail, instead of reporting, a CHANGED verdict (beyond the noise band, "
           "not shown harmful): snapshot semantics, a change is accepted only by re-recording (default: the "
           "configuration's strict_changes)", flag=True),
    Option(("--gate-drop-interval",), "gate the INT8 drop on the upper bound of its bootstrap interval over images", flag=True),
    Option(("--no-eval-cache", "--no-fp32-cache"), "evaluate again (FP32, INT8, the per-layer comparison and the deploy "
           "round trip) even where an evaluation of the same graphs, weights, images, setting, environment and code is "
           "cached, and first run every cached INT8 model in a child again", flag=True),
    Option(("--peer",), "also gate every model exported to ONNX on these runtimes (onnxruntime,openvino), in the peer "
           "environment `segcheck peer install` makes (default: each model's configured peer)", peer_names, metavar="NAMES"),
)


def add_to_pytest(parser) -> None:
    group = parser.getgroup("segcheck", "segcheck: INT8 segmentation gate")
    for option in RUN + GATE:
        group.addoption(*option.flags, **{**option.kwargs(), "action": _OnceUnderPytest})


def add_to_argparse(parser: argparse.ArgumentParser, options=RUN) -> None:
    for option in options:
        parser.add_argument(*option.flags, **option.kwargs())


def as_argv(values, options=RUN) -> list:
    """The options among `options` given a value in `values` (GateOptions), as command-line words: another process
    started with them runs with the same values."""
    argv = []
    for o in options:
        value = getattr(values, o.dest)
        if value is not None:
            argv += [o.name] if o.flag else [o.name, "/".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return argv


def flag_of(dest: str) -> str:
    return next(o.name for o in RUN + GATE if o.dest == dest)


class _Read:
    """What every GateOptions has beside its fields (one per option of RUN + GATE, None where not given)."""

    @classmethod
    def read(cls, get) -> "GateOptions":
        """Every option's value, read once through `get(dest)`: pytest's getoption, or vars(namespace).get."""
        return cls(**{o.dest: get(o.dest) for o in RUN + GATE})

    def given(self, options=RUN + GATE) -> list:
        """Names of the options given a value (not left at None), in the table's order."""
        return [o.name for o in options if getattr(self, o.dest) is not None]

    def with_(self, **changes) -> "GateOptions":
        return dataclasses.replace(self, **changes)


# A run's option values, typed by the table above: read once by the plugin or a command and passed down, so
# no option dict travels. Built from the table, so an option is still declared in one place.
GateOptions = dataclasses.make_dataclass(
    "GateOptions", [(o.dest, object, dataclasses.field(default=None)) for o in RUN + GATE], bases=(_Read,), frozen=True,
    namespace={"__doc__": "The value of every segcheck option in a run (None: not given, left to the configuration).",
               "__module__": __name__})

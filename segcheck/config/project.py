"""A project's model configuration: segcheck.toml, or [tool.segcheck] in pyproject.toml, read by a strict loader.

Each [[models]] entry names a network (a GluonCV model-zoo name, a model + backbone for
get_segmentation_model, or an exported FP32 prefix), its weights (GluonCV's model store or a params file),
its dataset, its INT8 side (a calibration recipe, or a shipped INT8 export) and optional tolerances.
Relative paths are read from the configuration file's folder. Every problem is one error naming the file
and the dotted key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..data.kinds import DATASETS, dataset
from ..errors import SegcheckError
from ..strict import Reader
from . import isa
from .networks import Network, check_name, classes_mismatch
from .recipes import CALIB_MODES, CONVENTIONS, DEFAULT_TIER, PEERS, QUANTIZED_DTYPES, TIERS
from .tolerances import OWN_KEYS

CONFIG_FILE = "segcheck.toml"
TOP_KEYS = ("baselines", "tier", "metric_convention", "isa", "strict_changes", "case_timeout", "models")
MODEL_KEYS = ("name", "network", "model", "backbone", "export", "weights", "dataset", "int8", "tolerances", "min_speedup", "peer")
DATASET_KEYS = ("name", "root", "split", "crop_size", "num_images")
INT8_KEYS = ("export", "mode", "dtype", "batches", "batch_size", "split", "start", "exclude")
TOLERANCE_KEYS = OWN_KEYS
# [int8] keys -> CalibRecipe fields
RECIPE_FIELDS = {"mode": "mode", "dtype": "dtype", "batches": "num_batches", "batch_size": "batch_size", "split": "split",
                 "start": "start", "exclude": "exclude"}
STORE = "store"


class ConfigError(SegcheckError):
    """The model configuration is malformed or inconsistent."""


@dataclass(frozen=True)
class DataEntry:
    name: str  # GluonCV's dataset key
    root: Path | None = None
    split: str = "val"
    crop_size: int | None = None
    num_images: int | str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One configured model; None and empty values are left to the tier's defaults and the options."""

    name: str
    network: Network
    weights: Path | str | None  # STORE, a params file, or None for an exported network
    data: DataEntry
    int8_export: Path | None = None  # a shipped INT8 model (<prefix>-symbol.json / -0000.params)
    recipe: dict = field(default_factory=dict)  # CalibRecipe fields given
    tolerances: dict = field(default_factory=dict)
    min_speedup: dict = field(default_factory=dict)  # ISA -> minimum INT8 / FP32 speed-up
    peers: tuple = ()  # runtimes (PEERS) it is also gated on


@dataclass(frozen=True)
class Project:
    path: Path
    baselines: Path
    tier: str
    metric_convention: str | None
    models: tuple
    isa: str | None = None  # the ISA level oneDNN is capped at for this project's runs (config.isa); None: oneDNN's choice
    strict_changes: bool = False  # a CHANGED verdict fails the run (snapshot semantics), as --strict-changes
    case_timeout: float | None = None  # seconds a case's backend work may take, as --case-timeout

    @property
    def folder(self) -> Path:
        return self.path.parent


def find(rootdir, explicit=None, invocation_dir=None) -> Project | None:
    """The project configuration: `explicit`, else the first folder of `invocation_dir`, its parents and `rootdir`
    holding segcheck.toml or [tool.segcheck] in pyproject.toml; None when there is none.

    The closest configuration to where pytest runs wins. The rootdir comes last because pytest may place it
    elsewhere: a plugin option's value given as a separate argument (--voc-root /data/voc) counts as a path
    when pytest chooses the rootdir.
    """
    if explicit:
        path = Path(explicit)
        if path.is_dir():
            raise ConfigError(f"{path}: a folder, not a configuration file; name the segcheck.toml or pyproject.toml in it "
                              "with --segcheck-config")
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found; fix --segcheck-config")
        return load(path)
    folders = ([Path(invocation_dir), *Path(invocation_dir).parents] if invocation_dir else []) + [Path(rootdir)]
    for folder in folders:
        found = _in_folder(folder)
        if found is not None:
            return found
    return None


def _in_folder(root: Path) -> Project | None:
    own, pyproject = root / CONFIG_FILE, root / "pyproject.toml"
    in_pyproject = pyproject.is_file() and "segcheck" in _toml(pyproject).get("tool", {})
    if own.is_file() and in_pyproject:
        raise ConfigError(f"{root}: both {CONFIG_FILE} and [tool.segcheck] in pyproject.toml configure segcheck; keep one")
    if own.is_file():
        return load(own)
    return load(pyproject) if in_pyproject else None


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        kind = "" if path.suffix == ".toml" else f" (a configuration is {CONFIG_FILE} or pyproject.toml)"
        raise ConfigError(f"{path}: invalid TOML ({err}); fix the file{kind}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the configuration ({err})") from None


def load(path) -> Project:
    path = Path(path)
    doc = _toml(path)
    base = ""
    if path.name == "pyproject.toml":
        doc, base = doc.get("tool", {}).get("segcheck"), "tool.segcheck"
        if doc is None:
            raise ConfigError(f"{path}: has no [tool.segcheck] table; add one or point --segcheck-config elsewhere")
    return _Loader(path, base).project(doc)


class _Loader:
    def __init__(self, path: Path, base: str):
        self.path, self.base = path, base
        self.read = Reader(path, "fix the configuration (see the README's \"Gate your own model\")", ConfigError)

    def key(self, *parts) -> str:
        return ".".join(p for p in (self.base, *parts) if p)

    def local(self, value, key: str) -> Path:
        text = self.read.string(value, key)
        if not text:
            self.read.fail(key, "empty path")
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.path.parent / path

    def project(self, doc) -> Project:
        self.read.obj(doc, self.base, ("models",), TOP_KEYS)
        tier = self.read.string(doc.get("tier", DEFAULT_TIER), self.key("tier"), TIERS)
        convention = doc.get("metric_convention")
        if convention is not None:
            self.read.string(convention, self.key("metric_convention"), CONVENTIONS)
        baselines = self.local(doc.get("baselines", "baselines.json"), self.key("baselines"))
        models = doc["models"]
        if not isinstance(models, list) or not models:
            self.read.fail(self.key("models"), "expected one or more [[models]] tables")
        entries = tuple(self.model(m, self.key(f"models[{i}]")) for i, m in enumerate(models))
        names = [e.name for e in entries]
        for i, name in enumerate(names):
            if name in names[:i]:
                self.read.fail(self.key(f"models[{i}].name"), f"{name!r} names two models; give each a distinct name")
        level = None
        if "isa" in doc:
            try:
                level = isa.name(self.read.string(doc["isa"], self.key("isa")))
            except SegcheckError as err:
                if isinstance(err, ConfigError):
                    raise
                self.read.fail(self.key("isa"), str(err))
        strict = self.read.boolean(doc.get("strict_changes", False), self.key("strict_changes"))
        timeout = self.read.number(doc["case_timeout"], self.key("case_timeout"), 1.0, 1e6) if "case_timeout" in doc else None
        return Project(self.path, baselines, tier, convention, entries, level, strict, timeout)

    def model(self, doc, key: str) -> ModelEntry:
        self.read.obj(doc, key, (), MODEL_KEYS)
        network = self.network(doc, key)
        data = self.dataset(doc.get("dataset", {}), f"{key}.dataset", network)
        if network.export is None:
            weights = doc.get("weights", STORE)
            weights = STORE if weights == STORE else self.local(weights, f"{key}.weights")
        else:
            if "weights" in doc:
                self.read.fail(f"{key}.weights", "an exported network carries its weights (<prefix>-0000.params); remove the key")
            weights = None
        name = doc.get("name", network.name)
        try:
            check_name(self.read.string(name, f"{key}.name"))
        except SegcheckError as err:
            self.read.fail(f"{key}.name", str(err))
        if name.rpartition("+")[2] in PEERS and "+" in name:
            self.read.fail(f"{key}.name", f"{name!r} ends like a peer runtime's row (<model>+<runtime>); rename the model")
        int8_export, recipe = self.int8(doc.get("int8", {}), f"{key}.int8", network, DATASETS[data.name].splits)
        tol = self.read.obj(doc.get("tolerances", {}), f"{key}.tolerances", (), TOLERANCE_KEYS)
        tolerances = {k: self.read.number(v, f"{key}.tolerances.{k}", -100.0 if k == "sqnr_floor_db" else 0.0,
                                          1e9 if k == "class_min_pixels" else 100.0)
                      for k, v in tol.items()}
        speed = self.read.obj(doc.get("min_speedup", {}), f"{key}.min_speedup", (), isa.KEYS)
        min_speedup = {level: self.read.number(v, f"{key}.min_speedup.{level}", 0.0, 1000.0) for level, v in speed.items()}
        peers = self.read.strings(doc.get("peer", []), f"{key}.peer")
        for i, peer in enumerate(peers):
            self.read.string(peer, f"{key}.peer[{i}]", PEERS)
            if peer in peers[:i]:
                self.read.fail(f"{key}.peer[{i}]", f"{peer!r} is named twice; name each runtime once")
        return ModelEntry(name, network, weights, data, int8_export, recipe, tolerances, min_speedup, peers)

    def network(self, doc, key: str) -> Network:
        given = [k for k in ("network", "model", "export") if k in doc]
        if len(given) != 1:
            self.read.fail(key, "name the network with exactly one of 'network' (a GluonCV model-zoo name), "
                                f"'model' with 'backbone', or 'export' (an FP32 prefix); found {given or 'none'}")
        if "backbone" in doc and given != ["model"]:
            self.read.fail(f"{key}.backbone", "only goes with 'model'")
        try:
            if given == ["network"]:
                return Network.from_zoo(self.read.string(doc["network"], f"{key}.network"))
            if given == ["export"]:
                return Network.from_export(self.local(doc["export"], f"{key}.export"))
            if "backbone" not in doc:
                self.read.fail(f"{key}.backbone", "missing ('model' needs a backbone, e.g. resnet101)")
            data = doc.get("dataset", {})
            name = data.get("name") if isinstance(data, dict) else None
            if name is None:
                self.read.fail(f"{key}.dataset.name", "missing ('model' needs the dataset whose classes it predicts)")
            return Network.from_parts(self.read.string(doc["model"], f"{key}.model"),
                                      self.read.string(doc["backbone"], f"{key}.backbone"), self.read.string(name, f"{key}.dataset.name"))
        except SegcheckError as err:
            if isinstance(err, ConfigError):
                raise
            self.read.fail(f"{key}.{given[0]}", str(err))

    def dataset(self, doc, key: str, network: Network) -> DataEntry:
        if isinstance(doc, dict) and "base_size" in doc:
            self.read.fail(f"{key}.base_size", "has no effect: segcheck evaluates in GluonCV's mode=val, which resizes to "
                                               "crop_size (the base size acts only in training); remove the key")
        self.read.obj(doc, key, (), DATASET_KEYS)
        name = doc.get("name", network.dataset or None)
        if name is None:
            self.read.fail(f"{key}.name", "missing (an exported network does not say which dataset it is for)")
        try:
            kind = dataset(self.read.string(name, f"{key}.name"))
        except SegcheckError as err:
            self.read.fail(f"{key}.name", str(err))
        mismatch = classes_mismatch(network, kind)
        if mismatch:
            self.read.fail(f"{key}.name", mismatch)
        split = self.read.string(doc.get("split", "val"), f"{key}.split", kind.splits)
        root = self.local(doc["root"], f"{key}.root") if "root" in doc else None
        crop = self.read.integer(doc["crop_size"], f"{key}.crop_size", 32) if "crop_size" in doc else None
        num_images = doc.get("num_images")
        if num_images is not None and num_images != "all":
            self.read.integer(num_images, f"{key}.num_images")
        return DataEntry(kind.key, root, split, crop, num_images)

    def int8(self, doc, key: str, network: Network, splits: tuple) -> tuple:
        self.read.obj(doc, key, (), INT8_KEYS)
        if "export" in doc:
            extra = sorted(set(doc) - {"export"})
            if extra:
                self.read.fail(f"{key}.{extra[0]}", "has no effect with a shipped INT8 export ('export'); remove it")
            return self.local(doc["export"], f"{key}.export"), {}
        checks = {"mode": lambda v, k: self.read.string(v, k, CALIB_MODES),
                  "dtype": lambda v, k: self.read.string(v, k, QUANTIZED_DTYPES),
                  "batches": self.read.integer, "batch_size": self.read.integer,
                  "split": lambda v, k: self.read.string(v, k, splits), "start": lambda v, k: self.read.integer(v, k, 0),
                  "exclude": self.read.strings}
        recipe = {RECIPE_FIELDS[k]: checks[k](v, f"{key}.{k}") for k, v in doc.items()}
        if recipe.get("exclude") and network.export is not None:
            self.read.fail(f"{key}.exclude", "names Gluon layers, which an exported network does not have")
        return None, recipe

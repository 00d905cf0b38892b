"""The seed's workflow as functions of one ModelConfig: its data, the FP32 model, the INT8 model.

Built and calibrated models come through the cache and are always loaded back from the cached files,
so a cold run and a warm run compute with exactly the same weights and graph. A shipped INT8 export is
loaded as it is: it is the artefact under test.
"""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
from tqdm import tqdm

from .. import atomic
from ..config import isa
from ..config import threads as omp
from ..config.recipes import EXCLUDE_LAYERS, CalibRecipe
from ..config.run import ModelConfig
from ..data import loaders, synthetic
from ..errors import SegcheckError
from . import build, cache, export, fit, quantize
from .build import logits
from .graph import GraphReport, inspect_graph

log = logging.getLogger("segcheck.cache")


def dataset_root(mc: ModelConfig) -> tuple[Path, str]:
    """(root, where it came from): generated in the cache on the synthetic tier, as resolved on the real one."""
    if mc.root is None:
        return synthetic.ensure(mc.run.cache_dir, mc.dataset, mc.run.synthetic), "the synthetic tier"
    return mc.root, mc.root_source


def open_split(mc: ModelConfig, split: str, crop_size: int | None = None) -> loaders.Split:
    root, source = dataset_root(mc)
    crop = crop_size or mc.crop_size
    return loaders.open_split(mc.kind, root, split, crop, mc.run.cache_dir, source)


def fp32_params(mc: ModelConfig) -> Path:
    """The FP32 weights file: GluonCV's store file, a params file, an export's params, or the seeded fit (cached)."""
    return fp32_weights(mc)[0]


def fp32_weights(mc: ModelConfig) -> tuple[Path, str]:
    """(weights file, its digest): where a digest was just verified it is reused, not computed again."""
    kind = mc.weights.kind
    if kind == "store":
        return build.pretrained_file(mc.network, mc.run.mxnet_home), build.gluoncv_sha1(mc.network)
    if kind in ("params", "export"):
        path = export.files(mc.weights.path)[1] if kind == "export" else mc.weights.path
        if not path.is_file():
            raise SegcheckError(f"{path}: weights file not found; fix the configuration's path (or --resume / --model-prefix)")
        return path, atomic.digest_of(path)

    fields = {"model": mc.network.name, "fit": mc.run.fit.as_dict(),
              "data": mc.run.synthetic.digest(), "versions": cache.versions()}
    entry = cache.get_or_build(mc.run.cache_dir, "fp32", fields, lambda folder: _fit_in_its_own_process(mc, folder))
    return entry.file("model.params"), entry.manifest["files"]["model.params"]


def seeded_fit(mc: ModelConfig, folder: Path) -> dict:
    """Initialise the network of `mc` from its seed, fit it on the synthetic training split, save folder/model.params."""
    started = time.perf_counter()
    crop = mc.run.fit.crop_size
    net = build.build(mc.network, crop)
    fit.seeded_init(net, crop, mc.run.fit)
    train = open_split(mc, "train", crop)
    (images, labels, ids), = loaders.batches(train, loaders.first(train, mc.run.fit.num_images), mc.run.fit.num_images)
    fit.fit(net, mc.arch, images, labels, mc.run.fit)
    net.save_parameters(str(folder / "model.params"))
    return {"fit_seconds": round(time.perf_counter() - started, 1), "fit_subset": loaders.Subset("train", ids).describe()}


FIT_TIMEOUT_S = 1800  # a seeded fit takes about 10 s here
_FIT_CHILD = (
    "import json, pickle, sys\n"
    "from pathlib import Path\n"
    "from segcheck.models.pipeline import seeded_fit\n"
    "config, folder, out = sys.argv[1:4]\n"
    "Path(out).write_text(json.dumps(seeded_fit(pickle.loads(Path(config).read_bytes()), Path(folder))))\n"
)


def _fit_in_its_own_process(mc: ModelConfig, folder: Path) -> dict:
    """seeded_fit in a new process under the fit recipe's numerics (fit.numerics): this process's ISA cap, threads
    and BLAS would otherwise change the fitted weights."""
    with tempfile.TemporaryDirectory(prefix="segcheck-fit-") as tmp:
        config, out = Path(tmp) / "config.pickle", Path(tmp) / "out.json"
        config.write_bytes(pickle.dumps(mc))
        try:
            done = subprocess.run([sys.executable, "-c", _FIT_CHILD, str(config), str(folder), str(out)],
                                  env=fit.numerics(mc.run.fit), capture_output=True, text=True, timeout=FIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SegcheckError(f"fitting the seeded weights of {mc.name} took more than {FIT_TIMEOUT_S} s in its own "
                                "process; it was stopped") from None
        if done.returncode != 0 or not out.is_file():
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise SegcheckError(f"fitting the seeded weights of {mc.name} failed in its own process ({last})")
        return json.loads(out.read_text())


def _imported(mc: ModelConfig, prefix) -> mx.gluon.SymbolBlock:
    """An exported model, run once at the crop size and checked against the dataset's classes."""
    block = export.load(prefix)
    symbol = export.files(prefix)[0]
    try:
        shape = logits(block, mx.nd.zeros((1, 3, mc.crop_size, mc.crop_size))).shape
        mx.nd.waitall()
    except mx.base.MXNetError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SegcheckError(f"{symbol}: does not run on {mc.crop_size}x{mc.crop_size} images ({first}); export it at "
                            "this crop size or set the crop size it was exported for") from None
    if shape[1] != mc.kind.num_classes:
        raise SegcheckError(f"{symbol}: predicts {shape[1]} classes, but {mc.dataset} has {mc.kind.num_classes}; "
                            "is this the model for that dataset?")
    return block


def fp32_net(mc: ModelConfig, fused: bool = True) -> mx.gluon.HybridBlock:
    """The FP32 network with its weights; fused onto oneDNN unless `fused` is False (calibration input)."""
    if mc.network.export is not None:
        net = _imported(mc, mc.network.export)
        return build.fuse(net, mc.crop_size) if fused else net
    net = build.build(mc.network, mc.crop_size)
    build.load_params(net, fp32_params(mc), ignore_prefixes=("auxlayer.",))
    if fused:
        return build.fuse(net, mc.crop_size)
    build.materialise(net, mc.crop_size)
    return net


def fp32_graph(mc: ModelConfig, folder: Path) -> Path:
    """The unfused FP32 graph as an export prefix: the network's own export, or this one written into `folder`."""
    if mc.network.export is not None:
        return Path(mc.network.export)
    net = fp32_net(mc, fused=False)
    net.hybridize()
    net(mx.nd.zeros((1, 3, mc.crop_size, mc.crop_size)))
    return export.export(net, Path(folder) / "fp32")[0].parent / "fp32"


def onnx_model(mc: ModelConfig) -> Path:
    """The unfused FP32 network of `mc` exported to ONNX for the peer runtimes, once per weights, crop and versions
    (the cache): built only where the cache does not hold the export."""
    _, fp32_digest = fp32_weights(mc)
    return _onnx_entry(mc, "onnx", {"fp32": fp32_digest}, lambda: fp32_net(mc, fused=False))


def network_onnx(mc: ModelConfig, net) -> Path:
    """`net` (a network a plugin hands over in place of `mc`'s) exported to ONNX for the peer runtimes, once per
    content (its graph and weights, onnx_export.content_digest), crop and versions: kept in the cache apart from the
    exports of `mc`'s own weights."""
    from . import onnx_export

    return _onnx_entry(mc, "network-onnx", {"network": onnx_export.content_digest(net)}, lambda: net)


def _onnx_entry(mc: ModelConfig, kind: str, what: dict, network) -> Path:
    """The ONNX export of `network()` at `mc`'s crop, kept in a `kind` entry keyed by `what` it exports and by what
    every export depends on: the model, the crop, the versions, the exporter's format and the onnx package."""
    from . import onnx_export

    fields = {"model": mc.network.name, **what, "crop": mc.crop_size, "versions": cache.versions(),
              "exporter": onnx_export.FORMAT, "onnx": onnx_export.onnx_version()}

    def make(folder: Path) -> None:
        onnx_export.export(network(), mc.crop_size, folder / "model.onnx")

    return cache.get_or_build(mc.run.cache_dir, kind, fields, make).file("model.onnx")


def conv_count(mc: ModelConfig) -> int:
    """Convolutions of the FP32 network as built or exported, before any fusion."""
    if mc.network.export is not None:
        nodes = json.loads(export.files(mc.network.export)[0].read_text())["nodes"]
        return sum(n["op"] == "Convolution" for n in nodes)
    return len(quantize.conv_paths(build.build(mc.network, mc.crop_size)))


@dataclass
class Int8Model:
    block: mx.gluon.SymbolBlock
    graph: GraphReport
    entry: cache.Entry | None  # the cache entry of a model segcheck calibrated; None for a shipped export
    source: str  # how it was made: the calibration and its images, or the export's path
    prefix: Path  # its <prefix>-symbol.json and <prefix>-0000.params


def calibration_images(mc: ModelConfig, recipe: CalibRecipe):
    """(split, subset): num_batches x batch_size images of the calibration split from its image `start`, in order."""
    if recipe.mode == "none":
        return None, loaders.Subset(recipe.split, ())
    source = open_split(mc, recipe.split)
    recipe.check_fits(source.source, len(source))
    return source, loaders.Subset(recipe.split, tuple(source.ids[i] for i in recipe.images))


def _int8_fields(mc: ModelConfig, recipe: CalibRecipe) -> tuple:
    """(cache key fields, calibration split, calibration subset) of the INT8 model `recipe` calibrates. The key holds
    the thread count: calibrated on another, a range may round apart in its last bits and move a few pixels."""
    _, fp32_digest = fp32_weights(mc)
    source, calib = calibration_images(mc, recipe)
    fields = {"model": mc.network.name, "crop": mc.crop_size, "fp32": fp32_digest,
              "calibration": recipe.as_dict(), "calibration_images": calib.digest,
              "calibration_files": atomic.files_digest(source.files(recipe.images)) if calib.ids else "",
              "always_fp32": list(EXCLUDE_LAYERS.get(mc.arch, ())),
              "versions": cache.versions(), "isa": isa.effective_level(), "threads": omp.in_force()}
    return fields, source, calib


def _mark(folder: Path, name: str) -> None:
    """Leave the empty marker `name` in an entry's folder, atomically and at best: one that cannot be written (an entry
    removed meanwhile, a read-only cache) only means that the next process first runs the model in a child again."""
    try:
        atomic.write_into(folder / name, b"")
    except OSError as err:
        log.info("could not mark %s as run (%s): it is first run in a child again next time", folder, err)


def int8_model(mc: ModelConfig, recipe: CalibRecipe | None = None, ran: str | None = None,
               cached_only: bool = False) -> Int8Model | None:
    """The INT8 model: the shipped export as it is, or calibrated once per cache key (a second run skips it). With
    `ran`, the entry keeps a marker of that name once its model has been bound and run here; with `cached_only`, the
    model is only loaded from an intact entry holding that marker, and None returned otherwise (nothing calibrated)."""
    if mc.int8_export is not None and recipe is None:
        if cached_only:
            return None
        block = _imported(mc, mc.int8_export)
        graph = inspect_graph(export.files(mc.int8_export)[0].read_text())
        return Int8Model(block, graph, None, f"shipped INT8 export {mc.int8_export}", Path(mc.int8_export))
    recipe = recipe or mc.calib
    fields, source, calib = _int8_fields(mc, recipe)

    def make(folder: Path) -> dict:
        started = time.perf_counter()
        net = fp32_net(mc, fused=False)
        batches = [b for b, _, _ in loaders.batches(source, recipe.images, recipe.batch_size, mc.run.skip_bad)] if calib.ids else []
        with tqdm(total=len(batches), desc=f"calibrating {mc.name}", unit="batch", leave=False) as bar:
            qnet = quantize.quantize(net, mc.arch, recipe, batches, mc.crop_size, on_batch=lambda: bar.update(1))
        export.export(qnet, folder / "model")
        graph = inspect_graph((folder / "model-symbol.json").read_text())
        return {"calibration_seconds": round(time.perf_counter() - started, 1),
                "calibration_subset": calib.describe(),
                "int8_convs": graph.int8_convs, "fp32_convs": graph.fp32_convs}

    if cached_only:
        entry = cache.find(mc.run.cache_dir, "int8", fields)
        if entry is None or ran is None or not entry.file(ran).is_file():
            return None
    else:
        entry = cache.get_or_build(mc.run.cache_dir, "int8", fields, make)
    block = export.load(entry.path / "model")
    block(mx.nd.zeros((1, 3, mc.crop_size, mc.crop_size)))  # binds the graph: ready to run or export
    mx.nd.waitall()
    if ran is not None and not entry.file(ran).is_file():
        _mark(entry.path, ran)
    graph = inspect_graph((entry.path / "model-symbol.json").read_text())
    return Int8Model(block, graph, entry, f"calibrated {recipe.label()} on {entry.manifest['calibration_subset']}",
                     entry.path / "model")


def gluoncv_int8(mc: ModelConfig) -> mx.gluon.SymbolBlock:
    """GluonCV's shipped INT8 symbol for the model (480x480, with its auxiliary head) on this run's FP32 weights.

    The auxiliary head has no fitted weights on the synthetic tier and keeps a seeded initialisation:
    this checks that the symbol binds and runs on this MXNet, not its accuracy.
    """
    net = build.build(mc.network, export.GLUONCV_INT8_CROP, aux=True)
    build.load_params(net, fp32_params(mc), keep_prefixes=("auxlayer.",))
    mx.random.seed(mc.run.fit.seed)
    net.auxlayer.initialize(mx.init.Xavier())
    return export.gluoncv_int8_block(mc.network, net)

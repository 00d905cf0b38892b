"""The seed's workflow as functions: data for a tier, the FP32 model, the calibrated INT8 model.

Every model comes through the cache, and is always loaded back from the cached files, so a cold
run and a warm run compute with exactly the same weights and graph.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
from tqdm import tqdm

from . import data, synthetic
from .catalog import ModelSpec
from .config import RunConfig
from .errors import SegcheckError
from .models import build, cache, export, fit, quantize


def dataset_root(config: RunConfig, dataset: str) -> tuple[Path, str]:
    """(root, where it came from): generated in the cache for the synthetic tier, resolved for the real one."""
    if config.tier == "synthetic":
        return synthetic.ensure(config.cache_dir, dataset, config.synthetic), "the synthetic tier"
    option = config.voc_root if dataset == "voc" else config.coco_root
    return data.resolve_root(dataset, option)


def open_split(config: RunConfig, dataset: str, split: str, crop_size: int | None = None) -> data.Split:
    root, source = dataset_root(config, dataset)
    return data.open_split(dataset, root, split, crop_size or config.crop_size, config.cache_dir, source)


def fp32_params(config: RunConfig, spec: ModelSpec) -> Path:
    """The FP32 weights file: GluonCV's pretrained file (real tier) or the seeded-and-fitted one (cached)."""
    return _fp32_weights(config, spec)[0]


def _fp32_weights(config: RunConfig, spec: ModelSpec) -> tuple[Path, str]:
    """(weights file, its digest): the digest is the one just verified, so the file is not read again."""
    if config.tier == "real":
        return build.pretrained_file(spec, config.mxnet_home), build.gluoncv_sha1(spec)

    def make(folder: Path) -> dict:
        started = time.perf_counter()
        crop = config.fit.crop_size
        net = build.build(spec, crop)
        fit.seeded_init(net, crop, config.fit)
        train = open_split(config, spec.dataset, "train", crop)
        (images, labels, ids), = data.batches(train, data.first(train, config.fit.num_images), config.fit.num_images)
        fit.fit(net, spec.arch, images, labels, config.fit)
        net.save_parameters(str(folder / "model.params"))
        return {"fit_seconds": round(time.perf_counter() - started, 1), "fit_subset": data.Subset("train", ids).describe()}

    fields = {"model": spec.name, "fit": config.fit.as_dict(),
              "data": config.synthetic.digest(), "versions": cache.versions()}
    entry = cache.get_or_build(config.cache_dir, "fp32", fields, make)
    return entry.file("model.params"), entry.manifest["files"]["model.params"]


def fp32_net(config: RunConfig, spec: ModelSpec, fused: bool = True) -> mx.gluon.HybridBlock:
    """The FP32 network with its weights; fused onto oneDNN unless `fused` is False (calibration input)."""
    net = build.build(spec, config.crop_size)
    build.load_params(net, fp32_params(config, spec), ignore_prefixes=("auxlayer.",))
    if fused:
        return build.fuse(net, config.crop_size)
    build.materialise(net, config.crop_size)
    return net


@dataclass
class Int8Model:
    block: mx.gluon.SymbolBlock
    graph: quantize.GraphReport
    entry: cache.Entry


def calibration_images(config: RunConfig, spec: ModelSpec, recipe: quantize.CalibRecipe):
    """(split, subset): the first num_batches x batch_size images of the calibration split, in order."""
    if recipe.mode == "none":
        return None, data.Subset(recipe.split, ())
    source = open_split(config, spec.dataset, recipe.split)
    if recipe.num_examples > len(source):
        raise SegcheckError(
            f"{source.source}: calibration needs {recipe.num_examples} images ({recipe.num_batches} batches x "
            f"{recipe.batch_size}) but the {recipe.split} split holds {len(source)}; lower --num-calib-batches or the batch size"
        )
    return source, data.Subset(recipe.split, source.ids[:recipe.num_examples])


def int8_model(config: RunConfig, spec: ModelSpec, recipe: quantize.CalibRecipe | None = None) -> Int8Model:
    """The calibrated INT8 model, built once per cache key (a second run skips calibration)."""
    recipe = recipe or config.calib
    _, fp32_digest = _fp32_weights(config, spec)
    source, calib = calibration_images(config, spec, recipe)

    def make(folder: Path) -> dict:
        started = time.perf_counter()
        net = fp32_net(config, spec, fused=False)
        batches = [b for b, _, _ in data.batches(source, range(recipe.num_examples), recipe.batch_size, config.skip_bad)] if calib.ids else []
        with tqdm(total=len(batches), desc=f"calibrating {spec.name}", unit="batch", leave=False) as bar:
            qnet = quantize.quantize(net, spec.arch, recipe, batches, config.crop_size, on_batch=lambda: bar.update(1))
        export.export(qnet, folder / "model")
        graph = quantize.inspect_graph((folder / "model-symbol.json").read_text())
        return {"calibration_seconds": round(time.perf_counter() - started, 1),
                "calibration_subset": calib.describe(),
                "int8_convs": graph.int8_convs, "fp32_convs": graph.fp32_convs}

    fields = {"model": spec.name, "crop": config.crop_size, "fp32": fp32_digest,
              "calibration": recipe.as_dict(), "calibration_images": calib.digest,
              "always_fp32": list(quantize.EXCLUDE_LAYERS[spec.arch]),
              "versions": cache.versions()}
    entry = cache.get_or_build(config.cache_dir, "int8", fields, make)
    block = export.load(entry.path / "model")
    block(mx.nd.zeros((1, 3, config.crop_size, config.crop_size)))  # binds the graph: ready to run or export
    mx.nd.waitall()
    graph = quantize.inspect_graph((entry.path / "model-symbol.json").read_text())
    return Int8Model(block, graph, entry)


def gluoncv_int8(config: RunConfig, spec: ModelSpec) -> mx.gluon.SymbolBlock:
    """GluonCV's shipped INT8 symbol for `spec` (480x480, with its auxiliary head) on this run's FP32 weights.

    The auxiliary head has no fitted weights on the synthetic tier and keeps a seeded initialisation:
    this checks that the symbol binds and runs on this MXNet, not its accuracy.
    """
    net = build.build(spec, export.GLUONCV_INT8_CROP, aux=True)
    mx.random.seed(config.fit.seed)
    net.initialize(mx.init.Xavier())
    build.load_params(net, fp32_params(config, spec), keep_prefixes=("auxlayer.",))
    return export.gluoncv_int8_block(spec, net)

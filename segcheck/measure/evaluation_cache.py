"""Evaluations reused across runs: an evaluation (FP32 or INT8), the per-layer comparison and the deploy round trip
depend only on the graphs and weights they run, the images, the setting, the environment and segcheck's measuring code,
so a run that finds an entry of the same key reads it instead of evaluating again. A run that changes only the INT8
side (the calibration recipe, a shipped INT8 file) reads FP32; a second run of the same models reads all four.

The key digests the fused graph each model runs (Gluon's per-process counters cut) and its weights file, the image and
mask files themselves, the images' ids, the setting, the environment (versions, the libmxnet.so, ISA level, threads),
the code that measures, how many images' outputs an FP32 evaluation keeps and, for INT8, the FP32 outputs it is
compared with. An entry is written atomically and a damaged one is evaluated again, never trusted (models.cache). A
model a plugin put in place of the built one (a fault) is never read from the cache: its weights are not a file's known
here. One handed over is, keyed by the digest of the weights file the case that built it loaded (cases.model_case). Off
with --no-eval-cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from .. import atomic
from ..config import isa
from ..data import kinds
from ..models import build, cache, export, graph
from . import calibration, evaluate as evaluate_module, layers, metrics, sqnr
from .calibration import stable
from .environment import threads
from .evaluate import Evaluation, Outputs
from .layers import LayerError, Localisation

log = logging.getLogger("segcheck.evaluation_cache")


def graph_digest(block) -> str:
    """The fused graph: its nodes' ops, inputs, attributes and names without per-process counters."""
    digest = hashlib.sha256()
    for node in json.loads(export.graph_json(block))["nodes"]:
        digest.update(json.dumps([node["op"], stable(node["name"]), node.get("attrs", {}), node.get("inputs", [])],
                                 sort_keys=True).encode())
    return digest.hexdigest()[:20]


# of an entry; 3: INT8 evaluations (their comparison with FP32's outputs) and per-layer comparisons too; 4: an FP32
# evaluation's key holds the images whose outputs it keeps, its manifest the split (tune evaluates others), and the
# deploy round trip's pass is kept
FORMAT = 4
OUTPUTS = "outputs.npz"  # the first images' FP32 outputs, which INT8 is compared with (evaluate.Outputs)
# the code an evaluation's figures come from: its forward (build), the metric and the labels it ignores (kinds)
MEASURING = (evaluate_module, metrics, sqnr, build, kinds)
COMPARING = MEASURING + (layers, calibration, export, graph)  # and a per-layer comparison's: the layers it pairs
DEPLOYING = MEASURING + (export,)  # and a deploy round trip's: the export it writes, imports and compares (round_trip)


def _code(modules) -> str:
    return atomic.files_digest([Path(m.__file__) for m in modules])


def _fields(mc, split, indices, models, modules) -> dict | None:
    """The key of a measurement of `models` ((block, weights digest) pairs) on `split`'s samples at `indices`, or None
    where a model's weights are unknown (a plugin's model: never cached) or the cache is off."""
    if not mc.run.eval_cache or any(weights is None for _, weights in models):
        return None
    return {"format": FORMAT, "models": [[graph_digest(block), weights] for block, weights in models],
            "files": atomic.files_digest(split.files(indices)), "images": _ids_digest(split, indices),
            "setting": {"crop_size": mc.crop_size, "batch_size": mc.run.batch_size,
                        "skip_bad": mc.run.skip_bad},
            "versions": cache.versions(), "isa": isa.effective_level(), "threads": threads(), "code": _code(modules)}


def _reused(mc, kind: str, fields: dict | None, make, write, read):
    """`make()`'s result, kept in a `kind` entry of key `fields` (`write(result, folder)`) and read back from it by
    later runs (`read(entry)`); made afresh where `fields` is None or an intact entry holds what this code cannot read."""
    if fields is None:
        return make()
    made = []

    def made_now(folder):
        made.append(make())
        return write(made[0], folder)

    entry = cache.get_or_build(mc.run.cache_dir, kind, fields, made_now)
    if entry.built:
        return made[0]
    try:
        return read(entry)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:  # intact on disk, but not what this code reads
        log.warning("cached %s %s is unreadable (%s); made again", kind, entry.path, err)
        return make()


def evaluation(mc, precision: str, block, split, indices, evaluate, weights: str | None,
               reference: Outputs | None = None) -> Evaluation:
    """The `precision` evaluation of `block` (a model of `mc` whose weights file has digest `weights`; None: a model not
    built from that file here, never cached) on `split`'s samples at `indices`, compared image by image with `reference`
    (FP32's outputs, for INT8): from the cache where an entry of the same key holds it, else `evaluate(kept)`, kept.
    FP32 keeps the outputs of its first `kept` images (evaluate.compared_images), which INT8 is compared with; INT8 none."""
    kept = evaluate_module.compared_images(mc.kind.num_classes, mc.crop_size, len(indices)) if precision == "fp32" else 0
    fields = _fields(mc, split, indices, [(block, weights)], MEASURING)
    if fields is not None and reference is not None:
        fields["reference"] = hashlib.sha256(reference.classes.tobytes() + reference.logits.tobytes()).hexdigest()[:20]
    if fields is not None and kept:
        fields["kept"] = kept  # the gate and tune both evaluate FP32 under one key: what it holds is in the key

    def write(found, folder):
        atomic.write_json(folder / "evaluation.json", found.to_dict())
        if found.outputs is not None:  # the folder is staged: published whole, with the JSON, by one rename
            found.outputs.save(folder / OUTPUTS)
        return {"model": mc.name, "split": split.split, "evaluated_images": len(indices)}

    def read(entry):
        kept = entry.file(OUTPUTS)
        return Evaluation.from_dict(json.loads(entry.file("evaluation.json").read_text()), cached=True,
                                    outputs=Outputs.load(kept) if kept.is_file() else None)

    return _reused(mc, f"{precision}-eval", fields, lambda: evaluate(kept), write, read)


def localisation(mc, models, split, indices, compare) -> Localisation:
    """The per-layer comparison of `models` ((FP32 block, weights digest), (INT8 block, weights digest)) on `split`'s
    samples at `indices`: from the cache where an entry of the same key holds it, else `compare()`, kept."""
    def write(found, folder):
        atomic.write_json(folder / "localisation.json", {
            "layers": [[e.name, e.sqnr_db, e.cosine, list(e.per_image), list(e.signal)] for e in found.layers],
            "upstream": found.upstream, "flip_low_margin": found.flip_low_margin, "flip_all": found.flip_all,
            "images": found.images})
        return {"model": mc.name, "compared_images": found.images}

    def read(entry):
        doc = json.loads(entry.file("localisation.json").read_text())
        errors = tuple(LayerError(name, sqnr_db, cosine, tuple(each), tuple(energy))
                       for name, sqnr_db, cosine, each, energy in doc["layers"])
        return Localisation(errors, {name: list(up) for name, up in doc["upstream"].items()}, doc["flip_low_margin"],
                            doc["flip_all"], doc["images"])

    return _reused(mc, "layers", _fields(mc, split, indices, models, COMPARING), compare, write, read)


def round_trip(mc, model, split, indices, check) -> bool:
    """The deploy round trip of `model` ((INT8 block, weights digest)) on `split`'s samples at `indices`: `check()`,
    which raises where the re-imported export predicts otherwise, run unless an entry of the same key holds its pass
    (only a pass is kept). True where it was read from the cache."""
    def write(_, folder):
        atomic.write_json(folder / "round-trip.json", {"images": len(indices), "equal": True})
        return {"model": mc.name, "compared_images": len(indices)}

    fields = _fields(mc, split, indices, [model], DEPLOYING)
    return bool(_reused(mc, "deploy", fields, check, write, lambda entry: True))


def _ids_digest(split, indices) -> str:
    return hashlib.sha256("\n".join(split.ids[i] for i in indices).encode()).hexdigest()[:20]

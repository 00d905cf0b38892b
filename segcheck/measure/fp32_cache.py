"""FP32 evaluations reused across runs: an FP32 evaluation depends only on the FP32 graph and weights, the images,
the setting and the environment, so a run that changes only the INT8 side (the calibration recipe, a shipped INT8
file) reads it from the cache instead of evaluating again.

The key digests the fused graph the model runs (Gluon's per-process counters cut) and its weights file, the image and
mask files themselves, the images' ids, the setting and the environment; an entry is written atomically and a damaged
one is evaluated again, never trusted (models.cache). A model a plugin put in place of the built one (a fault) is
never read from the cache: its weights are not the file's.
"""

from __future__ import annotations

import hashlib
import json
import logging

from .. import atomic
from ..config import isa
from ..models import cache
from ..models.export import graph_json
from .calibration import stable
from .environment import threads
from .evaluate import Evaluation, Outputs

log = logging.getLogger("segcheck.fp32_cache")


def graph_digest(block) -> str:
    """The fused graph: its nodes' ops, inputs, attributes and names without per-process counters."""
    digest = hashlib.sha256()
    for node in json.loads(graph_json(block))["nodes"]:
        digest.update(json.dumps([node["op"], stable(node["name"]), node.get("attrs", {}), node.get("inputs", [])],
                                 sort_keys=True).encode())
    return digest.hexdigest()[:20]


FORMAT = 2  # of an entry (segcheck's own image reading is keyed by its source: cache.versions)
OUTPUTS = "outputs.npz"  # the first images' FP32 outputs, which INT8 is compared with (evaluate.Outputs)
def evaluation(mc, block, split, indices, evaluate, weights: str | None) -> Evaluation:
    """The FP32 evaluation of `block` (the FP32 model of `mc`, whose weights file has digest `weights`; None: a model
    not built from that file here, which is never cached) on `split`'s samples at `indices`: from the cache where an
    entry of the same key holds it, else `evaluate()`, written to the cache for the next run. Off with --no-fp32-cache."""
    if not mc.run.fp32_cache or weights is None:
        return evaluate()
    fields = {"format": FORMAT, "graph": graph_digest(block), "weights": weights, "files": atomic.files_digest(split.files(indices)),
              "images": _ids_digest(split, indices), "setting": {"crop_size": mc.crop_size, "base_size": mc.base_size,
                                                                  "batch_size": mc.run.batch_size, "skip_bad": mc.run.skip_bad},
              "versions": cache.versions(), "isa": isa.effective_level(), "threads": threads()}
    made = {}

    def build(folder):
        made["evaluation"] = found = evaluate()
        atomic.write_json(folder / "evaluation.json", found.to_dict())
        if found.outputs is not None:  # the folder is staged: published whole, with the JSON, by one rename
            found.outputs.save(folder / OUTPUTS)
        return {"model": mc.name, "evaluated_images": len(indices)}

    entry = cache.get_or_build(mc.run.cache_dir, "fp32-eval", fields, build)
    if entry.built:
        return made["evaluation"]
    try:
        kept = entry.file(OUTPUTS)
        return Evaluation.from_dict(json.loads(entry.file("evaluation.json").read_text()), cached=True,
                                    outputs=Outputs.load(kept) if kept.is_file() else None)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:  # intact on disk, but not an evaluation this code reads
        log.warning("cached FP32 evaluation %s is unreadable (%s); evaluating again", entry.path, err)
        return evaluate()


def _ids_digest(split, indices) -> str:
    return hashlib.sha256("\n".join(split.ids[i] for i in indices).encode()).hexdigest()[:20]

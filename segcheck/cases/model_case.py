"""One model of a run (NNCF-style case): FP32 and INT8 built lazily, each evaluated at most once.

The backend work that can crash (calibrating and first running the INT8 model, evaluating, the per-layer
comparison, the ONNX export for the peers) runs in a forked child (guard.isolated): a crash fails this case's checks,
naming the signal, and the run goes on. A crash is remembered, so the case's other checks fail with it at once. A cached
INT8 model that has already run under this process's dispatch is loaded without the child.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import weakref
from functools import cached_property
from pathlib import Path

import mxnet as mx
import numpy as np

from ..config.recipes import PEERS
from ..config.run import ModelConfig, tier_defaults
from ..data import loaders
from ..errors import MissingResource, SegcheckError
from ..models import export, pipeline
from ..peers import scoring
from ..peers.environment import PeerMissing, usable_python
from ..measure import environment, evaluation_cache, guard, layers, memory
from ..measure.evaluate import Evaluation, compared_images, evaluate, predict

# The images (the split's first) per-layer error is measured on. A clipped range harms the few images with the largest
# activations, and 8 images hold too few of them to show that harm: 48 when recording and against a reference that
# differs (ISA, MXNet, recipe). Against a record of this run's own kind 8 stay, to keep the default run short: there any
# change at all is seen by the digest and range checks (the exact tier's noise is none), if not always weighed as harm.
LAYER_IMAGES = 8
LAYER_IMAGES_ACROSS = 48
# The models cases built from their configuration (not put in place by a plugin), by block: the digest of the weights
# file each was loaded from, taken when it was built. A case one is handed over to (pytest_segcheck_reuse) keys its
# evaluations by it as the case that built it does, so it reads them from the cache; a plugin's model is not here.
_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
FIRST_RUN = "INT8 model (calibration and first run)"
# What a case makes, each once, by name: a plugin may hand any of them over (pytest_segcheck_reuse).
PARTS = ("fp32", "int8", "val", "fp32_symbol", "localisation", "fp32-evaluation", "int8-evaluation", "onnx",
         *(f"peer-{runtime}" for runtime in PEERS))


def exporter_present() -> None:
    """PeerMissing where this MXNet has no ONNX exporter (mx2onnx, mxnet.onnx, came with 1.9.0)."""
    if importlib.util.find_spec("mxnet.onnx") is None:
        raise PeerMissing(f"mxnet {mx.__version__} has no ONNX exporter (mxnet.onnx, mx2onnx, came with 1.9.0): "
                                "the peer cases need mxnet >= 1.9")


class ModelCase:
    """`on_missing(err)` decides what absent weights or data mean (the pytest plugin skips or fails). `hooks`, where
    given, is pytest's hook relay of segcheck's hookspecs (plugin.hookspecs): a plugin may hand over a part made
    elsewhere in this process (pytest_segcheck_reuse), replace a built model (pytest_segcheck_model), the calibration
    recipe (pytest_segcheck_calibration_recipe), the network exported to the peers (pytest_segcheck_peer_network) or
    their calibration images (pytest_segcheck_peer_calibration). `peer_latency` is the rule the peers time with."""

    def __init__(self, config: ModelConfig, on_missing, hooks=None, peer_latency: dict = scoring.LATENCY):
        self.config, self._on_missing, self._hooks, self._peer_latency = config, on_missing, hooks, peer_latency
        self._parts = {}
        self._crashes = {}
        self._predictions = {}  # tuple of val ids -> MXNet's FP32 argmax on them (fp32_predictions)
        self._replaced = set()  # precisions whose model a plugin replaced
        self._footprints = {}  # "<model> <work>" -> MB a forked child's resident set rose doing it (guard.isolated)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def classes(self) -> tuple:
        return self.config.kind.classes

    def parts(self) -> dict:
        """What this case has made so far, by part name (PARTS)."""
        return dict(self._parts)

    def footprints(self) -> dict:
        """MB each of this case's forked works (its INT8 calibration, evaluations, ...) added to what it shared with
        this process: what the model costs beyond the pytest process, work by work."""
        return {what.removeprefix(f"{self.name} "): round(mb, 1) for what, mb in self._footprints.items()}

    def release(self) -> None:
        """Drop what this case made (its networks with their buffers, evaluations, predictions): its run is done with
        it. Whatever is asked for afterwards is made again (from the model cache where it can be)."""
        self._parts.clear()
        self._predictions.clear()
        self._replaced.clear()
        self.__dict__.pop("whole", None)

    def make(self, part: str):
        """Part `part` (PARTS), made now if it was not yet."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; a case makes {', '.join(PARTS)}")
        if part.endswith("-evaluation"):
            return self.evaluation(part.partition("-")[0])
        if part.startswith("peer-"):
            return self.peer(part.partition("-")[2])
        return self.localisation() if part == "localisation" else getattr(self, part)

    def _part(self, part: str, make):
        """A part, made once: handed over by a plugin where one does, else made by `make` (missing weights or data
        go to on_missing)."""
        if part not in self._parts:
            reused = self._hooks.pytest_segcheck_reuse(case=self, part=part) if self._hooks else None
            if reused is not None:
                self._parts[part] = reused
            else:
                try:
                    self._parts[part] = make()
                except MissingResource as err:
                    self._on_missing(err)
                    raise
        return self._parts[part]

    def _stepped_in(self, precision: str, model):
        """The model a plugin puts in place of the one just built (a fault, say), or that one (registered as built)."""
        replaced = self._hooks.pytest_segcheck_model(case=self, precision=precision, model=model) if self._hooks else None
        if replaced is None:
            if precision == "fp32":
                _BUILT[model] = pipeline.fp32_weights(self.config)[1]
            elif model.entry is None:  # a shipped export: keyed by its files' digest
                _BUILT[model.block] = self.int8_key
            else:
                _BUILT[model.block] = model.entry.manifest["files"]["model-0000.params"]
            return model
        self._replaced.add(precision)
        return replaced

    def _isolated(self, what: str, work, images: int, phase: str):
        """`work` over `images` images in a forked child (guard.isolated), stopped past the case's timeout for that much
        work (guard.limit), its peak counted for the run's `phase`; a crash is raised again for every later call of the
        same work."""
        if what in self._crashes:
            raise self._crashes[what]
        try:
            return guard.isolated(f"{self.name} {what}", work, self.timeout(images), self._footprints, phase)
        except guard.BackendCrash as crash:
            self._crashes[what] = crash
            raise

    @cached_property
    def _first_run_marker(self) -> str:
        """The marker an INT8 entry holds once its model has been bound and run under this process's dispatch: what the
        oneDNN probe found (version, ISA, level), the cap in force, the CPU model and the threads (the entry's key holds
        the library, the ISA level and the threads, not the CPU or the cap)."""
        dispatch = environment.fingerprint(self.config.run.cache_dir).to_dict()
        return f"ran-{hashlib.sha1(json.dumps(dispatch, sort_keys=True).encode()).hexdigest()[:16]}"

    def timeout(self, images: int) -> float:
        """Seconds a child doing this case's work over `images` images may take (guard.limit)."""
        return guard.limit(images, self.config.crop_size, self.config.run.case_timeout)

    @property
    def fp32(self):
        """The fused FP32 model."""
        def build():
            with memory.phase("fit"):  # fitted on the synthetic tier (or loaded from the model cache), then fused
                return self._stepped_in("fp32", pipeline.fp32_net(self.config))

        return self._part("fp32", build)

    @property
    def recipe(self):
        """The calibration recipe (None for a shipped INT8 export), as a plugin may have changed it."""
        recipe = self.config.calib
        changed = self._hooks.pytest_segcheck_calibration_recipe(case=self, recipe=recipe) if self._hooks and recipe else None
        return recipe if changed is None else changed

    @property
    def peer_recipe(self):
        """The recipe whose calibration images the peers' quantizers take: this case's, or the tier's where it
        calibrates none (a shipped INT8 file, mode none)."""
        recipe = self.recipe
        return recipe if recipe is not None and recipe.mode != "none" else tier_defaults(self.config.tier)["calib"]

    @cached_property
    def int8_key(self) -> str:
        """What the INT8 figures are keyed by besides the setting: the recipe as calibrated (a plugin's change included),
        or the shipped INT8 file's digest."""
        if self.config.calib is None:
            return export.digest(self.config.int8_export)
        return self.recipe.label()

    @property
    def int8(self) -> pipeline.Int8Model:
        """The INT8 model: calibrated (into the cache) and run once in a forked child first, so that a backend crash
        stays there, then loaded here from the cache. A cached model that has run before under this process's dispatch
        (_first_run_marker) is loaded here at once; not where this case remembers a crash or the run trusts no cache
        (--no-eval-cache, which runs with code patched in: faults.Patched)."""
        def build():
            recipe = self.recipe if self.config.calib is not None else None
            ran = self._first_run_marker
            trusted = FIRST_RUN not in self._crashes and self.config.run.eval_cache
            model = pipeline.int8_model(self.config, recipe, ran, cached_only=True) if trusted else None
            if model is None:
                def calibrate_and_run() -> None:  # in the child: what it makes reaches this process through the cache
                    pipeline.int8_model(self.config, recipe, ran)

                self._isolated(FIRST_RUN, calibrate_and_run, recipe.num_examples + 1 if recipe else 1, "calibration")
                model = pipeline.int8_model(self.config, recipe, ran)
            return self._stepped_in("int8", model)

        return self._part("int8", build)

    def model(self, precision: str):
        return self.fp32 if precision == "fp32" else self.int8.block

    @property
    def val(self) -> loaders.Split:
        return self._part("val", lambda: pipeline.open_split(self.config, self.config.split))

    @property
    def fp32_symbol(self) -> str:
        """The graph the fused FP32 model runs, as JSON (its fusion is checked)."""
        return self._part("fp32_symbol", lambda: export.graph_json(self.fp32))

    def deploy_round_trip(self, folder: Path, count: int = 2) -> bool:
        """The seed's deploy step: the INT8 model exported to `folder` (<prefix>-symbol.json / -0000.params) and imported
        again with SymbolBlock.imports must predict what it predicts, on the split's first `count` images; in a forked
        child, as the other INT8 inference. A pass is kept in the evaluation cache: True where it was read from there."""
        block, indices = self.int8.block, loaders.first(self.val, min(count, len(self.val)))

        def round_trip() -> None:
            images = [x for x, _, _ in loaders.batches(self.val, indices, 1)]
            export.round_trip(block, Path(folder) / "model" / f"{self.name}-quantized", images)

        def checked() -> None:
            self._isolated("deploy round trip", round_trip, 2 * len(indices), "deploy round trip")

        return evaluation_cache.round_trip(self.config, (block, self._weights("int8")), self.val, indices, checked)

    def localisation(self, count: int = LAYER_IMAGES) -> layers.Localisation:
        """Per-layer SQNR and cosine of INT8 against the fused FP32, and the low-margin flip rate, on the split's first
        `count` images (at most the split); made once per case, again where the one held (handed over by a plugin, say)
        has fewer images than asked."""
        wanted = min(count, len(self.val))

        def compare():
            indices = loaders.first(self.val, wanted)
            fp32, int8 = self.fp32, self.int8.block

            def compared():
                images = [x for x, _, _ in loaders.batches(self.val, indices, 1)]
                return self._isolated("per-layer comparison", lambda: layers.localise(fp32, int8, images), 2 * len(images),
                                      "per-layer comparison")

            models = [(fp32, self._weights("fp32")), (int8, self._weights("int8"))]
            return evaluation_cache.localisation(self.config, models, self.val, indices, compared)

        held = self._part("localisation", compare)
        if held.images < wanted:
            held = self._parts["localisation"] = compare()
        return held

    def _weights(self, precision: str) -> str | None:
        """The digest of the weights file the `precision` model was built from, here or by the case that handed it over;
        None for a model a plugin put in place (its evaluations are never cached: evaluation_cache)."""
        if precision not in self._parts or precision in self._replaced:
            return None
        try:
            return _BUILT.get(self._parts[precision] if precision == "fp32" else self._parts[precision].block)
        except TypeError:  # handed over, and not an object a weak reference can hold: none of a case's own
            return None

    def _asked(self, hook: str, **arguments):
        """A plugin's answer to segcheck's hook `hook` about this case, or None."""
        return getattr(self._hooks, hook)(case=self, **arguments) if self._hooks else None

    def _may_answer(self, hook: str) -> bool:
        """Whether some plugin implements segcheck's hook `hook` (pytest's hook relay knows; a stand-in may)."""
        if not self._hooks:
            return False
        implementations = getattr(getattr(self._hooks, hook), "get_hookimpls", None)
        return implementations is None or bool(implementations())

    @property
    def onnx(self) -> Path:
        """The FP32 network exported to ONNX for the peer runtimes, in a forked child (mx2onnx runs MXNet's shape
        inference), from the cache: a network a plugin replaced is kept there by its content's digest. The network is
        built for a plugin that may replace it, else only where the cache does not hold its export."""
        def export():
            exporter_present()
            pipeline.fp32_params(self.config)  # a seeded fit here, not under the export child's one-image time limit
            hook = "pytest_segcheck_peer_network"
            replaced = self._asked(hook, net=pipeline.fp32_net(self.config, fused=False)) if self._may_answer(hook) else None
            if replaced is None:
                return self._isolated("ONNX export", lambda: pipeline.onnx_model(self.config), 1, "ONNX export")
            return self._isolated("ONNX export", lambda: pipeline.network_onnx(self.config, replaced), 1, "ONNX export")

        return self._remembered("onnx", export)

    def peer(self, runtime: str) -> scoring.PeerRun:
        """This case's network exported to ONNX and gated on `runtime`: FP32, and INT8 from the runtime's own quantizer
        calibrated on the images this case's INT8 calibrates on (the tier's recipe where it calibrates none: a shipped
        INT8 file, mode none), over the images this case evaluates. A failed export or peer run is remembered: the
        peer's other checks fail with it."""
        def gate():
            exporter_present()  # what cannot be fixed here is said first, then a missing peer environment, before any export
            usable_python()
            recipe = self.peer_recipe
            source, _ = pipeline.calibration_images(self.config, recipe)
            skip_bad = self.config.run.skip_bad
            batches = [x for x, _, _ in loaders.batches(source, recipe.images, recipe.batch_size, skip_bad)]
            replaced = self._asked("pytest_segcheck_peer_calibration", batches=batches)
            if replaced is not None and not len(replaced):
                raise SegcheckError(f"{self.name}: a plugin's pytest_segcheck_peer_calibration returned no batches")
            indices = self.indices
            # a network or images a plugin put in place (a fault) are other files, so another key of the peer runs
            return scoring.gate_run(runtime, self.onnx, self.val, indices, batches if replaced is None else replaced,
                                  self.config.run.cache_dir, self._peer_latency, skip_bad,
                                  self.timeout(len(indices) + recipe.num_examples), self.name)

        return self._remembered(f"peer-{runtime}", gate)

    def fp32_predictions(self, ids) -> np.ndarray:
        """MXNet's fused FP32 argmax on the val images `ids`, in that order (in a forked child, as evaluating is), made
        once per set of ids: every peer runtime of the case compares with the same images. Where they are the first
        images of the FP32 evaluation and it keeps that many (evaluated one image per batch; 48 at 64 px, 6 at 480), its
        classes there are taken."""
        key = tuple(ids)
        keeps = compared_images(self.config.kind.num_classes, self.config.crop_size, len(self.indices)) >= len(key)
        if key not in self._predictions and keeps and self.config.run.batch_size == 1:
            reference = self.evaluation("fp32")  # the gate's own, from the evaluation cache where it is there
            if reference.outputs is not None and reference.subset.ids[:len(key)] == key:
                self._predictions[key] = reference.outputs.classes[:len(key)]
        if key not in self._predictions:
            where = {image_id: i for i, image_id in enumerate(self.val.ids)}
            model = self.fp32

            def predict_all():
                return np.concatenate([predict(model, x) for x, _, _ in loaders.batches(self.val, [where[i] for i in ids], 1)])

            self._predictions[key] = self._isolated(f"FP32 predictions of {len(ids)} images", predict_all, len(ids), "evaluation")
        return self._predictions[key]

    def _remembered(self, part: str, make):
        """A part whose failure (an export, a peer run) is raised again for every later call instead of made again."""
        if part in self._crashes:
            raise self._crashes[part]
        try:
            return self._part(part, make)
        except Exception as err:  # pytest's skip and fail are BaseExceptions, never remembered
            if not isinstance(err, MissingResource):
                self._crashes[part] = err
            raise

    @property
    def indices(self) -> list:
        """The positions in the val split of the images this run evaluates (its shard's, when sharded)."""
        return loaders.shard(loaders.first(self.val, self.config.num_images), self.config.run.shard)

    @cached_property
    def whole(self) -> loaders.Subset:
        """The images a run evaluates when not sharded (a shard evaluates a contiguous block of them)."""
        return loaders.Subset(self.config.split, tuple(self.val.ids[i] for i in loaders.first(self.val, self.config.num_images)))

    def evaluation(self, precision: str) -> Evaluation:
        """The model's evaluation on the run's images: FP32 keeping its outputs on the first images (evaluate.
        compared_images), INT8 compared with them image by image."""
        def run():
            model = self.model(precision)
            indices = self.indices
            reference = self.evaluation("fp32").outputs if precision == "int8" else None

            def evaluated(keep):
                return self._isolated(f"{precision} evaluation", lambda: evaluate(
                    model, self.val, indices, self.config.run.batch_size, self.config.run.skip_bad,
                    desc=f"evaluating {self.name} {precision}", keep=keep, reference=reference), len(indices), "evaluation")

            return evaluation_cache.evaluation(self.config, precision, model, self.val, indices, evaluated,
                                               self._weights(precision), reference)

        return self._part(f"{precision}-evaluation", run)

"""A catalogue of quantization mutants injected below segcheck, in MXNet's own quantization module.

Each mutant patches mxnet.contrib.quantization (the calibration table it writes into the graph, the graph it
quantizes, its layer-output collector, the data it calibrates on, or the arguments of quantize_net_v2) while an
inner gate run calibrates afresh; the speed mutant slows the INT8 forward instead. tests/test_mutants.py runs them
(`pytest -m mutants`) and tabulates which check kills each one. A single-layer mutant records the layer it hit, named
here from MXNet's graph (the fused node's first inner convolution, its per-process prefix cut off), independently of
the names segcheck gives layers.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.contrib import quantization as q

from segcheck.results.kills import SPEED, STRUCTURE  # the classes judged by one check alone (kills.UNSCORED)

from faults import Int8Slowed, Patched, conv_outputs, layer_of

POSITIONS = ("first", "middle", "last")
SCALES = {"1/20": 1 / 20, "1/8": 1 / 8, "1/4": 1 / 4, "1/2": 1 / 2, "2": 2.0, "4": 4.0, "8": 8.0, "20": 20.0}
# Near the oracle's harm thresholds (a layer's own SQNR fall of 6 to 12 dB, a fall of agreement or mIoU of 0.5 to 1
# point, as the exploration of this catalogue measured them): one layer's range scaled at a quarter and three quarters
# of the graph and at its first layer, and every range scaled at once. The oracle decides what each is.
NEAR = {("3", "first"): 3.0, ("5", "first"): 5.0, ("1/3", "first"): 1 / 3, ("1/6", "middle"): 1 / 6,
        ("1/10", "middle"): 1 / 10, ("1/6", "quarter"): 1 / 6, ("1/8", "quarter"): 1 / 8, ("1/12", "quarter"): 1 / 12,
        ("1/6", "three-quarter"): 1 / 6, ("1/8", "three-quarter"): 1 / 8, ("1/12", "three-quarter"): 1 / 12}
EVERY_RANGE = {"0.7": 0.7, "0.75": 0.75, "0.8": 0.8}
BENIGN = "benign by intent"  # the classes of variants a user would not call a regression (the oracle still judges each)


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # its class in the kill table
    patch: object  # state -> list of (owner, attribute, original) to restore
    single_layer: bool = False  # it changes one layer, whose name it puts in state["layer"]
    replace_model: object = None  # a pytest_segcheck_model hook of its own (the speed mutant's slowed INT8 forward)


def _pick(items: list, position: str):
    if not items:
        raise LookupError("the mutant found no layer to change")
    n = len(items)
    return items[{"first": 0, "quarter": n // 4, "middle": n // 2, "three-quarter": 3 * n // 4, "last": n - 1}[position]]


def _edit_table(edit, position, state):
    """Change one layer's calibrated range as MXNet writes it into the graph (_calibrate_quantized_sym)."""
    original = q._calibrate_quantized_sym

    def calibrate(qsym, th_dict):
        key, state["layer"] = _pick([k for k in conv_outputs(qsym) if k[0] in th_dict], position)
        table = dict(th_dict)
        table[key] = edit(*table[key])
        return original(qsym, table)

    q._calibrate_quantized_sym = calibrate
    return [(q, "_calibrate_quantized_sym", original)]


def _wrap_quantize_net(change, state):
    """Call MXNet's quantize_net_v2 with changed arguments (`change(network, kwargs) -> kwargs`)."""
    original = q.quantize_net_v2

    def quantize_net_v2(network, **kwargs):
        return original(network, **change(network, dict(kwargs), state))

    q.quantize_net_v2 = quantize_net_v2
    return [(q, "quantize_net_v2", original)]


def _exclude_one(position, state):
    """Leave one convolution in FP32, as a wrong exclude list inside MXNet's graph pass would."""
    original = q.quantize_graph

    def quantize_graph(sym, **kwargs):
        convs = [n for n in json.loads(sym.tojson())["nodes"] if n["op"] == "_sg_mkldnn_conv"]
        node = _pick(convs, position)
        state["layer"] = layer_of(node)
        kwargs["excluded_sym_names"] = list(kwargs.get("excluded_sym_names") or []) + [node["name"]]
        return original(sym=sym, **kwargs)

    q.quantize_graph = quantize_graph
    return [(q, "quantize_graph", original)]


class _Images(mx.io.DataIter):
    """The calibration batches, changed on the way in."""

    def __init__(self, inner, change, limit=None):
        super().__init__(inner.batch_size)
        self.inner, self.change, self.limit, self.seen = inner, change, limit, 0
        self.provide_data, self.provide_label = inner.provide_data, inner.provide_label

    def reset(self):
        self.inner.reset()
        self.seen = 0

    def next(self):
        if self.limit is not None and self.seen >= self.limit:
            raise StopIteration
        batch = self.inner.next()
        self.seen += 1
        return mx.io.DataBatch(data=[self.change(d) for d in batch.data])


def _calibration_images(change, limit, examples, network, kwargs, state):
    kwargs["calib_data"] = _Images(kwargs["calib_data"], change, limit)
    if examples is not None:
        kwargs["num_calib_examples"] = examples
    return kwargs


def _every_range(edit, state):
    """Every calibrated range changed as MXNet writes the table into the graph (_calibrate_quantized_sym)."""
    original = q._calibrate_quantized_sym

    def calibrate(qsym, th_dict):
        return original(qsym, {key: edit(key, lo, hi) for key, (lo, hi) in th_dict.items()})

    q._calibrate_quantized_sym = calibrate
    return [(q, "_calibrate_quantized_sym", original)]


def _jitter(amplitude, seed):
    """Each bound of each range times 1 + u, u uniform in +-amplitude, seeded: a change well under a percent."""
    rng = np.random.default_rng(seed)
    draws = {}

    def edit(key, lo, hi):
        a, b = draws.setdefault(key, tuple(rng.uniform(-amplitude, amplitude, 2)))
        return lo * (1 + a), hi * (1 + b)

    return edit


class _Listed(mx.io.DataIter):
    """Calibration batches given as a list, described as the iterator they replace."""

    def __init__(self, batches, like):
        super().__init__(batches[0].shape[0])
        self.batches, self.next_index = batches, 0
        self.provide_data, self.provide_label = like.provide_data, like.provide_label

    def reset(self):
        self.next_index = 0

    def next(self):
        if self.next_index >= len(self.batches):
            raise StopIteration
        self.next_index += 1
        return mx.io.DataBatch(data=[self.batches[self.next_index - 1]])


def _other_images(cache_dir, start, examples, network, kwargs, state):
    """The calibration batches swapped, inside MXNet's quantize_net_v2, for `examples` other images of the synthetic
    VOC training split from image `start`: other images of the same distribution, read as segcheck reads them."""
    from segcheck.data import loaders, synthetic

    data = kwargs["calib_data"]
    batch, _, _, crop = data.provide_data[0].shape
    root = synthetic.ensure(cache_dir, "pascal_voc", synthetic.SyntheticSpec())
    split = loaders.open_split(synthetic_kind(), root, "train", crop, cache_dir, "the synthetic tier")
    kwargs["calib_data"] = _Listed([x for x, _, _ in loaders.batches(split, range(start, start + examples), batch)], data)
    kwargs["num_calib_examples"] = examples
    return kwargs


def synthetic_kind():
    from segcheck.data.kinds import DATASETS

    return DATASETS["pascal_voc"]


def _reversed_order(network, kwargs, state):
    """The same calibration batches, last first."""
    data = kwargs["calib_data"]
    data.reset()
    batches = []
    while True:
        try:
            batches.append(data.next().data[0])
        except StopIteration:
            break
    kwargs["calib_data"] = _Listed(batches[::-1], data)
    return kwargs


def _noise(d):
    return mx.nd.array(np.random.default_rng(0).uniform(-2, 2, size=d.shape).astype(np.float32))


def _set(key, value, network, kwargs, state):
    kwargs[key] = value
    if key == "calib_mode" and value == "none":
        kwargs["data_shapes"] = kwargs.pop("calib_data").provide_data
        kwargs.pop("num_calib_examples", None)
    return kwargs


def _convolutions(network) -> list:
    from segcheck.models.build import layers

    return list(layers(network, mx.gluon.nn.Conv2D))


def _batchnorms(network) -> list:
    from segcheck.models.build import layers

    return list(layers(network, mx.gluon.nn.BatchNorm))


def _saturate(position, network, kwargs, state):
    """The largest 5 % of one convolution's weights clipped: a saturated subset, before quantization."""
    path, layer = _pick(_convolutions(network), position)
    w = layer.weight.data().asnumpy()
    bound = np.quantile(np.abs(w), 0.95)
    layer.weight.set_data(mx.nd.array(np.clip(w, -bound, bound)))
    state["layer"] = re.sub(r"^[a-z]+[0-9]+_", "", layer.name) + "_fwd"
    return kwargs


def _bn_variance(position, network, kwargs, state):
    """One BatchNorm's running variance scaled by 4 in the network given to quantization (its folded scale halved)."""
    path, bn = _pick(_batchnorms(network), position)
    bn.running_var.set_data(bn.running_var.data() * 4.0)
    state["path"] = path
    return kwargs


class _Collector:
    """MXNet's naive layer-output collector (_LayerOutputMinMaxCollector.collect) changed: `change(collector, name, arr)`
    returns the array to collect for layer output `name`, or None to leave it out."""

    def __init__(self, change):
        self.change = change

    def patch(self, state):
        original = q._LayerOutputMinMaxCollector.collect
        change = self.change

        def collect(collector, name, arr):
            name = q.py_str(name)
            if name not in collector.include_layer:
                return None
            handle = mx.ndarray.NDArray(q.ctypes.cast(arr, q.NDArrayHandle), writable=False)
            changed = change(collector, name, handle, state)
            if changed is None:
                return None
            lo, hi = changed
            old = collector.min_max_dict.get(name)
            collector.min_max_dict[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            return None

        q._LayerOutputMinMaxCollector.collect = collect
        return [(q._LayerOutputMinMaxCollector, "collect", original)]


def _min_max(arr) -> tuple:
    return arr.min().asscalar(), arr.max().asscalar()


def _first_batch_dropped(collector, name, arr, state):
    """Every layer's statistics of the first calibration batch thrown away (the second one alone is kept)."""
    seen = state.setdefault("calls", {})
    seen[name] = seen.get(name, 0) + 1
    return None if seen[name] == 1 else _min_max(arr)


def _abs_max(collector, name, arr, state):
    """(-max|x|, max|x|) collected in place of (min, max): a symmetric range where the data is one-sided."""
    top = mx.nd.abs(arr).max().asscalar()
    return -top, top


def _from_another_layer(collector, name, arr, state):
    """The middle quantized convolution's statistics taken from the layer output collected just before it."""
    convs = sorted(n for n in collector.include_layer if n.startswith("sg_mkldnn_conv"))
    target = _pick(sorted(convs, key=lambda n: int(re.findall(r"(\d+)_output$", n)[0]) if re.findall(r"(\d+)_output$", n) else 0),
                   "middle")
    here = _min_max(arr)
    if name == target:
        state["target"] = target
        return state.get("previous", here)
    state["previous"] = here
    return here


def _catalogue() -> dict:
    found = {}

    def add(name, kind, patch, single_layer=False, replace_model=None):
        found[name] = Mutant(name, kind, patch, single_layer, replace_model)

    for label, k in SCALES.items():
        for pos in POSITIONS:
            add(f"scale-{label}-{pos}", "range scaled", partial(_edit_table, lambda lo, hi, k=k: (lo * k, hi * k), pos), True)
    for label, edit in (("swapped", lambda lo, hi: (hi, lo)), ("max-is-min", lambda lo, hi: (lo, lo)),
                        ("min-is-max", lambda lo, hi: (hi, hi))):
        for pos in POSITIONS:
            add(f"{label}-{pos}", "min/max mixed up", partial(_edit_table, edit, pos), True)
    for pos in POSITIONS:
        add(f"fp32-layer-{pos}", STRUCTURE, partial(_exclude_one, pos), True)
    for name, change, limit, examples in (
            ("calib-other-images", lambda d: mx.nd.flip(d, axis=3), None, None),
            ("calib-upside-down", lambda d: mx.nd.flip(d, axis=2), None, None),
            ("calib-first-batch-only", lambda d: d, 1, 16),
            ("calib-one-image", lambda d: mx.nd.repeat(d[:1], repeats=d.shape[0], axis=0), None, None),
            ("calib-darkened", lambda d: d * 0.5, None, None),
            ("calib-noise", _noise, None, None)):
        add(name, "calibration images", partial(_wrap_quantize_net, partial(_calibration_images, change, limit, examples)))
    for name, key, value, kind in (("mode-entropy", "calib_mode", "entropy", "calibration mode"),
                                   ("mode-none", "calib_mode", "none", "calibration mode"),
                                   ("dtype-int8", "quantized_dtype", "int8", "quantized dtype"),
                                   ("dtype-uint8", "quantized_dtype", "uint8", "quantized dtype"),
                                   ("quantize-mode-smart", "quantize_mode", "smart", "quantize mode")):
        add(name, kind, partial(_wrap_quantize_net, partial(_set, key, value)))
    for pos in POSITIONS:
        add(f"saturated-weights-{pos}", "saturated weights", partial(_wrap_quantize_net, partial(_saturate, pos)), True)
    for pos in POSITIONS:
        add(f"bn-variance-{pos}", "BN statistics", partial(_wrap_quantize_net, partial(_bn_variance, pos)))
    for name, change in (("collector-first-batch-dropped", _first_batch_dropped), ("collector-abs-max", _abs_max),
                         ("collector-other-layer", _from_another_layer)):
        add(name, "calibration collector", _Collector(change).patch)
    add("int8-slowed", SPEED, lambda state: [], replace_model=Int8Slowed().pytest_segcheck_model)
    for (label, pos), k in NEAR.items():
        add(f"near-scale-{label}-{pos}", "range scaled", partial(_edit_table, lambda lo, hi, k=k: (lo * k, hi * k), pos), True)
    for label, k in EVERY_RANGE.items():
        add(f"every-range-{label}", "every range scaled", partial(_every_range, lambda key, lo, hi, k=k: (lo * k, hi * k)))
    for amplitude, seed in ((0.001, 1), (0.001, 2), (0.003, 1), (0.003, 2), (0.005, 1)):
        add(f"benign-jitter-{amplitude * 100:g}pct-s{seed}", f"{BENIGN}: ranges jittered",
            lambda state, amplitude=amplitude, seed=seed: _every_range(_jitter(amplitude, seed), state))
    for start in (16, 48, 80, 112, 144, 176):  # not the sets the oracle's noise bands were measured on (32, 64, ..., 160)
        add(f"benign-images-{start}", f"{BENIGN}: other calibration images", partial(_uses_cache, start, 32))
    for examples in (48, 64):
        add(f"benign-{examples // 16}x16", f"{BENIGN}: more calibration images", partial(_uses_cache, 0, examples))
    add("benign-reversed-order", f"{BENIGN}: batch order", partial(_wrap_quantize_net, _reversed_order))
    return found


def _uses_cache(start, examples, state):
    """_other_images with the cache folder of the run the mutant is in (Mutation puts it into state)."""
    return _wrap_quantize_net(partial(_other_images, state["cache_dir"], start, examples), state)


MUTANTS = _catalogue()


class State(dict):
    """What a mutant hit. MXNet calibrates in a forked child of the gate's process (segcheck.measure.guard), so each key
    set is also written to a file, which the process that asked reads back (`recorded`)."""

    def __init__(self):
        super().__init__()
        handle, name = tempfile.mkstemp(prefix="segcheck-mutant-", suffix=".json")
        os.close(handle)
        self.path = Path(name)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.path.write_text(json.dumps({k: v for k, v in self.items() if isinstance(v, (str, int, float))}))

    def recorded(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        finally:
            self.path.unlink(missing_ok=True)


class Mutation(Patched):
    """A pytest plugin object: the mutant is in place from configure to unconfigure; `state` says what it hit.
    `cache_dir`: the segcheck cache holding the synthetic data (the mutants that calibrate on other images read it)."""

    def __init__(self, name: str, cache_dir=None):
        self.mutant, self.state = MUTANTS[name], State()
        dict.__setitem__(self.state, "cache_dir", cache_dir)
        super().__init__(lambda: self.mutant.patch(self.state))

    def pytest_segcheck_model(self, case, precision, model):
        return self.mutant.replace_model(case=case, precision=precision, model=model) if self.mutant.replace_model else None

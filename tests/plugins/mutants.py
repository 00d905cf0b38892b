"""A catalogue of quantization mutants injected below segcheck, in MXNet's own quantization module.

Each mutant patches mxnet.contrib.quantization (the calibration table it writes into the graph, the graph
it quantizes, the data it calibrates on, or the arguments of quantize_net_v2) while an inner gate run
calibrates afresh. tests/test_mutants.py runs them (`pytest -m mutants`) and tabulates which check kills
each one. A single-layer mutant records the stable name of its layer, for "is the right layer named first".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

import mxnet as mx
import numpy as np
from mxnet.contrib import quantization as q

from segcheck.measure.calibration import node_name

POSITIONS = ("first", "middle", "last")
SCALES = {"1/20": 1 / 20, "1/4": 1 / 4, "1/2": 1 / 2, "2": 2.0, "4": 4.0, "20": 20.0}


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # its class in the kill table
    patch: object  # state -> list of (owner, attribute, original) to restore


def _pick(items: list, position: str):
    return items[{"first": 0, "middle": len(items) // 2, "last": len(items) - 1}[position]]


def _conv_outputs(qsym) -> list:
    """The calibration-table keys of the quantized convolutions, in graph order, with the stable name of each."""
    nodes = json.loads(qsym.tojson())["nodes"]
    return [(n["name"][len("quantized_"):] + "_output", node_name(n)) for n in nodes
            if n["op"] == "_sg_mkldnn_conv" and n["name"].startswith("quantized_")]


def _edit_table(edit, position, state):
    """Change one layer's calibrated range as MXNet writes it into the graph (_calibrate_quantized_sym)."""
    original = q._calibrate_quantized_sym

    def calibrate(qsym, th_dict):
        keys = [k for k in _conv_outputs(qsym) if k[0] in th_dict]
        key, stable = _pick(keys, position)
        state["layer"] = stable
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
        nodes = json.loads(sym.tojson())["nodes"]
        convs = [n for n in nodes if n["op"] == "_sg_mkldnn_conv"]
        node = _pick(convs, position)
        state["layer"] = node_name(node)
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


def _set(key, value, network, kwargs, state):
    kwargs[key] = value
    if key == "calib_mode" and value == "none":
        kwargs["data_shapes"] = kwargs.pop("calib_data").provide_data
        kwargs.pop("num_calib_examples", None)
    return kwargs


def _saturate(position, network, kwargs, state):
    """The largest 5 % of one convolution's weights clipped: a saturated subset, before quantization."""
    convs = [(path, layer) for path, layer in _layers(network)]
    path, layer = _pick(convs, position)
    w = layer.weight.data().asnumpy()
    bound = np.quantile(np.abs(w), 0.95)
    layer.weight.set_data(mx.nd.array(np.clip(w, -bound, bound)))
    state["layer_path"] = path
    return kwargs


def _layers(network):
    from segcheck.models.build import layers

    return list(layers(network, mx.gluon.nn.Conv2D))


def _catalogue() -> dict:
    found = {}
    for label, k in SCALES.items():
        for pos in POSITIONS:
            found[f"scale-{label}-{pos}"] = Mutant(f"scale-{label}-{pos}", "range scaled",
                                                   partial(_edit_table, lambda lo, hi, k=k: (lo * k, hi * k), pos))
    for label, edit in (("swapped", lambda lo, hi: (hi, lo)), ("max-is-min", lambda lo, hi: (lo, lo)),
                        ("min-is-max", lambda lo, hi: (hi, hi))):
        for pos in POSITIONS:
            found[f"{label}-{pos}"] = Mutant(f"{label}-{pos}", "min/max mixed up", partial(_edit_table, edit, pos))
    for pos in POSITIONS:
        found[f"fp32-layer-{pos}"] = Mutant(f"fp32-layer-{pos}", "layer left in FP32", partial(_exclude_one, pos))
    flip = partial(_calibration_images, lambda d: mx.nd.flip(d, axis=3), None, None)
    first_batch = partial(_calibration_images, lambda d: d, 1, 16)
    one_image = partial(_calibration_images, lambda d: mx.nd.repeat(d[:1], repeats=d.shape[0], axis=0), None, None)
    for name, change in (("calib-other-images", flip), ("calib-first-batch-only", first_batch), ("calib-one-image", one_image)):
        found[name] = Mutant(name, "calibration images", partial(_wrap_quantize_net, change))
    for name, key, value, kind in (("mode-entropy", "calib_mode", "entropy", "calibration mode"),
                                   ("mode-none", "calib_mode", "none", "calibration mode"),
                                   ("dtype-int8", "quantized_dtype", "int8", "quantized dtype"),
                                   ("dtype-uint8", "quantized_dtype", "uint8", "quantized dtype"),
                                   ("channel-wise", "quantize_granularity", "channel-wise", "weight granularity")):
        found[name] = Mutant(name, kind, partial(_wrap_quantize_net, partial(_set, key, value)))
    for pos in POSITIONS:
        found[f"saturated-weights-{pos}"] = Mutant(f"saturated-weights-{pos}", "saturated weights",
                                                   partial(_wrap_quantize_net, partial(_saturate, pos)))
    return found


MUTANTS = _catalogue()


class Mutation:
    """A pytest plugin object: the mutant is in place from configure to unconfigure; `state` says what it hit."""

    def __init__(self, name: str):
        self.mutant, self.state, self.undo = MUTANTS[name], {}, []

    def pytest_configure(self, config):
        self.undo = self.mutant.patch(self.state)

    def pytest_unconfigure(self, config):
        for owner, attr, original in reversed(self.undo):
            setattr(owner, attr, original)
        self.undo = []

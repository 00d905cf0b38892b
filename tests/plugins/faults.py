"""Injects one realistic regression into a pytest run of the gate.

Faults at segcheck's seams step in through its hooks (plugin.hookspecs): a built model replaced, a calibration recipe
changed, the network exported to the peers or their calibration images replaced. Four faults live below: a bug in segcheck's own metric code, a oneDNN abort, and in MXNet one layer's range collapsed
or the layers to keep in FP32 quantized, patched in for the run and
taken out after. Used by the self-tests (tests/test_selfcheck.py) as a plugin object of an in-process run, or by hand:
    SEGCHECK_FAULT=ranges-shrunk PYTHONPATH=tests/plugins python -m pytest -p faults ...
"""

import ctypes
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import mxnet as mx
import numpy as np

from segcheck.measure import metrics
from segcheck.models import build, export, pipeline, quantize


def scale_ranges(symbol_json: str, factor: float) -> str:
    """Every calibrated range of a quantized symbol multiplied by `factor`."""
    doc = json.loads(symbol_json)
    for node in doc["nodes"]:
        attrs = node.get("attrs", {})
        for key in ("min_calib_range", "max_calib_range"):
            if key in attrs:
                attrs[key] = repr(float(attrs[key]) * factor)
    return json.dumps(doc)


class RangesRescaled:
    """Calibration thresholds multiplied by `factor` (1/8: saturation; 50: resolution lost), in the INT8 model gated."""

    def __init__(self, factor: float):
        self.factor, self.folders = factor, []

    def pytest_unconfigure(self, config):
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)

    def pytest_segcheck_model(self, case, precision, model):
        if precision != "int8":
            return None
        folder = Path(tempfile.mkdtemp(prefix="segcheck-fault-"))
        self.folders.append(folder)
        (folder / "model-symbol.json").write_text(scale_ranges(export.files(model.prefix)[0].read_text(), self.factor))
        (folder / "model-0000.params").symlink_to(export.files(model.prefix)[1])  # the weights, unchanged
        block = export.load(folder / "model")
        block(mx.nd.zeros((1, 3, case.config.crop_size, case.config.crop_size)))
        return replace(model, block=block, prefix=folder / "model")


class EveryConvExcluded:
    """Every convolution kept in FP32, as a broken exclude list would do."""

    def pytest_segcheck_calibration_recipe(self, case, recipe):
        mc = case.config
        return replace(recipe, exclude=tuple(quantize.conv_paths(build.build(mc.network, mc.crop_size))))


class Fp32WeightsPerturbed:
    """One layer's FP32 weights disturbed after loading (the head's 3x3 convolution, noise of its own scale): the FP32
    model gated is built again, as pipeline.fp32_net builds it, with that layer changed before fusion."""

    def pytest_segcheck_model(self, case, precision, model):
        if precision != "fp32":
            return None
        mc = case.config
        net = build.build(mc.network, mc.crop_size)
        build.load_params(net, pipeline.fp32_params(mc), ignore_prefixes=("auxlayer.",))
        weight = net.head.block[0].weight
        values = weight.data().asnumpy()
        noise = np.random.default_rng(0).normal(0.0, values.std(), size=values.shape).astype(values.dtype)
        weight.set_data(mx.nd.array(values + noise))
        return build.fuse(net, mc.crop_size)


class PeerExportWeightChanged:
    """One weight of the network exported to ONNX changed (the head's 3x3 convolution, noise of its own scale), as an
    export that mangles a tensor would: the peers run another network than MXNet's."""

    def pytest_segcheck_peer_network(self, case, net):
        weight = net.head.block[0].weight
        values = weight.data().asnumpy()
        noise = np.random.default_rng(0).normal(0.0, values.std(), size=values.shape).astype(values.dtype)
        weight.set_data(mx.nd.array(values + noise))
        return net


class PeerCalibratedOnConstantImages:
    """The peers' own quantizers calibrated on constant (all-zero, the normalised mean) images instead of real ones:
    every activation range is the biases' alone."""

    def pytest_segcheck_peer_calibration(self, case, batches):
        return [np.zeros(b.shape, dtype=np.float32) for b in batches]


class _Slowed:
    """An INT8 forward that does its work four times over, as when INT8 kernels fall back to a slow path.

    Four, not two: halving a 3x speed-up lands on the 1.5x minimum, and a fault must be caught every run.
    """

    repeats = 4

    def __init__(self, block):
        self.block = block

    def __call__(self, x):
        for _ in range(self.repeats - 1):
            self.block(x)
            mx.nd.waitall()  # each repeat finishes: MXNet would otherwise overlap them
        return self.block(x)


class _HangsInC:
    """An INT8 forward blocked in C (libc's sleep: no Python code runs, no signal handler), as a deadlocked kernel is."""

    def __init__(self, block):
        self.block = block

    def __call__(self, x):
        ctypes.CDLL(None).sleep(3600)
        return self.block(x)


class Int8HangsInC:
    """The FCN models' INT8 forward hangs in C: their INT8 cases must fail past the case timeout, the others pass."""

    def pytest_segcheck_model(self, case, precision, model):
        return replace(model, block=_HangsInC(model.block)) if precision == "int8" and case.name.startswith("fcn") else None


class Int8Slowed:
    def pytest_segcheck_model(self, case, precision, model):
        return replace(model, block=_Slowed(model.block)) if precision == "int8" else None


class Patched:
    """A fault patched in from configure to unconfigure: `patch()` returns [(owner, attribute, original)]. Its run reads
    no evaluation from the cache (--no-eval-cache): the cache's key sees files, not code patched in a process."""

    def __init__(self, patch):
        self.patch, self.undo = patch, []

    def pytest_configure(self, config):  # before segcheck's (trylast), which reads the option
        config.option.no_eval_cache = True
        self.undo = self.patch()

    def pytest_unconfigure(self, config):
        for owner, attr, original in reversed(self.undo):
            setattr(owner, attr, original)
        self.undo = []


def _ignore_label_counted():
    """The metric counts VOC's ignore label as background instead of leaving it out (a bug in segcheck's own code)."""
    original = metrics.ConfusionMatrix.update

    def update(self, pred, label):
        label = np.asarray(label)
        if np.issubdtype(label.dtype, np.integer):
            label = np.where(np.isin(label, metrics.IGNORE_LABELS), 0, label)
        return original(self, pred, label)

    metrics.ConfusionMatrix.update = update
    return [(metrics.ConfusionMatrix, "update", original)]


def _backend_abort():
    """oneDNN aborting in the per-layer comparison of the FCN models only (a native abort(), as a failed primitive
    does): MXNet's Group, which builds the graph with every layer's output, aborts when it groups several outputs of an
    FCN's graph (Gluon's own single-output Group, which fusing an FCN in this process calls, is left alone)."""
    original = mx.sym.Group

    def group(symbols, *args, **kwargs):
        if len(symbols) > 1 and any(name.startswith("fcn") for name in symbols[0].list_arguments()):  # fcn0_..._weight
            ctypes.CDLL(None).abort()
        return original(symbols, *args, **kwargs)

    mx.sym.Group = group
    return [(mx.sym, "Group", original)]


class BackendAbort(Patched):
    """_backend_abort patched in, the cache trusted: an abort keeps nothing, and the figures of every other model are
    what they would be without it. The FCN models count as a plugin's (pytest_segcheck_model), whose evaluations are
    never read from the cache, so that the FCN's per-layer comparison is made, and aborts."""

    def __init__(self):
        super().__init__(_backend_abort)

    def pytest_configure(self, config):
        self.undo = self.patch()

    def pytest_segcheck_model(self, case, precision, model):
        return model if case.name.startswith("fcn") else None


def layer_of(node: dict) -> str:
    """A fused node's layer as MXNet names it: its first inner Convolution (else the node), without the leading
    '<network><counter>_' prefix that Gluon adds per process (fcn3_resnetv1s_conv0_fwd -> resnetv1s_conv0_fwd)."""
    inner = [m["name"] for g in node.get("subgraphs", []) for m in g["nodes"] if m["op"] == "Convolution"]
    return re.sub(r"^[a-z]+[0-9]+_", "", inner[0] if inner else node["name"])


def conv_outputs(qsym) -> list:
    """(calibration-table key, layer) of the quantized convolutions, in graph order."""
    nodes = json.loads(qsym.tojson())["nodes"]
    return [(n["name"][len("quantized_"):] + "_output", layer_of(n)) for n in nodes
            if n["op"] == "_sg_mkldnn_conv" and n["name"].startswith("quantized_")]


COLLAPSED_LAYER = "resnetv1s_layers3_conv42_fwd"  # three quarters down the backbone of the FCN and PSP ResNet-101s
# fcn_resnet101_voc's first, middle and last quantized convolutions (the kill tables' `layer` of each position)
POSITIONS = {"first": "resnetv1s_conv0_fwd", "middle": "resnetv1s_layers3_conv27_fwd",
             "last": "_fcnhead0_hybridsequential0_conv1_fwd"}


def _most_unlike(table: dict, keys: list, key: str) -> str:
    """The calibration-table key of the other convolution whose range is most unlike the layer's own (the largest
    magnitudes furthest apart, by ratio), whatever its sign, as a collector filing statistics under the wrong layer
    would give: a narrower range saturates the layer, a wider one loses its resolution, and a two-sided range given to a
    layer whose fused ReLU makes its output unsigned makes MXNet refuse the graph (data_min < 0), which tune must trace
    to the layer."""
    def magnitude(k):
        return max(abs(float(v)) for v in table[k])

    own = magnitude(key)
    if not math.isfinite(own) or own <= 0:
        raise ValueError(f"{key}: calibrated range {table[key]} has no magnitude to compare other layers' with")
    usable = [k for k in keys if k != key and math.isfinite(magnitude(k)) and magnitude(k) > 0]
    return max(usable, key=lambda k: abs(math.log(magnitude(k) / own)))


# How a pinned fault changes a layer's calibrated range: (table, its key, every quantized convolution's key) -> range
EDITS = {"scaled-1/20": lambda table, key, keys: tuple(v / 20 for v in table[key]),
         "max-is-min": lambda table, key, keys: (table[key][0], table[key][0]),
         "from-another-layer": lambda table, key, keys: table[_most_unlike(table, keys, key)]}


def _pinned(edit: str, layer: str):
    """MXNet writes one convolution's calibrated range changed by EDITS[edit] into the graph (_calibrate_quantized_sym),
    that convolution found by name, so that keeping it in FP32 (excluded, so not quantized) leaves the fault nothing to
    change: it does not move to another layer, as a fault picked by position would."""
    from mxnet.contrib import quantization as q

    original, change = q._calibrate_quantized_sym, EDITS[edit]

    def calibrate(qsym, th_dict):
        table = dict(th_dict)
        convs = [(key, name) for key, name in conv_outputs(qsym) if key in table]
        keys = [key for key, _ in convs]
        for key, name in convs:
            if name == layer:
                table[key] = change(th_dict, key, keys)
        return original(qsym, table)

    q._calibrate_quantized_sym = calibrate
    return [(q, "_calibrate_quantized_sym", original)]


def _layer_collapsed():
    """One layer's calibrated range divided by 20 in MXNet: it saturates (segcheck tune's end-to-end test)."""
    return _pinned("scaled-1/20", COLLAPSED_LAYER)


def _exclusions_ignored():
    """MXNet's graph pass quantizes the layers it was asked to keep in FP32 (excluded_sym_names dropped)."""
    from mxnet.contrib import quantization as q

    original = q.quantize_graph

    def quantize_graph(sym, **kwargs):
        return original(sym=sym, **{**kwargs, "excluded_sym_names": []})

    q.quantize_graph = quantize_graph
    return [(q, "quantize_graph", original)]


FAULTS = {
    "layer-collapsed": lambda: Patched(_layer_collapsed),
    "exclusions-ignored": lambda: Patched(_exclusions_ignored),
    "ranges-shrunk": lambda: RangesRescaled(1 / 8),
    "ranges-blown-up": lambda: RangesRescaled(50.0),
    "every-conv-excluded": EveryConvExcluded,
    "fp32-weights-perturbed": Fp32WeightsPerturbed,
    "int8-slowed": Int8Slowed,
    "int8-native-hang": Int8HangsInC,
    "ignore-label-counted": lambda: Patched(_ignore_label_counted),
    "backend-abort": BackendAbort,
    "peer-export-weight-changed": PeerExportWeightChanged,
    "peer-calibrated-on-constant-images": PeerCalibratedOnConstantImages,
}


def Fault(name: str):
    """The plugin object of fault `name`; pinned:EDIT:LAYER changes that layer's range (EDITS)."""
    kind, _, rest = name.partition(":")
    if kind == "pinned":
        edit, _, layer = rest.partition(":")
        return Patched(lambda: _pinned(edit, layer))
    return FAULTS[name]()


def pytest_configure(config):
    name = os.environ.get("SEGCHECK_FAULT")
    if name:
        config.pluginmanager.register(Fault(name), "segcheck-fault")  # pytest_configure is historic: it runs at once

"""Injects one realistic quantization regression into a pytest run of the gate, and takes it out after.

Used by the self-tests (tests/test_selfcheck.py) as a plugin object of an in-process run, or by hand:
    SEGCHECK_FAULT=ranges-shrunk PYTHONPATH=tests python -m pytest -p faults ...
"""

import json
import os
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


def _rescaled_ranges(factor):
    """Calibration thresholds multiplied by `factor` (1/8: saturation; 50: resolution lost)."""
    original = pipeline.int8_model

    def int8_model(mc, recipe=None):
        model = original(mc, recipe)
        folder = Path(tempfile.mkdtemp(prefix="segcheck-fault-"))
        (folder / "model-symbol.json").write_text(scale_ranges((model.entry.path / "model-symbol.json").read_text(), factor))
        (folder / "model-0000.params").symlink_to(model.entry.path / "model-0000.params")  # the weights, unchanged
        block = export.load(folder / "model")
        block(mx.nd.zeros((1, 3, mc.crop_size, mc.crop_size)))
        return replace(model, block=block, prefix=folder / "model")

    pipeline.int8_model = int8_model
    return [(pipeline, "int8_model", original)]


def _every_conv_excluded():
    """Every convolution kept in FP32, as a broken exclude list would do."""
    original = pipeline.int8_model

    def int8_model(mc, recipe=None):
        recipe = recipe or mc.calib
        convs = tuple(quantize.conv_paths(build.build(mc.network, mc.crop_size)))
        return original(mc, replace(recipe, exclude=convs))

    pipeline.int8_model = int8_model
    return [(pipeline, "int8_model", original)]


def _fp32_weights_perturbed():
    """One layer's FP32 weights disturbed after loading (the head's 3x3 convolution, noise of its own scale)."""
    original = build.load_params

    def load_params(net, path, *args, **kwargs):
        original(net, path, *args, **kwargs)
        weight = net.head.block[0].weight
        values = weight.data().asnumpy()
        noise = np.random.default_rng(0).normal(0.0, values.std(), size=values.shape).astype(values.dtype)
        weight.set_data(mx.nd.array(values + noise))

    build.load_params = load_params
    return [(build, "load_params", original)]


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


def _int8_slowed():
    original = pipeline.int8_model

    def int8_model(mc, recipe=None):
        model = original(mc, recipe)
        return replace(model, block=_Slowed(model.block))

    pipeline.int8_model = int8_model
    return [(pipeline, "int8_model", original)]


def _ignore_label_counted():
    """The metric counts VOC's ignore label as background instead of leaving it out."""
    original = metrics.ConfusionMatrix.update

    def update(self, pred, label):
        label = np.asarray(label)
        if np.issubdtype(label.dtype, np.integer):
            label = np.where(np.isin(label, metrics.IGNORE_LABELS), 0, label)
        return original(self, pred, label)

    metrics.ConfusionMatrix.update = update
    return [(metrics.ConfusionMatrix, "update", original)]


FAULTS = {
    "ranges-shrunk": lambda: _rescaled_ranges(1 / 8),
    "ranges-blown-up": lambda: _rescaled_ranges(50.0),
    "every-conv-excluded": _every_conv_excluded,
    "fp32-weights-perturbed": _fp32_weights_perturbed,
    "int8-slowed": _int8_slowed,
    "ignore-label-counted": _ignore_label_counted,
}


class Fault:
    """A pytest plugin object: the fault is in place from configure to unconfigure."""

    def __init__(self, name: str):
        self.name, self.undo = name, []

    def pytest_configure(self, config):
        self.undo = FAULTS[self.name]()

    def pytest_unconfigure(self, config):
        for owner, attr, original in reversed(self.undo):
            setattr(owner, attr, original)
        self.undo = []


def pytest_configure(config):
    name = os.environ.get("SEGCHECK_FAULT")
    if name:
        config.pluginmanager.register(Fault(name), "segcheck-fault")

"""INT8 through mxnet.contrib.quantization: exclusions located in the fused graph, then quantize_net."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mxnet as mx

from ..config.recipes import EXCLUDE_LAYERS, CalibRecipe
from ..errors import RefusedRanges, SegcheckError
from .build import child, layers
from .export import graph_json
from .graph import inner_convs, input_dtype, negative_unsigned_ranges


class _Batches(mx.io.DataIter):
    """Calibration batches for quantize_net, with a progress callback per batch."""

    def __init__(self, batches: list, on_batch=None):
        super().__init__(batches[0].shape[0])
        self._batches, self._on_batch, self._next = batches, on_batch, 0
        self.provide_data = [mx.io.DataDesc("data", batches[0].shape)]
        self.provide_label = None

    def reset(self):
        self._next = 0

    def next(self):
        if self._next >= len(self._batches):
            raise StopIteration
        batch = self._batches[self._next]
        self._next += 1
        if self._on_batch:
            self._on_batch()
        return mx.io.DataBatch(data=[batch])


def conv_paths(net) -> list:
    """Dotted child paths of every Conv2D in `net`, in definition order."""
    return [path for path, _ in layers(net, mx.gluon.nn.Conv2D)]


def conv_names(net) -> dict:
    """Dotted child path -> the name of the graph node each Conv2D of `net` becomes (<prefix>_fwd), which is also the
    inner convolution's name inside a fused node."""
    return {path: layer.name + "_fwd" for path, layer in layers(net, mx.gluon.nn.Conv2D)}


def fused_names(net, crop_size: int, paths) -> list:
    """Names, after oneDNN fusion, of the graph nodes that run the convolutions at dotted `paths`.

    quantize_net matches exclude_layers against the fused graph (sg_mkldnn_conv_bn_act_N), so the
    Gluon layers are located through the same MKLDNN_QUANTIZE pass it applies.
    """
    wanted = []
    for path in paths:
        try:
            wanted.append(child(net, path).name + "_fwd")
        except KeyError:
            raise SegcheckError(f"cannot exclude layer {path!r}: the network has no such child") from None
    if not wanted:
        return []
    net.hybridize()
    net(mx.nd.zeros((1, 3, crop_size, crop_size)))
    with tempfile.TemporaryDirectory() as tmp:
        net.export(str(Path(tmp) / "net"), epoch=0)
        symbol = mx.sym.load(str(Path(tmp) / "net-symbol.json"))
    owner = {}
    for node in json.loads(symbol.get_backend_symbol("MKLDNN_QUANTIZE").tojson())["nodes"]:
        for inner in inner_convs(node) or ([node["name"]] if node["op"] == "Convolution" else []):
            owner[inner] = node["name"]
    missing = [name for name in wanted if name not in owner]
    if missing:
        raise SegcheckError(f"cannot exclude {missing[0]}: it is not a convolution of the graph")
    return sorted({owner[name] for name in wanted})


def quantize(net, arch: str, recipe: CalibRecipe, calib_batches: list, crop_size: int, on_batch=None):
    """A calibrated INT8 SymbolBlock from the (unfused) FP32 `net`; calib_batches are B x 3 x H x W."""
    from mxnet.contrib import quantization

    quantize_net = getattr(quantization, "quantize_net_v2", None) or quantization.quantize_net
    exclude = fused_names(net, crop_size, EXCLUDE_LAYERS.get(arch, ()) + tuple(recipe.exclude))
    kwargs = dict(quantized_dtype=recipe.dtype, exclude_layers=exclude, calib_mode=recipe.mode, ctx=mx.cpu())
    if recipe.mode == "none":
        kwargs["data_shapes"] = [mx.io.DataDesc("data", (1, 3, crop_size, crop_size))]
    else:
        if not calib_batches:
            raise SegcheckError("calibration needs at least one batch of images")
        kwargs.update(calib_data=_Batches(calib_batches, on_batch), num_calib_examples=recipe.num_examples)
    qnet = quantize_net(net, **kwargs)
    qnet.hybridize(static_alloc=True, static_shape=True)
    probe = calib_batches[0][:1] if calib_batches else mx.nd.zeros((1, 3, crop_size, crop_size))
    try:
        qnet(probe)
        mx.nd.waitall()
    except mx.base.MXNetError as err:
        if "data_min < 0" in str(err):
            symbol_json = graph_json(qnet)  # built before it ran: MXNet refuses a graph it has
            refused = _refused_layers(symbol_json, net)
            if refused:
                raise refused from None
            dtype = input_dtype(symbol_json) or recipe.dtype
            raise SegcheckError(
                f"the quantized graph takes its input as {dtype} (the recipe asked for {recipe.dtype}), which needs "
                "non-negative input, but the normalised images have negative values; quantize to int8 "
                "(--calib-dtype auto or int8)"
            ) from None
        raise
    return qnet


def _refused_layers(symbol_json: str, net) -> RefusedRanges | None:
    """The error naming the convolutions of the quantized graph whose range MXNet's next quantized layer refuses
    (graph.NegativeRange), by the dotted path int8.exclude takes where `net` has one; None where no range explains the
    refusal."""
    found = negative_unsigned_ranges(symbol_json)
    if not found:
        return None
    path_of = {name: path for path, name in conv_names(net).items()}
    paths = tuple(path_of[r.layer] for r in found if r.layer in path_of)
    shown = "; ".join(f"{path_of.get(r.layer, r.layer)} [{r.low:g}, {r.high:g}]" for r in found)
    remedy = f"recalibrate, or keep it in FP32 (int8.exclude = {json.dumps(list(paths))})" if paths else "recalibrate"
    return RefusedRanges(f"MXNet refuses the quantized graph: the calibrated range of {shown} reaches below zero, but "
                         "its fused activation makes that output unsigned (uint8), which the next quantized layer cannot "
                         f"take (data_min < 0); the calibration statistics are wrong: {remedy}", paths)

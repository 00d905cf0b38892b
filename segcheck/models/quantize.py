"""INT8 through mxnet.contrib.quantization, and a structural check of every quantized graph."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mxnet as mx

from ..errors import SegcheckError
from .build import child, layers

CALIB_MODES = ("naive", "entropy", "none")
QUANTIZED_DTYPES = ("auto", "int8", "uint8")

# Layers kept in FP32 per architecture, as dotted Gluon child paths. Empty, as in the seed's test.py:
# measured on the synthetic tier, excluding the classifier changed INT8 accuracy by less than the noise.
EXCLUDE_LAYERS = {"fcn": (), "psp": (), "deeplab": ()}


@dataclass(frozen=True)
class CalibRecipe:
    """How INT8 thresholds are found: the seed's default is naive on 5 batches x 32 images."""

    mode: str = "naive"
    dtype: str = "auto"
    num_batches: int = 5
    batch_size: int = 32
    split: str = "train"  # disjoint from the evaluated val images; "val" reproduces the seed
    exclude: tuple = field(default=())  # extra dotted layer paths kept in FP32

    def __post_init__(self):
        if self.mode not in CALIB_MODES:
            raise SegcheckError(f"unknown calibration mode {self.mode!r}; choose one of {', '.join(CALIB_MODES)}")
        if self.dtype not in QUANTIZED_DTYPES:
            raise SegcheckError(f"unknown quantized dtype {self.dtype!r}; choose one of {', '.join(QUANTIZED_DTYPES)}")
        for name in ("num_batches", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SegcheckError(f"calibration {name} must be a positive integer, got {value!r}")

    @property
    def num_examples(self) -> int:
        return 0 if self.mode == "none" else self.num_batches * self.batch_size

    def label(self) -> str:
        if self.mode == "none":
            return f"none/{self.dtype}"
        return f"{self.mode}/{self.dtype}/{self.num_batches}x{self.batch_size}/{self.split}"

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


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
        for inner in _inner_convs(node) or ([node["name"]] if node["op"] == "Convolution" else []):
            owner[inner] = node["name"]
    missing = [name for name in wanted if name not in owner]
    if missing:
        raise SegcheckError(f"cannot exclude {missing[0]}: it is not a convolution of the graph")
    return sorted({owner[name] for name in wanted})


def quantize(net, arch: str, recipe: CalibRecipe, calib_batches: list, crop_size: int, on_batch=None):
    """A calibrated INT8 SymbolBlock from the (unfused) FP32 `net`; calib_batches are B x 3 x H x W."""
    from mxnet.contrib import quantization

    quantize_net = getattr(quantization, "quantize_net_v2", None) or quantization.quantize_net
    exclude = fused_names(net, crop_size, EXCLUDE_LAYERS[arch] + tuple(recipe.exclude))
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
            raise SegcheckError(
                f"quantized dtype {recipe.dtype} needs non-negative input, but the normalised images have "
                "negative values; use --quantized-dtype auto or int8"
            ) from None
        raise
    return qnet


@dataclass(frozen=True)
class GraphReport:
    """What a (fused) graph runs: convolutions in INT8 and FP32, and whether ranges are calibrated."""

    int8_convs: int
    fp32_convs: int
    calibrated_convs: int
    fp32_layers: tuple  # inner convolution names of the nodes left in FP32
    unfused_convs: int = 0  # plain Convolution nodes: not running through oneDNN's fused operator

    @property
    def convs(self) -> int:
        return self.int8_convs + self.fp32_convs

    @property
    def int8_share(self) -> float:
        return self.int8_convs / self.convs if self.convs else 0.0


def _inner_convs(node) -> list:
    return [m["name"] for g in node.get("subgraphs", []) for m in g["nodes"] if m["op"] == "Convolution"]


def inspect_graph(symbol_json: str) -> GraphReport:
    """Count convolutions in a symbol JSON: oneDNN fused (_sg_mkldnn_conv), quantized or not."""
    nodes = json.loads(symbol_json)["nodes"]
    int8 = fp32 = calibrated = unfused = 0
    fp32_layers = []
    for node in nodes:
        unfused += node["op"] == "Convolution"
        attrs = node.get("attrs", {})
        if node["op"] in ("_sg_mkldnn_conv", "_contrib_quantized_conv", "Convolution"):
            if attrs.get("quantized") == "true" or node["op"] == "_contrib_quantized_conv":
                int8 += 1
                calibrated += "min_calib_range" in attrs and "max_calib_range" in attrs
            else:
                fp32 += 1
                fp32_layers.extend(_inner_convs(node) or [node["name"]])
    return GraphReport(int8, fp32, calibrated, tuple(fp32_layers), unfused)

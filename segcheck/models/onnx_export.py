"""Export an FP32 GluonCV network to ONNX with MXNet's own mx2onnx, for the peer runtimes (ONNX Runtime, OpenVINO).

mx2onnx 1.9.1 converts _contrib_AdaptiveAvgPooling2D only to a global pool, so PSPNet's pyramid pooling (bins 1,
2, 3, 6) gets a converter here: an exact AveragePool where the bins divide the feature map, and elsewhere (bins 3 and 6
of an 8x8 map at 64 px) MXNet's own windows, start floor(i*in/out) to end ceil((i+1)*in/out), each averaged.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import traceback
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph as mx_op
from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import convert_weights_and_inputs, get_inputs
from mxnet.onnx.mx2onnx._op_translations._op_translations_opset13 import OPSET_VERSION, create_tensor

from .. import atomic
from ..config.recipes import check_crop
from ..errors import SegcheckError
from . import export as deploy

FORMAT = 3  # of the exports this module writes: a change here exports again (models.pipeline.onnx_model)
ADAPTIVE_POOL = "_contrib_AdaptiveAvgPooling2D"
INPUT = "data"
# the highest opset mx2onnx 1.9.1 has converters for (it registers opset 12 and 13 translations)
OPSET = OPSET_VERSION


@dataclass(frozen=True)
class _Export:
    """What the adaptive-pooling converter needs to know and mx2onnx does not pass it: the input shape of each
    pooling node (by its index in the graph) and the network's input side."""

    shapes: dict
    crop: int


_CURRENT: ContextVar[_Export | None] = ContextVar("segcheck_onnx_export", default=None)


def output_size(text: str, height: int = 0, width: int = 0) -> tuple[int, int]:
    """An AdaptiveAvgPooling2D output_size attribute ("2", "(2, 3)", "(None, 4)") as (height, width); None keeps
    the input's side."""
    parts = [p.strip() for p in re.sub(r"[()\[\]]", "", str(text)).split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise SegcheckError(f"{ADAPTIVE_POOL}: cannot read output_size {text!r}; it must be one or two integers")
    sides = (height, width)
    return tuple(sides[i] if p == "None" else int(p) for i, p in enumerate(parts))


@mx_op.register(ADAPTIVE_POOL, OPSET_VERSION)
def convert_adaptive_avg_pooling(node, **kwargs):
    """mx2onnx converter: output size 1 is GlobalAveragePool; an output size that divides the input is an exact
    AveragePool with kernel = stride = input / output; any other is MXNet's windows, one ReduceMean each."""
    from onnx.helper import make_node

    name, inputs, attrs = get_inputs(node, kwargs)
    text = attrs.get("output_size", "1")
    if output_size(text, 1, 1) == (1, 1) and "None" not in str(text):
        return [make_node("GlobalAveragePool", [inputs[0]], [name], name=name)]
    context = _CURRENT.get()
    shape = context.shapes.get(kwargs.get("idx")) if context else None
    if shape is None:
        raise SegcheckError(f"{ADAPTIVE_POOL} {name}: its input shape is unknown to the converter (mx2onnx does not pass "
                            "shapes); export with segcheck.models.onnx_export.export, which infers them")
    height, width = shape[-2:]
    out_h, out_w = output_size(text, height, width)
    if out_h <= 0 or out_w <= 0 or out_h > height or out_w > width:
        raise SegcheckError(f"{ADAPTIVE_POOL} {name}: output size {out_h}x{out_w} cannot be taken from its "
                            f"{height}x{width} input at crop {context.crop}; export at a larger crop")
    if height % out_h == 0 and width % out_w == 0:
        kernel = (height // out_h, width // out_w)
        return [make_node("AveragePool", [inputs[0]], [name], kernel_shape=kernel, strides=kernel, name=name)]
    return _windows(name, inputs[0], (height, width), (out_h, out_w), kwargs["initializer"])


@mx_op.register("null", OPSET_VERSION)
def convert_weights_as_raw_data(node, **kwargs):
    """mx2onnx converter for a graph's weights and inputs: a weight as one raw little-endian block (numpy_helper),
    where mx2onnx's own writes it as a Python list of its values (half a ResNet-101 export's time); the same values
    either way. Inputs are mx2onnx's."""
    if kwargs["is_input"] is not False:
        return convert_weights_and_inputs(node, **kwargs)
    from onnx import helper, numpy_helper

    name, _, _ = get_inputs(node, kwargs)
    array = np.asarray(kwargs["weights"][name])
    tensor = numpy_helper.from_array(array, name)
    kwargs["initializer"].append(tensor)
    return [helper.make_tensor_value_info(name, tensor.data_type, array.shape)], (array.dtype,)


def _windows(name: str, source: str, size: tuple, out: tuple, initializer: list) -> list:
    """Adaptive average pooling as MXNet computes it: output cell (i, j) is the mean of rows floor(i*H/oh) to
    ceil((i+1)*H/oh) and the columns likewise; one Slice and one window-sized AveragePool per cell, the cells of a row
    concatenated, then the rows (the same ops in every opset mx2onnx writes)."""
    from onnx.helper import make_node

    nodes, rows = [], []
    create_tensor([2, 3], f"{name}_axes", initializer)
    for i in range(out[0]):
        cells = []
        for j in range(out[1]):
            cell = f"{name}_{i}_{j}"
            starts = [size[0] * i // out[0], size[1] * j // out[1]]
            ends = [-(-size[0] * (i + 1) // out[0]), -(-size[1] * (j + 1) // out[1])]
            create_tensor(starts, f"{cell}_starts", initializer)
            create_tensor(ends, f"{cell}_ends", initializer)
            window = [end - start for start, end in zip(starts, ends)]
            nodes += [make_node("Slice", [source, f"{cell}_starts", f"{cell}_ends", f"{name}_axes"], [f"{cell}_slice"]),
                      make_node("AveragePool", [f"{cell}_slice"], [cell], kernel_shape=window, strides=window)]
            cells.append(cell)
        rows.append(f"{name}_row{i}")
        nodes.append(make_node("Concat", cells, [rows[-1]], axis=3))
    nodes.append(make_node("Concat", rows, [name], axis=2, name=name))
    return nodes


def onnx_version() -> str:
    """The installed onnx package's version (an export depends on it), or 'none'."""
    from importlib import metadata

    try:
        return metadata.version("onnx")
    except metadata.PackageNotFoundError:
        return "none"


def _require_onnx():
    """The onnx package, or one clear error."""
    try:
        import onnx
    except ImportError:
        raise SegcheckError("the onnx package is not installed, and mx2onnx needs it: pip install onnx==1.14.1 "
                            "(requirements-base.txt; mxnet 1.9.1 needs onnx < 1.15)") from None
    return onnx


def main_symbol(net: mx.gluon.HybridBlock) -> mx.sym.Symbol:
    """The graph of `net` with only its main output: the graph it runs when it is hybridized and has run, else
    the graph traced from a symbolic input (GluonCV's networks return a tuple: output 0 is the segmentation)."""
    try:
        symbol = deploy.graph(net)
    except SegcheckError:
        symbol = net(mx.sym.var(INPUT))
        if isinstance(symbol, (list, tuple)):
            symbol = symbol[0]
    if len(symbol.list_outputs()) > 1:
        symbol = symbol[0]
    if symbol.list_inputs().count(INPUT) != 1:
        raise SegcheckError(f"the network's graph takes no input named {INPUT!r} ({', '.join(symbol.list_inputs()[:3])}, ...); "
                            "export a network called on one image batch")
    return symbol


def parameters(net: mx.gluon.HybridBlock, symbol: mx.sym.Symbol) -> dict:
    """Every parameter the graph reads, by its name in the graph, from the network in memory."""
    wanted = set(symbol.list_inputs()) - {INPUT}
    params = {}
    for param in net.collect_params().values():
        if param.name not in wanted:
            continue
        try:
            params[param.name] = param.data(mx.cpu())
        except (RuntimeError, mx.base.MXNetError):
            raise SegcheckError(f"parameter {param.name} has no value yet; load weights (build.load_params) or "
                                "initialise the network and run it once before exporting it") from None
    missing = sorted(wanted - set(params))
    if missing:
        raise SegcheckError(f"the graph reads {len(missing)} arrays the network does not hold ({', '.join(missing[:3])}); "
                            "export the network whose graph this is")
    return params


def check_convertible(symbol: mx.sym.Symbol) -> None:
    """One error naming the first operator mx2onnx has no converter for."""
    supported = set(mx.onnx.get_operator_support(OPSET))
    ops = sorted({n["op"] for n in json.loads(symbol.tojson())["nodes"]} - {"null"} - supported)
    if not ops:
        return
    others = f" (nor {', '.join(ops[1:4])})" if len(ops) > 1 else ""
    remedy = ("a graph fused onto oneDNN: export the unfused FP32 network (before build.fuse)" if ops[0].startswith("_sg_")
              else "export a network without it or register a converter for it")
    raise SegcheckError(f"mx2onnx cannot convert {ops[0]}{others}: mxnet {mx.__version__}'s ONNX exporter has no "
                        f"converter for it at opset {OPSET}; {remedy}")


def check_output(symbol: mx.sym.Symbol, shape: tuple) -> None:
    """One error when the graph's output is not a crop-sized map: GluonCV fixes the upsampling size when it builds."""
    _, (out, *_), _ = symbol.infer_shape_partial(**{INPUT: shape})
    if len(out) != 4 or tuple(out[-2:]) != tuple(shape[-2:]):
        got = "x".join(map(str, out[-2:])) or "shapeless"
        raise SegcheckError(f"the network gives a {got} output for {shape[-1]}x{shape[-1]} images: GluonCV fixes a network's "
                            "output size when it builds it, so build it at the crop it is exported for")


def pooling_context(symbol: mx.sym.Symbol, shape: tuple) -> _Export:
    """The input shape of every adaptive-pooling node, inferred from the network's input shape."""
    nodes = json.loads(symbol.tojson())["nodes"]
    internals = symbol.get_internals()
    shapes = {}
    for idx, node in enumerate(nodes):
        if node["op"] != ADAPTIVE_POOL:
            continue
        source = internals[f"{node['name']}_output"].get_children()
        _, (first, *_), _ = source.infer_shape_partial(**{INPUT: shape})
        shapes[idx] = tuple(first)
    return _Export(shapes, shape[-1])


def failing_op(err: BaseException) -> str:
    """The MXNet operator mx2onnx was converting when `err` was raised, read from the traceback."""
    for frame, _ in traceback.walk_tb(err.__traceback__):
        if frame.f_code.co_name == "convert_layer" and "op" in frame.f_locals:
            return str(frame.f_locals["op"])
    return "the graph"


def _canonical(net):
    """The function that names a tensor or node of `net`'s graph without the root block's counter ("fcn3_conv0" ->
    "fcn_conv0": Gluon counts the networks of a class a process has built); a prefix given by hand is kept."""
    prefix, hint = net.prefix, type(net).__name__.lower()
    if not re.fullmatch(re.escape(hint) + r"\d+_", prefix):
        return lambda name: name
    stem = hint + "_"
    return lambda name: stem + name[len(prefix):] if name.startswith(prefix) else name


def content_digest(net: mx.gluon.HybridBlock) -> str:
    """The digest of what export() writes `net` from: its main graph and every weight the graph reads, named as the
    export names them (_canonical), so one network has one digest in every process (a network a plugin hands over is
    kept under it, models.pipeline.network_onnx)."""
    symbol = main_symbol(net)
    params = parameters(net, symbol)
    canonical = _canonical(net)
    graph = json.loads(symbol.tojson())
    for node in graph["nodes"]:
        node["name"] = canonical(node["name"])
    digest = hashlib.sha256(json.dumps(graph, sort_keys=True).encode())
    for name, param in sorted(params.items(), key=lambda item: canonical(item[0])):
        values = np.ascontiguousarray(param.asnumpy())
        digest.update(f"{canonical(name)} {values.shape} {values.dtype}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()[:20]


def _canonical_names(graph, net) -> None:
    """Rename the graph's tensors and nodes as _canonical does, so one network exports to the same bytes in every
    process and its peer runs, keyed by the file's digest, are found again."""
    canonical = _canonical(net)
    for node in graph.node:
        node.name = canonical(node.name)
        node.input[:] = [canonical(name) for name in node.input]
        node.output[:] = [canonical(name) for name in node.output]
    for item in (*graph.initializer, *graph.input, *graph.output, *graph.value_info):
        item.name = canonical(item.name)


def export(net: mx.gluon.HybridBlock, crop_size: int, path) -> Path:
    """Write `net` (an unfused FP32 network with its weights) as an ONNX model for (1, 3, crop, crop) float32 input
    at opset 13, main output only, atomically to `path`."""
    onnx = _require_onnx()
    check_crop(crop_size)
    path = Path(path)
    shape = (1, 3, crop_size, crop_size)
    symbol = main_symbol(net)
    check_convertible(symbol)
    params = parameters(net, symbol)
    check_output(symbol, shape)
    context = pooling_context(symbol, shape)
    atomic.ensure_writable(path.parent, "choose a writable path for the ONNX model")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".onnx-export-") as tmp:
        staged = Path(tmp) / "model.onnx"
        token = _CURRENT.set(context)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # mx2onnx reads onnx.mapping, deprecated in onnx 1.14
                mx.onnx.export_model(symbol, params, [shape], np.float32, str(staged))
        except SegcheckError:
            raise
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise SegcheckError(f"mx2onnx cannot convert {failing_op(err)}: {first}; export a network without it "
                                "or register a converter for it") from None
        finally:
            _CURRENT.reset(token)
        model = onnx.load(str(staged))
    # export_model declares the onnx package's newest opset (19 for onnx 1.14); the nodes are mx2onnx's opset-13 forms
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", OPSET))
    model.producer_name, model.producer_version = "segcheck (mxnet mx2onnx)", mx.__version__
    # mx2onnx lists every weight as a graph input too, which makes them overridable: the runtimes then neither fold
    # constants nor fuse BatchNorm into the convolutions (ONNX Runtime warns once per weight)
    weights = {w.name for w in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    _canonical_names(model.graph, net)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        first = (str(err).strip().splitlines() or ["invalid"])[0]
        raise SegcheckError(f"{path}: mx2onnx's model fails ONNX's checker at opset {OPSET} ({first}); "
                            "report the network and the operator") from None
    return atomic.write_bytes(path, model.SerializeToString())

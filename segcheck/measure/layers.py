"""Where INT8 loses accuracy: per quantized layer, the SQNR and cosine similarity between the FP32 network's
output of that layer and the dequantized INT8 output, on fixed images, with each image's SQNR and FP32 energy (so that
a comparison can pool them over any subset); and the flip rate of the pixels the FP32 model was least sure about.

The FP32 side is the fused FP32 graph the gate runs (oneDNN fuses convolution, batch norm, sum and
activation as quantization does), so each fused FP32 node faces the INT8 node made from it; both are
paired by calibration.stable names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from ..models.export import graph, graph_json
from .calibration import node_name
from .sqnr import sqnr

LOW_MARGIN = 0.1  # the flip rate is reported for the tenth of pixels with the smallest FP32 top-1/top-2 gap


@dataclass(frozen=True)
class LayerError:
    name: str
    sqnr_db: float  # over all the images
    cosine: float
    per_image: tuple = ()  # SQNR on each image, dB, in order
    signal: tuple = ()  # the FP32 output's energy (sum of squares) on each image, in order: with per_image, it pools


@dataclass(frozen=True)
class Localisation:
    layers: tuple  # LayerError in graph order
    upstream: dict  # name -> names of the quantized layers feeding it
    flip_low_margin: float  # share of low-margin pixels whose class INT8 changes
    flip_all: float
    images: int


def _fused_nodes(symbol_json: str, quantized: bool) -> dict:
    """stable name -> output name of each fused convolution node (quantized ones for INT8)."""
    found = {}
    for node in json.loads(symbol_json)["nodes"]:
        if node["op"] == "_sg_mkldnn_conv" and (node.get("attrs", {}).get("quantized") == "true") == quantized:
            found[node_name(node)] = node["name"]
    return found


def upstream(symbol_json: str) -> dict:
    """stable name -> the fused convolutions (stable names) whose outputs reach it without passing another one."""
    nodes = json.loads(symbol_json)["nodes"]
    fused = {i for i, n in enumerate(nodes) if n["op"] == "_sg_mkldnn_conv"}
    memo = {}

    def feeding(i):
        if i not in memo:
            memo[i] = set()
            for j, *_ in nodes[i]["inputs"]:
                memo[i] |= {j} if j in fused else feeding(j)
        return memo[i]

    return {node_name(nodes[i]): sorted(node_name(nodes[j]) for j in feeding(i)) for i in sorted(fused)}


def _block(model, outputs: list) -> mx.gluon.SymbolBlock:
    """`model`'s graph with `outputs` (internal outputs) and then its main output as its outputs, on `model`'s own
    parameters (shared, not copied): one forward gives every layer and the logits. It runs with static memory and
    shapes, as the gate's other blocks do: each image's forward reuses the memory plan, the buffers between layers and
    the operators the first one made (2.5x faster on a ResNet-101, the same figures)."""
    symbol = graph(model)
    internals = symbol.get_internals()
    group = mx.sym.Group([internals[o] for o in outputs] + [symbol[0]])
    block = mx.gluon.SymbolBlock(group, mx.sym.var("data"), params=model.collect_params())
    block.hybridize(static_alloc=True, static_shape=True)
    return block


def _outputs(out) -> list:
    """A block's outputs as a list (a one-output block returns its array alone)."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _reaches(q_out: list, count: int) -> np.ndarray:
    """max(|min|, |max|) of each of the first `count` quantized layers' outputs (data, min, max each): what its integer
    levels reach; read in one copy rather than two waits per layer."""
    if not count:  # no quantized layer faces a fused FP32 one (every convolution excluded): nothing to concatenate
        return np.zeros(0)
    ends = [end for i in range(count) for end in q_out[3 * i + 1:3 * i + 3]]  # each of shape (1,)
    return np.abs(mx.nd.concat(*ends, dim=0).asnumpy().astype(np.float64)).reshape(count, 2).max(axis=1)


def significant(value: float) -> float:
    """`value` to 6 significant digits, as the per-image energies are kept."""
    return float(f"{value:.6g}")


def localise(fp32_model, int8_model, images) -> Localisation:
    """Per-layer SQNR and cosine over `images` (B x 3 x H x W NDArrays), and the flip rate of the final outputs.

    `fp32_model` is the fused FP32 model the gate runs and `int8_model` the INT8 one, both run at least once.
    """
    fp32_symbol_json, int8_symbol_json = graph_json(fp32_model), graph_json(int8_model)
    fp32_nodes = _fused_nodes(fp32_symbol_json, quantized=False)
    int8_nodes = _fused_nodes(int8_symbol_json, quantized=True)
    names = [n for n in int8_nodes if n in fp32_nodes]
    fp32_block = _block(fp32_model, [f"{fp32_nodes[n]}_output" for n in names])
    int8_block = _block(int8_model, [f"{int8_nodes[n]}_output{s}" for n in names for s in ("", "_min", "_max")])
    sums = np.zeros((len(names), 4))  # sum f^2, sum (f - q)^2, sum f q, sum q^2
    per_image = np.zeros((len(names), len(images)))
    signal = np.zeros((len(names), len(images)))
    margins, flips = [], []
    for k, x in enumerate(images):
        f_out, q_out = _outputs(fp32_block(x)), _outputs(int8_block(x))
        reaches = _reaches(q_out, len(names))
        for i in range(len(names)):
            f = f_out[i].asnumpy().ravel().astype(np.float64)
            data = q_out[3 * i]
            levels = 255.0 if data.dtype == np.uint8 else 127.0
            q = data.asnumpy().ravel().astype(np.float64) * (reaches[i] / levels)
            d = f - q
            image = (f @ f, d @ d, f @ q, q @ q)  # dot products: one pass each
            sums[i] += image
            per_image[i, k], signal[i, k] = sqnr(image[0], image[1]), image[0]
        a, b = f_out[-1].asnumpy(), q_out[-1].asnumpy()
        top = np.sort(a, axis=1)
        margins.append((top[:, -1] - top[:, -2]).ravel())
        flips.append((a.argmax(axis=1) != b.argmax(axis=1)).ravel())
    errors = []
    for name, (ff, err, fq, qq), each, energy in zip(names, sums, per_image, signal):
        cosine = float(fq / np.sqrt(ff * qq)) if ff > 0 and qq > 0 else 1.0
        errors.append(LayerError(name, round(sqnr(ff, err), 3), round(cosine, 6), tuple(round(float(v), 3) for v in each),
                                 tuple(significant(v) for v in energy)))
    margin, flip = np.concatenate(margins), np.concatenate(flips)
    low = margin <= np.quantile(margin, LOW_MARGIN)
    up = upstream(int8_symbol_json)
    return Localisation(tuple(errors), {n: up.get(n, []) for n in names}, float(flip[low].mean()), float(flip.mean()),
                        len(images))

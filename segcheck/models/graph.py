"""What a (fused) symbol graph runs: convolutions in INT8 and FP32, fused or not, with calibrated ranges or not.

Used on FP32 graphs (every convolution fused onto oneDNN) and INT8 graphs (every convolution quantized).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class GraphReport:
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


def inner_convs(node) -> list:
    """Names of the Convolution nodes inside a fused subgraph node."""
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
                fp32_layers.extend(inner_convs(node) or [node["name"]])
    return GraphReport(int8, fp32, calibrated, tuple(fp32_layers), unfused)


def input_dtype(symbol_json: str) -> str | None:
    """The type a quantized graph quantizes its input to (its data quantize node's out_type), as MXNet built it."""
    return next((node.get("attrs", {}).get("out_type") for node in json.loads(symbol_json)["nodes"]
                 if node["op"] == "_contrib_quantize_v2"), None)


# Fused activations after which MXNet's quantized convolution gives an unsigned (uint8) output (IsOutputUInt8 in
# src/operator/subgraph/mkldnn/mkldnn_conv.cc): ReLU, sigmoid, softrelu, and a clip from 0 (bounded ReLU).
UNSIGNED_ACTIVATIONS = ("relu", "sigmoid", "softrelu")


@dataclass(frozen=True)
class NegativeRange:
    """A quantized convolution whose output MXNet makes unsigned while its calibrated range reaches below zero: the
    next quantized layer refuses it (MXNet: "Expect int8 when data_min < 0.0", naming no node)."""

    layer: str  # its inner convolution's name, as the graph names it
    low: float
    high: float


def _unsigned(activation: dict) -> bool:
    attrs = activation.get("attrs", {})
    if activation["op"] == "Activation":
        return attrs.get("act_type") in UNSIGNED_ACTIVATIONS
    return activation["op"] == "clip" and float(attrs.get("a_min", "-1")) == 0.0


def negative_unsigned_ranges(symbol_json: str) -> list:
    """NegativeRange of each quantized convolution of the graph whose output is uint8 (a fused unsigned activation
    with no sum after it, or one after the sum) but whose calibrated range reaches below zero, in graph order."""
    found = []
    for node in json.loads(symbol_json)["nodes"]:
        attrs = node.get("attrs", {})
        if node["op"] != "_sg_mkldnn_conv" or attrs.get("quantized") != "true" or "min_calib_range" not in attrs:
            continue
        acts = [m for g in node.get("subgraphs", []) for m in g["nodes"] if m["op"] in ("Activation", "LeakyReLU", "clip")]
        if attrs.get("with_act") == "true" and attrs.get("with_sum") != "true":
            unsigned = bool(acts) and _unsigned(acts[0])
        else:
            unsigned = attrs.get("with_postsum_act") == "true" and bool(acts) and _unsigned(acts[-1])
        if unsigned and float(attrs["min_calib_range"]) < 0:
            found.append(NegativeRange((inner_convs(node) or [node["name"]])[0], float(attrs["min_calib_range"]),
                                       float(attrs["max_calib_range"])))
    return found

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

"""An INT8 graph's calibration table: every quantized node's calibrated range and quantization settings,
under names that stay the same from run to run, and the invariants MXNet's own tests check.

Node names carry Gluon's per-process counters (fcn5_resnetv1s_conv0_fwd); a fused node is named here by
its first inner convolution with the top-level counter removed (resnetv1s_conv0_fwd).
"""

from __future__ import annotations

import json
import math
import re

from ..models.graph import inner_convs

COUNTER = re.compile(r"^[a-z]+\d+_")
SETTINGS = ("out_type", "channel_wise_quantize")  # quantization attributes recorded beside the range


def stable(name: str) -> str:
    return COUNTER.sub("", name)


def conv_layers(net) -> dict:
    """Dotted Gluon path -> stable name of each convolution of the Gluon network `net`: the name the calibration table
    and the per-layer comparison give the fused node that runs it, and the path a recipe's exclude list takes."""
    from ..models.quantize import conv_names  # MXNet loads only where a network is at hand

    return {path: stable(name) for path, name in conv_names(net).items()}


def node_name(node) -> str:
    """A node's stable name: its first inner convolution's, or its own, without the top-level counter."""
    inner = inner_convs(node)
    return stable(inner[0] if inner else node["name"])


def table(symbol_json: str) -> dict:
    """{stable name: {"range": [min, max], settings...}} of every node with a calibrated range, in graph order."""
    found = {}
    for node in json.loads(symbol_json)["nodes"]:
        attrs = node.get("attrs", {})
        if "min_calib_range" in attrs or "max_calib_range" in attrs:
            entry = {"range": [float(attrs.get("min_calib_range", "nan")), float(attrs.get("max_calib_range", "nan"))]}
            entry.update({k: attrs[k] for k in SETTINGS if k in attrs})
            found[node_name(node)] = entry
    return found


def invariants(symbol_json: str) -> list:
    """Problems MXNet's tests look for: a quantized node without a calibrated range, and the convolutions
    feeding one quantized concat calibrated to different ranges (oneDNN aligns them)."""
    nodes = json.loads(symbol_json)["nodes"]
    problems = []
    for node in nodes:
        attrs, op = node.get("attrs", {}), node["op"]
        quantized = op == "_contrib_quantize_v2" or (op == "_sg_mkldnn_conv" and attrs.get("quantized") == "true")
        if quantized and not ("min_calib_range" in attrs and "max_calib_range" in attrs):
            problems.append(f"{node_name(node)} is quantized without a calibrated range")
        if op == "_contrib_quantized_concat":
            convs = {node_name(nodes[i]): (nodes[i]["attrs"].get("min_calib_range"), nodes[i]["attrs"].get("max_calib_range"))
                     for i, *_ in node["inputs"] if nodes[i]["op"] == "_sg_mkldnn_conv"}
            if len(set(convs.values())) > 1:
                shown = ", ".join(f"{n} [{lo}, {hi}]" for n, (lo, hi) in convs.items())
                problems.append(f"the inputs of concat {stable(node['name'])} are not aligned: {shown}")
    return problems


def moved(golden: dict, now: dict, rtol: float) -> list:
    """(name, what it was, what it is) of every node whose range moved by more than `rtol` (relative to the
    recorded range's larger bound: a range scaled down never moves by more than 1), whose settings changed, or that
    appeared or vanished; largest change first (structure and settings, then by how far the range's magnitude moved,
    as a ratio either way), so the layer a fault hit is named before the small moves around it (another recipe or ISA
    moves every range a little)."""
    changes = []
    for name in list(golden) + [n for n in now if n not in golden]:
        old, new = golden.get(name), now.get(name)
        if old is None or new is None:
            changes.append((math.inf, name, old, new))
            continue
        scale = _magnitude(old)
        if any(old.get(k) != new.get(k) for k in SETTINGS):
            changes.append((math.inf, name, old, new))
        elif any(abs(a - b) > rtol * scale for a, b in zip(old["range"], new["range"])):
            changes.append((abs(math.log(_magnitude(new) / scale)), name, old, new))
    return [(name, old, new) for _, name, old, new in sorted(changes, key=lambda c: -c[0])]


def _magnitude(entry) -> float:
    """The larger bound's magnitude, which sets the INT8 scale."""
    return max(abs(entry["range"][0]), abs(entry["range"][1]), 1e-12)


def describe(entry) -> str:
    if entry is None:
        return "absent"
    lo, hi = entry["range"]
    extra = ", ".join(f"{k}={entry[k]}" for k in SETTINGS if k in entry)
    return f"[{lo:.6g}, {hi:.6g}]" + (f" {extra}" if extra else "")

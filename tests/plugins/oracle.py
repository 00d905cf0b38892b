"""The harm oracle: whether an INT8 variant harms, decided apart from the gate, on a held-out set ten times the gate's.

It has its own loop and its own arithmetic: held-out scenes drawn by the synthetic generator under a split name the
gate never reads ("holdout", outside the gate's data digest), its own preprocessing (short side to the crop, centre
crop, ImageNet normalisation), its own confusion matrices, its own per-layer comparison. Nothing here calls segcheck's
loaders, metrics, checks or layer code, so a bug there cannot hide a harm here.

A variant is judged against the reference INT8 model (the clean recipe, in the same environment):
- harmful when, on the held-out set, its mIoU is at least HARM["miou_points"] lower, its pixel agreement with FP32 at
  least HARM["agreement_points"] lower, or some layer's own SQNR fall (its fall minus the largest fall of the layers
  feeding it) at least HARM["layer_sqnr_db"];
- benign when every figure lies within its noise band (BANDS: how far five recalibrations on other training images of
  the same distribution moved it, on this held-out set; frozen before the catalogue ran);
- grey in between (reported, not scored); equivalent when its INT8 logits are bit-identical to the reference's; not
  scored either ("same predictions") when it predicts every held-out pixel as the reference does and no layer is harmed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

import mxnet as mx
import numpy as np
from PIL import Image

HARM = {"miou_points": 0.5, "agreement_points": 0.5, "layer_sqnr_db": 6.0}  # frozen before the catalogue ran
# The largest |change| five recalibrations of fcn_resnet101_voc on other training images (train[32k:32k+32], k = 1..5)
# showed against the recorded one (train[0:32]) on the held-out set: mIoU, agreement with FP32, a layer's own SQNR
# change. Measured 2026-12-04 on the project's AMD EPYC (oneDNN 2.4.4, ISA avx512_vnni), mxnet 1.9.1; frozen then.
BANDS = {"miou_points": 0.302, "agreement_points": 0.329, "layer_sqnr_db": 5.40}
IMAGES = 480  # ten times the gate's 48
LAYER_IMAGES = 48
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
BATCH = 16


@dataclass(frozen=True)
class Figures:
    """One INT8 model on the held-out set."""

    miou: float  # present-class mIoU, percent
    pixacc: float
    agreement: float  # pixels whose INT8 class equals FP32's, percent
    layer_sqnr: dict  # layer -> SQNR in dB against FP32, on the first LAYER_IMAGES images
    upstream: dict  # layer -> the quantized layers feeding it
    logits_digest: str  # sha256 of every INT8 logit, in order
    predictions_digest: str = ""  # sha256 of every predicted class, in order


@dataclass(frozen=True)
class Verdict:
    kind: str  # harmful | benign | grey | equivalent
    task: bool  # harmful by mIoU or agreement
    layer: bool  # harmful by a layer's own SQNR fall
    miou_drop: float
    agreement_drop: float
    own_fall: float  # the largest own fall of any layer, dB
    fall_layer: str

    def to_dict(self) -> dict:
        return asdict(self)


def holdout(spec, crop: int, count: int = IMAGES):
    """(images N x 3 x crop x crop float32, labels N x crop x crop int64 with -1 on VOC's void border), drawn by the
    synthetic generator under the split name 'holdout'."""
    from segcheck.data import synthetic

    images, labels = [], []
    for _, scene in synthetic._scenes(spec, "holdout", count):
        image, label = Image.fromarray(scene.image), Image.fromarray(synthetic._void_border(scene.label))
        w, h = image.size
        ow, oh = (int(w * crop / h), crop) if w > h else (crop, int(h * crop / w))
        image, label = image.resize((ow, oh), Image.BILINEAR), label.resize((ow, oh), Image.NEAREST)
        x, y = int(round((ow - crop) / 2)), int(round((oh - crop) / 2))
        image, label = image.crop((x, y, x + crop, y + crop)), label.crop((x, y, x + crop, y + crop))
        images.append(((np.asarray(image, np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1))
        lab = np.asarray(label, np.int64)
        labels.append(np.where(lab == 255, -1, lab))
    return np.stack(images), np.stack(labels)


def _forward(model, images) -> np.ndarray:
    out = []
    for i in range(0, len(images), BATCH):
        y = model(mx.nd.array(images[i:i + BATCH]))
        out.append((y[0] if isinstance(y, (list, tuple)) else y).asnumpy())
    return np.concatenate(out)


def _miou(pred: np.ndarray, label: np.ndarray, classes: int) -> tuple:
    keep = label >= 0
    m = np.bincount(classes * label[keep] + pred[keep], minlength=classes * classes).reshape(classes, classes)
    union = m.sum(0) + m.sum(1) - np.diag(m)
    present = union > 0
    return 100 * np.diag(m)[present].sum() / m.sum(), 100 * np.mean(np.diag(m)[present] / union[present])


def _layer_of(node) -> str:
    inner = [m["name"] for g in node.get("subgraphs", []) for m in g["nodes"] if m["op"] == "Convolution"]
    return re.sub(r"^[a-z]+[0-9]+_", "", inner[0] if inner else node["name"])


def _graph(model) -> dict:
    return json.loads(model._cached_graph[1].tojson())


def _convs(model, quantized: bool) -> dict:
    return {_layer_of(n): n["name"] for n in _graph(model)["nodes"]
            if n["op"] == "_sg_mkldnn_conv" and (n.get("attrs", {}).get("quantized") == "true") == quantized}


def _feeding(model) -> dict:
    """layer -> the quantized layers whose outputs reach it without passing through another one."""
    nodes = _graph(model)["nodes"]
    convs = {i for i, n in enumerate(nodes) if n["op"] == "_sg_mkldnn_conv" and n.get("attrs", {}).get("quantized") == "true"}
    seen = {}

    def up(i):
        if i not in seen:
            seen[i] = set()
            for j, *_ in nodes[i]["inputs"]:
                seen[i] |= {j} if j in convs else up(j)
        return seen[i]

    return {_layer_of(nodes[i]): sorted(_layer_of(nodes[j]) for j in up(i)) for i in convs}


def _outputs(model, names: list):
    internals = model._cached_graph[1].get_internals()
    return mx.gluon.SymbolBlock(mx.sym.Group([internals[n] for n in names]), mx.sym.var("data"), params=model.collect_params())


def layer_sqnr(fp32, int8, images) -> dict:
    """layer -> SQNR (dB) of INT8's dequantized output against FP32's, summed over `images`."""
    f_names, q_names = _convs(fp32, False), _convs(int8, True)
    layers = [n for n in q_names if n in f_names]
    f_block = _outputs(fp32, [f"{f_names[n]}_output" for n in layers])
    q_block = _outputs(int8, [f"{q_names[n]}_output{s}" for n in layers for s in ("", "_min", "_max")])
    signal, noise = np.zeros(len(layers)), np.zeros(len(layers))
    for i in range(0, len(images), 8):
        x = mx.nd.array(images[i:i + 8])
        f_out, q_out = f_block(x), q_block(x)
        for k in range(len(layers)):
            ref = f_out[k].asnumpy().astype(np.float64)
            q = q_out[3 * k]
            scale = max(abs(q_out[3 * k + 1].asscalar()), abs(q_out[3 * k + 2].asscalar())) / (255.0 if q.dtype == np.uint8 else 127.0)
            deq = q.asnumpy().astype(np.float64) * (scale if q.dtype != np.float32 else 1.0)
            signal[k] += (ref ** 2).sum()
            noise[k] += ((ref - deq) ** 2).sum()
    return {n: float(10 * np.log10(s / e)) if e > 0 else float("inf") for n, s, e in zip(layers, signal, noise)}


class Oracle:
    """The held-out set and the FP32 model's predictions on it, made once; `figures` and `judge` per INT8 model."""

    def __init__(self, fp32, spec, crop: int, classes: int, count: int = IMAGES):
        self.fp32, self.classes = fp32, classes
        self.images, self.labels = holdout(spec, crop, count)
        self.fp32_pred = _forward(fp32, self.images).argmax(axis=1)

    def figures(self, int8) -> Figures:
        logits = _forward(int8, self.images)
        pred = logits.argmax(axis=1)
        pixacc, miou = _miou(pred, self.labels, self.classes)
        agreement = 100 * float((pred == self.fp32_pred).mean())
        layers = layer_sqnr(self.fp32, int8, self.images[:LAYER_IMAGES])
        return Figures(float(miou), float(pixacc), agreement, layers, _feeding(int8),
                       hashlib.sha256(logits.astype(np.float32).tobytes()).hexdigest(),
                       hashlib.sha256(pred.astype(np.uint8).tobytes()).hexdigest())


def own_falls(reference: Figures, variant: Figures) -> dict:
    """layer -> its SQNR fall from the reference minus the largest fall of the layers feeding it (dB; a layer that rose
    passes no fall on), over the layers both models quantize."""
    fall = {n: reference.layer_sqnr[n] - v for n, v in variant.layer_sqnr.items()
            if n in reference.layer_sqnr and np.isfinite(v) and np.isfinite(reference.layer_sqnr[n])}
    return {n: f - max([0.0] + [fall[u] for u in variant.upstream.get(n, []) if u in fall]) for n, f in fall.items()}


def judge(reference: Figures, variant: Figures, bands: dict = BANDS) -> Verdict:
    """The variant's class against the reference, with the noise `bands` (miou_points, agreement_points, layer_sqnr_db:
    the largest deviation a benign recalibration showed on this held-out set)."""
    miou_drop = reference.miou - variant.miou
    agreement_drop = reference.agreement - variant.agreement
    falls = own_falls(reference, variant)
    worst = max(falls, key=falls.get) if falls else ""
    own = falls.get(worst, 0.0)
    if variant.logits_digest == reference.logits_digest:
        return Verdict("equivalent", False, False, 0.0, 0.0, 0.0, "")
    if variant.predictions_digest == reference.predictions_digest and not own >= HARM["layer_sqnr_db"]:
        return Verdict("same predictions", False, False, 0.0, 0.0, round(own, 3), worst)  # not scored
    task = miou_drop >= HARM["miou_points"] or agreement_drop >= HARM["agreement_points"]
    layer = own >= HARM["layer_sqnr_db"]
    benign = (abs(miou_drop) <= bands["miou_points"] and abs(agreement_drop) <= bands["agreement_points"]
              and max((abs(f) for f in falls.values()), default=0.0) <= bands["layer_sqnr_db"])
    kind = "harmful" if task or layer else "benign" if benign else "grey"
    return Verdict(kind, task, layer, round(miou_drop, 4), round(agreement_drop, 4), round(own, 3), worst)

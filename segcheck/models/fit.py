"""Seeded weights that really segment: deterministic initialisation, then closed-form fitting.

No pretrained file can be downloaded here, so the embedded default builds each GluonCV architecture
from a seed and fits it on the synthetic training split in a few seconds:

1. Xavier initialisation from the seed; the last BatchNorm of every residual block is scaled down
   so that the deep random backbone keeps the colour and texture of its input;
2. every BatchNorm's statistics re-estimated on the training images;
3. the head's convolutions that carry per-pixel features are set, one after the other, to
   [R; -R; Q; -Q] where R is a class-balanced ridge regression from their input to the labels
   and Q random projections (the sign pairs survive the ReLU that follows);
4. the final 1x1 classifier is the ridge regression on its input features.
"""

from __future__ import annotations

import os

import mxnet as mx
import numpy as np

from ..config import isa
from ..config.recipes import FitRecipe
from .build import child, layers

# The head convolutions fitted in step 3, in forward order, by dotted child path.
FIT_CONVS = {
    "fcn": ("head.block.0",),
    "psp": ("head.block.0",),
    "deeplab": ("head.aspp.concurent.0.0", "head.aspp.project.0", "head.block.0"),
}
CLASSIFIER = "head.block.4"


def seeded_init(net, crop_size: int, recipe: FitRecipe) -> None:
    """Deterministic Xavier initialisation; residual branches damped by `residual_gamma`."""
    mx.random.seed(recipe.seed)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", magnitude=2), force_reinit=True)
    net(mx.nd.zeros((1, 3, crop_size, crop_size)))[0].wait_to_read()
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        for block in stage:
            block.bn3.gamma.set_data(block.bn3.gamma.data() * recipe.residual_gamma)


class _BatchStatistics:
    """Within it, every BatchNorm normalises with the statistics of the batch it sees, and keeps them.

    A pre-hook sets the running mean and (biased) variance from the layer's input before the layer
    runs in inference mode: MXNet 1.9 on CPU would update running statistics only in backward.
    """

    def __init__(self, net):
        self.norms = [norm for _, norm in layers(net, mx.gluon.nn.BatchNorm)]

    @staticmethod
    def _hook(norm, inputs):
        x = inputs[0].asnumpy()  # numpy reduces over (N, H, W) ten times faster than MXNet here
        norm.running_mean.set_data(mx.nd.array(x.mean(axis=(0, 2, 3))))
        norm.running_var.set_data(mx.nd.array(x.var(axis=(0, 2, 3))))

    def __enter__(self):
        self.handles = [n.register_forward_pre_hook(self._hook) for n in self.norms]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.detach()


def _capture_input(net, path: str, run):
    """Run `run()` and return the input the block at `path` received (as numpy)."""
    seen = []
    handle = child(net, path).register_forward_pre_hook(lambda block, inputs: seen.append(inputs[0]))
    try:
        run()
    finally:
        handle.detach()
    return seen[-1].asnumpy()


def _sample(features: np.ndarray, labels: np.ndarray, per_image: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Features bilinearly interpolated (align_corners, as BilinearResize2D) at random labelled pixels."""
    n, c, h, w = features.shape
    big_h, big_w = labels.shape[1:]
    rows, targets = [], []
    for i in range(n):
        ys, xs = np.nonzero(labels[i] >= 0)
        if ys.size == 0:
            continue
        pick = rng.choice(ys.size, size=min(per_image, ys.size), replace=False)
        ys, xs = ys[pick], xs[pick]
        fy, fx = ys * (h - 1) / max(big_h - 1, 1), xs * (w - 1) / max(big_w - 1, 1)
        y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        wy, wx = (fy - y0)[:, None], (fx - x0)[:, None]
        f = features[i]
        rows.append((f[:, y0, x0].T * (1 - wy) * (1 - wx) + f[:, y0, x1].T * (1 - wy) * wx
                     + f[:, y1, x0].T * wy * (1 - wx) + f[:, y1, x1].T * wy * wx))
        targets.append(labels[i, ys, xs])
    return np.concatenate(rows).astype(np.float32), np.concatenate(targets)


def _ridge(x: np.ndarray, y: np.ndarray, strength: float, num_classes: int) -> np.ndarray:
    """Class-balanced ridge regression onto one-hot labels: returns (C + 1) x classes, bias last."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weight = (1.0 / np.sqrt(np.maximum(counts, 1.0)))[y]
    weight /= weight.mean()
    a = np.concatenate([x, np.ones((len(x), 1), np.float32)], axis=1)
    aw = a * weight[:, None].astype(np.float32)
    gram = (aw.T @ a).astype(np.float64)
    rhs = (aw.T @ np.eye(num_classes, dtype=np.float32)[y]).astype(np.float64)
    gram += strength * np.trace(gram) / len(gram) * np.eye(len(gram))
    return np.linalg.solve(gram, rhs)


def _set_projection(conv, ridge: np.ndarray, rng) -> None:
    """Centre tap of `conv` <- [R; -R; Q; -Q]: class evidence and random features, both signs."""
    out_ch, in_ch, kh, kw = conv.weight.shape
    r = ridge[:-1].T
    r = r / np.linalg.norm(r, axis=1, keepdims=True).clip(1e-12)
    q = rng.standard_normal(((out_ch + 1) // 2, in_ch)) / np.sqrt(in_ch)
    rows = np.concatenate([r, -r, q, -q])[:out_ch] if out_ch >= 2 * len(r) else np.concatenate([r, -r])[:out_ch]
    weight = np.zeros((out_ch, in_ch, kh, kw), np.float32)
    weight[:, :, kh // 2, kw // 2] = rows
    conv.weight.set_data(mx.nd.array(weight))


def fit(net, arch: str, images: mx.nd.NDArray, labels: np.ndarray, recipe: FitRecipe) -> None:
    """Re-estimate BatchNorm statistics and fit the head in closed form on (images, labels)."""
    rng = np.random.default_rng(recipe.seed)
    stats = _BatchStatistics(net)
    with stats:  # the head's input (c4) seen here is what inference will compute: statistics are now fixed
        c4 = mx.nd.array(_capture_input(net, "head", lambda: net(images)[0].wait_to_read()))

    def head_pass():
        with stats:
            net.head(c4).wait_to_read()

    for path in FIT_CONVS[arch]:
        x, y = _sample(_capture_input(net, path, head_pass), labels, recipe.samples_per_image, rng)
        _set_projection(child(net, path), _ridge(x, y, recipe.ridge, net.nclass), rng)
    x, y = _sample(_capture_input(net, CLASSIFIER, head_pass), labels, recipe.samples_per_image, rng)
    w = _ridge(x, y, recipe.ridge, net.nclass)
    classifier = child(net, CLASSIFIER)
    classifier.weight.set_data(mx.nd.array(w[:-1].T.reshape(classifier.weight.shape)))
    classifier.bias.set_data(mx.nd.array(w[-1]))


def numerics(recipe: FitRecipe) -> dict:
    """The environment of the process a seeded fit runs in: the recipe's ISA cap, threads and BLAS kernels."""
    return {**os.environ, **isa.environment_for(recipe.isa), "OMP_NUM_THREADS": str(recipe.threads),
            "OPENBLAS_CORETYPE": recipe.blas, "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

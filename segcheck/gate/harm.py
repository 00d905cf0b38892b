"""Whether a change harms: a figure of this run against the same figure of the reference it replaces (the recorded
recipe, MXNet or ISA), paired image by image, with a seeded bootstrap interval over the images.

Each figure ends in one of three verdicts:
- PASS: the change lies within the noise band (the tolerance of the tier of what differs);
- REGRESSED: the figure fell beyond the noise band with confidence (the interval's near end is past the band) and harm
  cannot be excluded (its far end reaches the harm threshold);
- CHANGED: anything else beyond the band: a rise, a fall the interval cannot tell from noise (mIoU on 48 images moves
  by tenths of a point under a change that alters no prediction's class), or one it shows to stay short of harm.
Where the reference holds no per-image figures (a published table), the interval is the point itself: a fall beyond
the noise band that reaches the harm threshold is REGRESSED.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..measure import sqnr, stats
from .checks import CHANGED, PASS, REGRESSED


@dataclass(frozen=True)
class Shift:
    """One figure now against the reference: values, the interval of the change (now - reference; a fall is negative),
    the noise band and the harm threshold, both as a fall."""

    figure: str  # "INT8 mIoU", "agreement with FP32", ...
    unit: str  # "points" or "dB"
    now: float
    then: float
    change: float  # now - then, or what stands for it (a layer's own change: its change less its inputs')
    low: float
    high: float
    tolerance: float
    harm: float
    images: int = 0  # images paired (0: no per-image figures, the interval is the point)
    confidence: float = stats.CONFIDENCE  # of the interval

    @property
    def status(self) -> str:
        if abs(self.change) <= self.tolerance:
            return PASS
        if -self.high > self.tolerance and -self.low >= self.harm:
            return REGRESSED  # a fall beyond noise with confidence (the whole interval), and harm inside it
        return CHANGED

    def describe(self) -> str:
        unit = " dB" if self.unit == "dB" else ""
        interval = (f", {self.confidence:.0%} interval [{self.low:+.2f}, {self.high:+.2f}] over {self.images} images"
                    if self.images else "")
        why = {PASS: f"within the noise band ±{self.tolerance:.3g}",
               REGRESSED: f"fell beyond the noise band {self.tolerance:.3g} with confidence, and a fall of {self.harm:g} "
                          "(harm) is inside the interval",
               CHANGED: f"beyond the noise band ±{self.tolerance:.3g}, not shown harmful (harm: a fall of {self.harm:g}, "
                        "beyond the band over the whole interval)"}[self.status]
        return f"{self.figure} {self.then:.2f} -> {self.now:.2f}{unit} ({self.change:+.2f}{interval}): {why}"


def worst(shifts) -> str:
    """The verdict of several figures: REGRESSED if any is, else CHANGED if any is, else PASS."""
    statuses = {s.status for s in shifts}
    return REGRESSED if REGRESSED in statuses else CHANGED if CHANGED in statuses else PASS


def accuracy(precision: str, now: tuple, then: tuple, now_images, then_images, num_classes: int, convention: str,
             tolerances: tuple, harms: tuple, confidence: float) -> list:
    """pixAcc and mIoU (percent) of `precision` now against the reference's: per-image confusion matrices (sparse, in
    the same image order) give the interval; without them (or of other lengths), the point alone."""
    n = len(now_images or ())
    paired = bool(n) and n == len(then_images or ())
    if paired:
        w = stats.resampling(n)
        now_s = stats.resampled_scores(w, stats.per_image_stats(now_images, num_classes), convention)
        then_s = stats.resampled_scores(w, stats.per_image_stats(then_images, num_classes), convention)
    out = []
    for k, name in enumerate(("pixAcc", "mIoU")):
        change = now[k] - then[k]
        low, high = stats.percentiles(now_s[k] - then_s[k], confidence) if paired else (change, change)
        out.append(Shift(f"{precision.upper()} {name}", "points", now[k], then[k], change, low, high, tolerances[k], harms[k],
                         n if paired else 0, confidence))
    return out


def per_image(figure: str, unit: str, now: list, then: list, tolerance: float, harm: float, confidence: float) -> Shift | None:
    """The mean of a per-image figure (agreement, output SQNR) now against the reference's, paired over the images;
    None where the two were not measured on the same number of images."""
    n = len(now)
    if not n or n != len(then):
        return None
    a, b = np.asarray(now, np.float64), np.asarray(then, np.float64)
    low, high = stats.percentiles(stats.resampling(n) @ (a - b) / n, confidence)
    return Shift(figure, unit, float(a.mean()), float(b.mean()), float((a - b).mean()), low, high, tolerance, harm, n,
                 confidence)


def layers(now: dict, then: dict, upstream: dict, bands: dict, band: float, harm: float, confidence: float) -> list:
    """Per layer, its own change in pooled SQNR against the reference's, over the images both measured (the first ones,
    in the same order): its change (now - reference, dB; a fall is negative) less the largest fall among the layers
    feeding it, so that an error is charged to the layer where it starts; the interval from resampling the images.
    Pooled, not a mean of per-image dB: a range that clips the few images with the largest activations lets their noise
    rule the layer's error, and only the pooled figure falls with it. `now`, `then`: layer -> (per-image SQNR in dB,
    per-image FP32 signal energy); `bands`: layer -> its own noise band (measured), else `band`. Largest own fall first."""
    names = [k for k in now if k in then]
    # nothing in common, or a side without energies to pool: no layer is judged (a layer judged without one it is fed
    # by would be charged the fall it inherits)
    if not names or not all(len(c[0]) and len(c[0]) == len(c[1]) for k in names for c in (now[k], then[k])):
        return []
    n = min(min(len(now[k][0]), len(then[k][0])) for k in names)
    weights = np.vstack([np.ones(n), stats.resampling(n)])  # the point, then the resamples
    index = {k: i for i, k in enumerate(names)}
    pooled = {k: tuple(sqnr.pooled(weights, c[0][:n], c[1][:n]) for c in (now[k], then[k])) for k in names}
    change = np.stack([pooled[k][0] - pooled[k][1] for k in names])  # layers x (1 + resamples)
    fell = np.minimum(change, 0.0)
    inherited = np.stack([np.min([fell[index[u]] for u in upstream.get(k, []) if u in index] or [np.zeros(change.shape[1])],
                                 axis=0) for k in names])
    own = change - inherited
    out = []
    for i, name in enumerate(names):
        low, high = stats.percentiles(own[i, 1:], confidence)
        out.append(Shift(f"layer {name}", "dB", float(pooled[name][0][0]), float(pooled[name][1][0]), float(own[i, 0]),
                         low, high, bands.get(name, band), harm, n, confidence))
    return sorted(out, key=lambda s: s.change)

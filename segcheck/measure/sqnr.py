"""SQNR in dB: of one output (signal energy over noise energy), and pooled over images from each image's SQNR and
signal energy, as the per-layer check keeps them: energies summed over the images drawn, then the ratio."""

from __future__ import annotations

import numpy as np

CLEAN_DB = 99.0  # the SQNR of an output equal to FP32's (no error), instead of infinity
FLOOR = 1e-30  # the least signal energy a ratio takes, so that an all-zero output has a finite SQNR


def sqnr(signal: float, noise: float) -> float:
    """10 log10(signal / noise) in dB; CLEAN_DB where there is no noise."""
    return CLEAN_DB if noise == 0 else float(10.0 * np.log10(max(signal, FLOOR) / noise))


def pooled(weights: np.ndarray, db, signal) -> np.ndarray:
    """The SQNR (dB) under each row of `weights` (how often each image is drawn) from each image's SQNR (dB) and signal
    energy: each image's noise is recovered as sqnr() made it (a clean image has none, an all-zero signal counts at
    FLOOR), summed with the signals, then the ratio; CLEAN_DB where no image drawn has noise."""
    db, signal = np.asarray(db, np.float64), np.asarray(signal, np.float64)
    noise = np.where(db >= CLEAN_DB, 0.0, np.maximum(signal, FLOOR) * 10.0 ** (-db / 10.0))
    s, n = weights @ signal, weights @ noise
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, 10.0 * np.log10(np.maximum(s, FLOOR) / np.where(n > 0, n, 1.0)), CLEAN_DB)

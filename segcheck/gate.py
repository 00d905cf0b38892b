"""The gate's verdicts: accuracy against a baseline row, the INT8-vs-FP32 drop, and the speed-up."""

from __future__ import annotations

import numpy as np

from .baselines import Row, Tolerances
from .metrics import Scores
from .records import FAIL, IMPROVED, PASS, SKIP
from .records import Check as Verdict


def percent(scores: Scores) -> tuple[float, float]:
    return 100.0 * scores.pix_acc, 100.0 * scores.miou


def against_baseline(what: str, scores: Scores, row: Row, precision: str, tol: Tolerances) -> Verdict:
    """Two-sided: below the row by more than the tolerance is FAIL, above it is IMPROVED (unexplained)."""
    measured = percent(scores)
    expected = row.accuracy(precision)
    parts, below, above = [], False, False
    for name, got, want, limit in zip(("pixAcc", "mIoU"), measured, expected, (tol.pixacc_points, tol.miou_points)):
        delta = got - want
        below |= delta < -limit
        above |= delta > limit
        parts.append(f"{name} {got:.2f} (baseline {want:.2f}, {delta:+.2f}, tolerance ±{limit:.2f})")
    status = FAIL if below else IMPROVED if above else PASS
    hint = {FAIL: "accuracy regressed", IMPROVED: "accuracy rose beyond the tolerance: if expected, re-record with --update-baselines", PASS: "within tolerance"}[status]
    return Verdict(status, f"{what}: {hint}: {'; '.join(parts)} [mIoU convention: {scores.convention}]")


def moved_classes(fp32: Scores, int8: Scores, classes: tuple, count: int = 3) -> str:
    """The classes (named from the dataset) whose IoU changed most between FP32 and INT8, worst first."""
    a, b = np.asarray(fp32.iou), np.asarray(int8.iou)
    delta = np.nan_to_num(b, nan=0.0) - np.nan_to_num(a, nan=0.0)
    order = [i for i in np.argsort(delta) if not (np.isnan(a[i]) and np.isnan(b[i]))][:count]
    return ", ".join(
        f"{classes[i]} {100 * np.nan_to_num(a[i]):.1f} -> {100 * np.nan_to_num(b[i]):.1f} ({100 * delta[i]:+.1f})"
        for i in order
    )


def int8_drop(what: str, fp32: Scores, int8: Scores, tol: Tolerances, classes: tuple) -> Verdict:
    """One-sided: INT8 may fall at most the tolerance below FP32 on the same images; a rise never fails."""
    f, q = percent(fp32), percent(int8)
    drops = (f[0] - q[0], f[1] - q[1])
    limits = (tol.int8_drop_pixacc_points, tol.int8_drop_miou_points)
    failed = any(d > limit for d, limit in zip(drops, limits))
    detail = "; ".join(
        f"{name} FP32 {a:.2f} -> INT8 {b:.2f} (drop {d:+.2f}, allowed {limit:.2f})"
        for name, a, b, d, limit in zip(("pixAcc", "mIoU"), f, q, drops, limits)
    )
    if failed:
        head = "INT8 fell below FP32 by more than the tolerance"
    elif max(drops) < 0:
        head = "INT8 above FP32 (an improvement never fails)"
    else:
        head = "INT8 within tolerance of FP32"
    return Verdict(FAIL if failed else PASS, f"{what}: {head}: {detail}; classes that moved most: "
                                             f"{moved_classes(fp32, int8, classes)} [mIoU convention: {fp32.convention}]")


def speedup(what: str, fp32_ms: float, int8_ms: float, minimum: float | None, isa: str, spread: str = "") -> Verdict:
    """INT8 over FP32 latency measured in the same process, against the minimum for this ISA.

    `spread` says how steady the two measurements were (rounds, interquartile range).
    """
    ratio = fp32_ms / int8_ms
    figures = f"FP32 {fp32_ms:.2f} ms, INT8 {int8_ms:.2f} ms, speed-up {ratio:.2f}x" + (f"; {spread}" if spread else "")
    if minimum is None:
        reason = "no VNNI" if "vnni" not in isa and isa != "amx" else "a VNNI CPU"
        return Verdict(SKIP, f"{what}: {figures}; oneDNN runs on {isa} ({reason}) and neither the baseline file nor the "
                             f"model's configuration records a minimum speed-up for it: gate skipped")
    if ratio < minimum:
        return Verdict(FAIL, f"{what}: INT8 speed-up {ratio:.2f}x is below the minimum {minimum:.2f}x for {isa} ({figures})")
    return Verdict(PASS, f"{what}: INT8 speed-up {ratio:.2f}x meets the minimum {minimum:.2f}x for {isa} ({figures})")

"""The gate's verdicts: accuracy against a baseline row, the INT8 drop (as a whole and per class), the speed-up,
the calibration table, per-layer error, and the prediction digest."""

from __future__ import annotations

import numpy as np

from ..measure import calibration, layers
from ..measure.metrics import Scores
from .baselines import Reference, Row, Tolerances
from .checks import CHANGED, FAIL, IMPROVED, PASS, SKIP, XFAIL
from .checks import Check as Verdict


def _compared(reference: Reference | None) -> str:
    return reference.difference if reference else "none"


def _against(reference: Reference | None) -> str:
    return f" [{reference.describe()}]" if reference else ""


def against_baseline(what: str, scores: Scores, row: Row, precision: str, tol: Tolerances,
                     reference: Reference | None = None) -> Verdict:
    """Two-sided: below the row by more than the tolerance is FAIL, above it is IMPROVED (unexplained). A failure of a
    row that carries an xfail reason is XFAIL."""
    measured = scores.percent()
    expected = row.accuracy(precision)
    parts, below, above = [], False, False
    for name, got, want, limit in zip(("pixAcc", "mIoU"), measured, expected, (tol.pixacc_points, tol.miou_points)):
        delta = got - want
        below |= delta < -limit
        above |= delta > limit
        parts.append(f"{name} {got:.2f} (baseline {want:.2f}, {delta:+.2f}, tolerance ±{limit:.2f})")
    status = FAIL if below else IMPROVED if above else PASS
    hint = {FAIL: "accuracy regressed", IMPROVED: "accuracy rose beyond the tolerance: if expected, re-record with --update-baselines", PASS: "within tolerance"}[status]
    message = f"{what}: {hint}: {'; '.join(parts)} [mIoU convention: {scores.convention}]{_against(reference)}"
    if row.xfail_reason and status != PASS:
        return Verdict(XFAIL, f"{message}; expected, the row says: {row.xfail_reason}", _compared(reference))
    if row.xfail_reason:
        message += f"; the row's xfail reason ({row.xfail_reason}) no longer applies: remove it"
    return Verdict(status, message, _compared(reference))


def moved_classes(fp32: Scores, int8: Scores, classes: tuple, count: int = 3) -> str:
    """The classes (named from the dataset) whose IoU changed most between FP32 and INT8, worst first."""
    a, b = np.asarray(fp32.iou), np.asarray(int8.iou)
    delta = np.nan_to_num(b, nan=0.0) - np.nan_to_num(a, nan=0.0)
    order = [i for i in np.argsort(delta) if not (np.isnan(a[i]) and np.isnan(b[i]))][:count]
    return ", ".join(
        f"{classes[i]} {100 * np.nan_to_num(a[i]):.1f} -> {100 * np.nan_to_num(b[i]):.1f} ({100 * delta[i]:+.1f})"
        for i in order
    )


def int8_drop(what: str, fp32: Scores, int8: Scores, tol: Tolerances, classes: tuple, interval=None,
              on_interval: bool = False) -> Verdict:
    """One-sided: INT8 may fall at most the tolerance below FP32 on the same images; a rise never fails.

    With `interval` (stats.Interval) the message gives the bootstrap interval of the drop; with `on_interval`
    the upper bound of that interval is what must stay within the tolerance.
    """
    f, q = fp32.percent(), int8.percent()
    drops = (f[0] - q[0], f[1] - q[1])
    limits = (tol.int8_drop_pixacc_points, tol.int8_drop_miou_points)
    judged = (interval.pixacc[2], interval.miou[2]) if on_interval and interval is not None else drops
    failed = any(d > limit for d, limit in zip(judged, limits))
    detail = "; ".join(
        f"{name} FP32 {a:.2f} -> INT8 {b:.2f} (drop {d:+.2f}, allowed {limit:.2f})"
        for name, a, b, d, limit in zip(("pixAcc", "mIoU"), f, q, drops, limits)
    )
    if interval is not None:
        detail += (f"; {100 * interval.confidence:.0f}% bootstrap interval of the drop over {interval.images} images: "
                   f"pixAcc [{interval.pixacc[1]:+.2f}, {interval.pixacc[2]:+.2f}], mIoU [{interval.miou[1]:+.2f}, "
                   f"{interval.miou[2]:+.2f}]" + (" (its upper bound is gated)" if on_interval else ""))
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


def calibration_table(what: str, now: dict, golden: dict | None, problems: list, rtol: float,
                      reference: Reference | None = None) -> Verdict:
    """Every quantized node's calibrated range (and quantization settings) against the golden table, and the
    invariants MXNet's tests check. With no golden table the invariants still fail a broken table, but a table that
    keeps them is a SKIP: no range was compared. Against another MXNet or oneDNN (tolerance tier version), which
    builds its own quantized graph, a node that appeared or vanished is reported, and only the nodes of both are judged."""
    if problems:
        return Verdict(FAIL, f"{what}: the calibration table breaks MXNet's invariants: {'; '.join(problems[:5])}",
                       _compared(reference if golden is not None else None))
    if golden is None:
        return Verdict(SKIP, f"{what}: {len(now)} calibrated ranges, all present, concat inputs aligned, but no golden table "
                             "at this setting to compare them with (record one with --update-baselines)", "none")
    changes = calibration.moved(golden, now, rtol)
    other_graph = reference is not None and reference.difference == "version"
    structural = [(name, old, new) for name, old, new in changes if other_graph and (old is None or new is None)]
    changes = [c for c in changes if c not in structural]
    note = ("; another MXNet builds another graph: " + ", ".join(f"{name} {'appeared' if old is None else 'vanished'}"
                                                                 for name, old, _ in structural[:6])) if structural else ""
    if changes:
        shown = "; ".join(f"{name}: {calibration.describe(old)} -> {calibration.describe(new)}" for name, old, new in changes[:6])
        return Verdict(FAIL, f"{what}: calibrated ranges moved in {len(changes)} of {len(golden)} layers (beyond "
                             f"{rtol:g} of the golden table): {shown}{note}{_against(reference)}", _compared(reference))
    judged = len(now) - sum(old is None for _, old, _ in structural)
    return Verdict(PASS, f"{what}: all {judged} calibrated ranges match the golden table (within {rtol:g}){note}"
                         f"{_against(reference)}", _compared(reference))


def layer_error(what: str, sqnr: dict, golden: dict | None, upstream: dict, drop_db: float, floor_db: float,
                reference: Reference | None = None) -> Verdict:
    """Per-layer SQNR of INT8 against FP32: no layer may fall more than `drop_db` below its golden value (the band of
    the reference's tolerance tier), nor any below `floor_db`. A failure ranks the layers by their own fall, so the
    layer where the error starts comes first. Without a golden curve only the floor is checked, and the verdict says so."""
    top = layers_named(sqnr, golden, upstream, drop_db, floor_db)
    fell = [r for r in top if golden and r[1] > drop_db]
    floored = [n for n, v in sqnr.items() if v < floor_db]
    worst = min(sqnr, key=sqnr.get)
    compared = _compared(reference if golden else None)
    if not top:
        ref = (f"no layer more than {drop_db:g} dB below its golden value, " if golden
               else "no golden curve at this setting (only the floor was checked), ")
        return Verdict(PASS, f"{what}: {ref}worst layer {worst} at {sqnr[worst]:.1f} dB (floor {floor_db:g} dB)"
                             f"{_against(reference if golden else None)}", compared)
    shown = "; ".join(f"{n}: {sqnr[n]:.1f} dB" + (f" (golden {golden[n]:.1f}, fell {f:.1f}, own {own:.1f})" if golden and n in golden
                                                 else f" (own drop {own:.1f} below its inputs)") for n, f, own in top[:5])
    why = []
    if fell:
        why.append(f"{len(fell)} layers fell more than {drop_db:g} dB below their golden SQNR")
    if floored:
        why.append(f"{len(floored)} layers are below the {floor_db:g} dB floor")
    return Verdict(FAIL, f"{what}: {' and '.join(why)}; by their own fall: {shown}{_against(reference if golden else None)}", compared)


def layers_named(sqnr: dict, golden: dict | None, upstream: dict, drop_db: float, floor_db: float) -> list:
    """(name, fall, own fall) of the layers the per-layer check fails, largest own fall first; [] when it passes."""
    return [(n, f, own) for n, f, own in layers.falls(sqnr, golden, upstream)
            if sqnr[n] < floor_db or (golden and f > drop_db)]


def digest(what: str, now: dict, golden: dict | None, strict: bool, reference: Reference | None = None) -> Verdict:
    """The argmax predictions, image after image, against the golden digest: a change is CHANGED (the other
    checks judge whether it harms), a failure only under --strict-digest and against a record of this environment
    (another ISA or MXNet rounds differently, so there a change is expected)."""
    if golden is None:
        return Verdict(SKIP, f"{what}: no golden digest at this setting (record one with --update-baselines)", "none")
    compared = _compared(reference)
    if now["sha256"] == golden["sha256"]:
        return Verdict(PASS, f"{what}: predictions identical to the golden run ({len(now['images'])} images){_against(reference)}",
                       compared)
    images = [i for i, (a, b) in enumerate(zip(now["images"], golden["images"])) if a != b]
    diff = np.asarray(now["pixels"]) - np.asarray(golden["pixels"])
    classes = [f"{now['classes'][c]} {int(diff[c]):+d}" for c in np.argsort(-np.abs(diff))[:5] if diff[c]]
    detail = (f"predictions CHANGED in {len(images)} of {len(now['images'])} images ({', '.join(now['ids'][i] for i in images[:5])}), "
              f"at least {int(np.abs(diff).sum() // 2)} pixels; predicted pixels by class: {', '.join(classes) or 'unchanged totals'}")
    if strict and compared == "exact":
        return Verdict(FAIL, f"{what}: {detail} (--strict-digest){_against(reference)}", compared)
    note = " (--strict-digest fails only a change against this environment's own record)" if strict else ""
    return Verdict(CHANGED, f"{what}: {detail}; the other checks judge whether it harms{note}{_against(reference)}", compared)


def class_drop(what: str, fp32: Scores, int8: Scores, labelled, classes: tuple, tol: Tolerances) -> Verdict:
    """Per class: INT8 IoU may fall at most the tolerance below FP32; classes labelled less than the minimum
    in this subset are left out, and named."""
    left_out = [classes[c] for c, n in enumerate(labelled) if 0 < n < tol.class_min_pixels]
    judged = [c for c, n in enumerate(labelled) if n >= tol.class_min_pixels]
    drops = sorted(((100 * (np.nan_to_num(fp32.iou[c]) - np.nan_to_num(int8.iou[c])), c) for c in judged), reverse=True)
    bad = [(d, c) for d, c in drops if d > tol.int8_drop_class_iou_points]
    note = f"; left out (fewer than {tol.class_min_pixels:g} labelled pixels): {', '.join(left_out)}" if left_out else ""
    if bad:
        shown = ", ".join(f"{classes[c]} {100 * fp32.iou[c]:.1f} -> {100 * np.nan_to_num(int8.iou[c]):.1f} ({-d:+.1f})" for d, c in bad)
        return Verdict(FAIL, f"{what}: {len(bad)} classes fell more than {tol.int8_drop_class_iou_points:g} points below FP32: "
                             f"{shown}{note}")
    worst = f"largest drop {classes[drops[0][1]]} {drops[0][0]:+.2f}" if drops else "no class judged"
    return Verdict(PASS, f"{what}: no class fell more than {tol.int8_drop_class_iou_points:g} points ({worst}){note}")


def agreement(what: str, equal: np.ndarray, minimum_pct: float, ids: tuple) -> Verdict:
    """A peer runtime's FP32 argmax against MXNet's on the same images (`equal`: images x pixels, True where they
    agree): at least `minimum_pct` percent of the pixels, or the export changed the network; the images that
    disagree most are named."""
    share = 100.0 * float(equal.mean())
    per_image = 100.0 * equal.reshape(len(equal), -1).mean(axis=1)
    worst = ", ".join(f"{ids[i]} {per_image[i]:.1f}%" for i in np.argsort(per_image)[:3] if per_image[i] < 100.0)
    figures = f"FP32 predictions equal to MXNet's on {share:.3f}% of the pixels of {len(equal)} images"
    if share < minimum_pct:
        return Verdict(FAIL, f"{what}: the exported network does not compute what MXNet's does: {figures}, below "
                             f"{minimum_pct:g}%; least alike: {worst}")
    return Verdict(PASS, f"{what}: {figures} (at least {minimum_pct:g}%)" + (f"; least alike: {worst}" if worst else ""))

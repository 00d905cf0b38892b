"""The gate's verdicts: accuracy against a baseline row, the INT8 drop (as a whole and per class), the speed-up,
the calibration table, per-layer error, and the prediction digest."""

from __future__ import annotations

import numpy as np

from ..measure import calibration
from ..measure.metrics import Scores
from . import harm
from .baselines import Reference, Row, Tolerances
from .checks import CHANGED, FAIL, PASS, REGRESSED, SKIP, XFAIL
from .checks import Check as Verdict


def _compared(reference: Reference | None) -> str:
    return reference.compared if reference else "none"


def _against(reference: Reference | None) -> str:
    return f" [{reference.describe()}]" if reference else ""


def _verdict(head: str, shifts: list, reference: Reference | None, note: str = "", subject: str = "accuracy") -> Verdict:
    """A comparison's verdict from its figures' shifts (harm.worst), each described, with what it compared against."""
    status = harm.worst(shifts)
    hint = {PASS: "within the noise band", CHANGED: CHANGED_HINT, REGRESSED: f"{subject} regressed"}[status]
    detail = "; ".join(s.describe() for s in shifts)
    return Verdict(status, f"{head}: {hint}: {detail}{note}{_against(reference)}", _compared(reference))


# What a CHANGED verdict tells the reader: it did not fail, and how to accept it.
CHANGED_HINT = ("CHANGED beyond the noise band, not shown harmful (accept it with pytest --update-baselines; "
                "--strict-changes fails it)")


def against_baseline(what: str, scores: Scores, row: Row, precision: str, tol: Tolerances,
                     reference: Reference | None = None, now_images=None, then_images=None) -> Verdict:
    """pixAcc and mIoU against the baseline row: PASS within the noise band, REGRESSED where a fall beyond it may be
    harm, CHANGED otherwise (harm.Shift); paired over the images where the reference's per-image matrices are given
    (golden records). A failure of a row that carries an xfail reason is XFAIL."""
    harms = (tol.harm_pixacc_points, tol.harm_miou_points)
    shifts = harm.accuracy(precision, scores.percent(), row.accuracy(precision), now_images, then_images,
                           len(scores.iou), scores.convention, (tol.pixacc_points, tol.miou_points), harms, tol.confidence)
    verdict = _verdict(what, shifts, reference, f" [mIoU convention: {scores.convention}]")
    if row.xfail_reason and verdict.status != PASS:
        return Verdict(XFAIL, f"{verdict.message}; expected, the row says: {row.xfail_reason}", verdict.compared)
    if row.xfail_reason:
        return Verdict(PASS, f"{verdict.message}; the row's xfail reason ({row.xfail_reason}) no longer applies: remove it",
                       verdict.compared)
    return verdict


def agreement_shift(what: str, now: tuple, then: tuple, tol: Tolerances, reference: Reference | None) -> Verdict:
    """INT8's per-image pixel agreement with FP32 and output SQNR against the reference INT8's (`now`, `then`:
    (agreement, output_sqnr) lists, image after image), paired over the images; SKIP where the reference has none."""
    shifts = [s for s in (harm.per_image("agreement with FP32 (%)", "points", now[0], then[0], tol.agreement_points,
                                         tol.harm_agreement_points, tol.confidence),
                          harm.per_image("output SQNR against FP32", "dB", now[1], then[1], tol.output_sqnr_db,
                                         tol.harm_output_sqnr_db, tol.confidence)) if s is not None]
    if not shifts:
        return Verdict(SKIP, f"{what}: no per-image agreement recorded for the reference at this setting (record it "
                             "with --update-baselines)", "none")
    return _verdict(what, shifts, reference, subject="agreement with FP32")


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

    `spread` says how they were measured and what else was (the rounds, the benchmarks beside them).
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


def harmed(changed: str, judged: Verdict | None) -> tuple:
    """(status, note) of a change a check sees but cannot weigh itself (ranges, digests): REGRESSED where the model's
    INT8 figures (`judged`: its accuracy, agreement and layers against the reference) regressed, else CHANGED."""
    if judged is not None and judged.status == REGRESSED:
        return REGRESSED, f"{changed}; and the INT8 figures regressed: {judged.message}"
    how = f"the INT8 figures are {judged.status}" if judged is not None else "the INT8 figures were not judged"
    return CHANGED, f"{changed}; {how}, so it is not shown harmful: {CHANGED_HINT}"


def range_changes(golden: dict, now: dict, rtol: float, reference: Reference | None) -> tuple:
    """(the moved ranges the range check judges, largest change first; the nodes another MXNet's graph added or dropped,
    which it only reports): calibration.moved split by whether the reference was made by another MXNet."""
    changes = calibration.moved(golden, now, rtol)
    other_graph = reference is not None and "version" in reference.differs
    structural = [(name, old, new) for name, old, new in changes if other_graph and (old is None or new is None)]
    return [c for c in changes if c not in structural], structural


def calibration_table(what: str, now: dict, golden: dict | None, problems: list, rtol: float,
                      reference: Reference | None = None, judged: Verdict | None = None) -> Verdict:
    """Every quantized node's calibrated range (and quantization settings) against the golden table, and the
    invariants MXNet's tests check. With no golden table the invariants still fail a broken table, but a table that
    keeps them is a SKIP: no range was compared. A range beyond `rtol` (the noise band of the tier of what differs) is
    CHANGED, or REGRESSED where the model's INT8 figures regressed (`judged`). Against another MXNet or oneDNN, which
    builds its own quantized graph, a node that appeared or vanished is reported, and only the nodes of both are judged
    (a SKIP where there are none)."""
    if problems:
        return Verdict(FAIL, f"{what}: the calibration table breaks MXNet's invariants: {'; '.join(problems[:5])}",
                       _compared(reference if golden is not None else None))
    if golden is None:
        return Verdict(SKIP, f"{what}: {len(now)} calibrated ranges, all present, concat inputs aligned, but no golden table "
                             "at this setting to compare them with (record one with --update-baselines)", "none")
    changes, structural = range_changes(golden, now, rtol, reference)
    note = ("; another MXNet builds another graph: " + ", ".join(f"{name} {'appeared' if old is None else 'vanished'}"
                                                                 for name, old, _ in structural[:6])) if structural else ""
    if changes:
        shown = "; ".join(f"{name}: {calibration.describe(old)} -> {calibration.describe(new)}" for name, old, new in changes[:6])
        status, detail = harmed(f"calibrated ranges moved in {len(changes)} of {len(golden)} layers (beyond the noise band "
                                f"{rtol:g} of the golden table): {shown}{note}", judged)
        return Verdict(status, f"{what}: {detail}{_against(reference)}", _compared(reference))
    judged_count = len(now) - sum(old is None for _, old, _ in structural)
    if not judged_count:
        return Verdict(SKIP, f"{what}: none of the {len(now)} calibrated ranges has a layer of the same name in the golden "
                             f"table, so none was compared{note}{_against(reference)}", _compared(reference))
    return Verdict(PASS, f"{what}: all {judged_count} calibrated ranges match the golden table (within the noise band {rtol:g})"
                         f"{note}{_against(reference)}", _compared(reference))


def layer_error(what: str, sqnr: dict, now: dict, golden: dict | None, upstream: dict, tol: Tolerances,
                bands: dict | None = None, reference: Reference | None = None) -> tuple:
    """(Verdict, the layers it names, most to blame first) of per-layer SQNR of INT8 against FP32. Any layer below
    the floor fails (`sqnr`: layer -> SQNR over the images, in graph order); its message names the floored layers
    whose inputs are above it, where the error starts (`upstream`: layer -> the layers feeding it). Against the
    golden curve (`golden`: layer -> (per-image SQNR, per-image FP32 energy), `now` likewise), each layer's own
    change in pooled SQNR (harm.layers: its change less the largest fall of its inputs) within its noise band
    (`bands`: measured per layer, else the tier's) passes; beyond it, REGRESSED where the interval reaches the harm
    threshold, else CHANGED. The layers named are those beyond their band, largest own fall first (it charges an
    error to where it starts, also under the floor, where a layer that clips may stay above it), else the floor's.
    Without a golden curve a table above the floor is a SKIP; so is a graph with no quantized layer."""
    if not sqnr:
        return Verdict(SKIP, f"{what}: no quantized layer to compare with FP32 (every convolution is kept in FP32)"), []
    floored = {n for n, v in sqnr.items() if v < tol.sqnr_floor_db}
    worst = min(sqnr, key=sqnr.get)
    shifts = harm.layers(now, golden or {}, upstream, bands or {}, tol.sqnr_drop_db, tol.harm_layer_sqnr_db, tol.confidence)
    moved = [s for s in shifts if s.status != PASS]
    named = [s.figure.removeprefix("layer ") for s in moved]
    if floored:
        starts = [n for n in sqnr if n in floored and not floored.intersection(upstream.get(n, []))]
        below = starts + sorted(floored.difference(starts), key=sqnr.get)
        shown = "; ".join(f"{n}: {sqnr[n]:.1f} dB" for n in below[:5])
        own = f"; by its own change against the golden curve, first {moved[0].describe()}" if moved else ""
        return Verdict(FAIL, f"{what}: {len(floored)} layers are below the {tol.sqnr_floor_db:g} dB floor, the error "
                             f"starting at {', '.join(starts[:3])} (no input below the floor): {shown}{own}",
                       _compared(reference if golden else None)), named or below
    if not shifts:
        why = ("the golden per-layer curve at this setting holds no per-image energies to pool (recorded before segcheck "
               "kept them): record it again" if golden else "no golden per-layer curve at this setting to compare with: "
               "record one")
        return Verdict(SKIP, f"{what}: {why} with --update-baselines; every layer above the {tol.sqnr_floor_db:g} dB floor, "
                             f"worst {worst} at {sqnr[worst]:.1f} dB", "none"), []
    if not moved:
        return Verdict(PASS, f"{what}: every layer's own SQNR change within its noise band (largest own change "
                             f"{shifts[0].change:+.2f} dB, {shifts[0].figure}); worst layer {worst} at {sqnr[worst]:.1f} dB"
                             f"{_against(reference)}", _compared(reference)), named
    status = harm.worst(moved)
    shown = "; ".join(s.describe() for s in moved[:5])
    head = (f"regressed: {sum(s.status == REGRESSED for s in moved)} layers fell by themselves beyond their noise band, "
            f"with a fall of {tol.harm_layer_sqnr_db:g} dB (harm) inside the interval" if status == REGRESSED else
            f"{len(moved)} layers' own SQNR moved beyond their noise band, none shown harmful: {CHANGED_HINT}")
    return Verdict(status, f"{what}: {head}; by their own change: {shown}{_against(reference)}", _compared(reference)), named


def digest(what: str, now: dict, golden: dict | None, reference: Reference | None = None,
           judged: Verdict | None = None) -> Verdict:
    """The argmax predictions, image after image, against the golden digest. Against this environment's record with
    the same INT8 key (the exact tier, whose noise is none: reruns agree bit for bit) a change is CHANGED, or REGRESSED
    where the precision's figures regressed (`judged`); across environments or recipes predictions differ within that
    tier's noise, which the figures judge, so a change there passes, saying so."""
    if golden is None:
        return Verdict(SKIP, f"{what}: no golden digest at this setting (record one with --update-baselines)", "none")
    compared = _compared(reference)
    if now["images"] == golden["images"]:  # each image's predictions hashed: identical, image for image
        return Verdict(PASS, f"{what}: predictions identical to the golden run ({len(now['images'])} images){_against(reference)}",
                       compared)
    images = [i for i, (a, b) in enumerate(zip(now["images"], golden["images"])) if a != b]
    diff = np.asarray(now["pixels"]) - np.asarray(golden["pixels"])
    classes = [f"{now['classes'][c]} {int(diff[c]):+d}" for c in np.argsort(-np.abs(diff))[:5] if diff[c]]
    detail = (f"predictions changed in {len(images)} of {len(now['images'])} images ({', '.join(now['ids'][i] for i in images[:5])}), "
              f"at least {int(np.abs(diff).sum() // 2)} pixels; predicted pixels by class: {', '.join(classes) or 'unchanged totals'}")
    if reference is not None and reference.differs:
        return Verdict(PASS, f"{what}: {detail}: within the noise of tier {reference.compared}, whose reruns differ so; "
                             f"the figures judge the change{_against(reference)}", compared)
    status, message = harmed(detail, judged)
    return Verdict(status, f"{what}: {message}{_against(reference)}", compared)


def class_drops(fp32: Scores, int8: Scores, labelled, tol: Tolerances) -> list:
    """(IoU drop in points, class) of each class labelled at least the minimum in this subset, largest drop first."""
    judged = [c for c, n in enumerate(labelled) if n >= tol.class_min_pixels]
    return sorted(((100 * (np.nan_to_num(fp32.iou[c]) - np.nan_to_num(int8.iou[c])), c) for c in judged), reverse=True)


def class_drop(what: str, fp32: Scores, int8: Scores, labelled, classes: tuple, tol: Tolerances) -> Verdict:
    """Per class: INT8 IoU may fall at most the tolerance below FP32; classes labelled less than the minimum
    in this subset are left out, and named. Where every class is left out, nothing was compared: a SKIP."""
    left_out = [classes[c] for c, n in enumerate(labelled) if 0 < n < tol.class_min_pixels]
    drops = class_drops(fp32, int8, labelled, tol)
    bad = [(d, c) for d, c in drops if d > tol.int8_drop_class_iou_points]
    note = f"; left out (fewer than {tol.class_min_pixels:g} labelled pixels): {', '.join(left_out)}" if left_out else ""
    if not drops:
        return Verdict(SKIP, f"{what}: no class has {tol.class_min_pixels:g} labelled pixels in this subset, so no class's "
                             f"drop was compared (evaluate more images){note}")
    if bad:
        shown = ", ".join(f"{classes[c]} {100 * fp32.iou[c]:.1f} -> {100 * np.nan_to_num(int8.iou[c]):.1f} ({-d:+.1f})" for d, c in bad)
        return Verdict(FAIL, f"{what}: {len(bad)} classes fell more than {tol.int8_drop_class_iou_points:g} points below FP32: "
                             f"{shown}{note}")
    worst = f"largest drop {classes[drops[0][1]]} {drops[0][0]:+.2f}"
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

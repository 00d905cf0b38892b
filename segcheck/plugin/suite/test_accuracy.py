"""The accuracy gate: every configured model in FP32 and INT8 against its baseline row and against each other."""

import pytest

from segcheck.gate import verdicts
from segcheck.config.recipes import EXCLUDE_LAYERS
from segcheck.measure import calibration, stats
from segcheck.models import build, pipeline
from segcheck.models.graph import inspect_graph


def _scores(case, precision, segcheck, request):
    """Evaluate, and put the figures, the matrices (whole and per image) and the tolerances into the report."""
    ev = case.evaluation(precision)
    assert not ev.skipped or case.config.run.skip_bad, f"samples left out: {ev.skipped}"
    scores = ev.matrix.compute(segcheck.convention)
    figures = {**scores.figures(), "matrix": ev.matrix.matrix.tolist(), "per_image": ev.per_image, "cached": ev.cached}
    if precision == "int8":
        figures.update(agreement=ev.agreement, output_sqnr=ev.output_sqnr)
    segcheck.record(request, case, subset=ev.subset.describe(), setting=case.config.setting(), classes=list(case.classes),
                    tolerances=vars(segcheck.tolerances(case)), shard=segcheck.shard_of(case, ev), int8_key=case.int8_key,
                    **{precision: figures})
    return scores, ev


def _gated_after_merging(case, ev, segcheck):
    shard = case.config.run.shard
    if shard is not None:
        pytest.skip(f"{case.name}: shard {shard[0]}/{shard[1]} ({len(ev.subset.ids)} of {len(case.whole.ids)} images): "
                    "its accuracy is gated on the merged shards (segcheck merge)")


def test_accuracy(case, precision, segcheck, request):
    """pixAcc and mIoU against the baseline row this run replaces: FP32 at this setting whatever the INT8 recipe, INT8
    under this run's INT8 key, else the nearest recorded one (the recipe tier); recorded in this environment, else in
    the nearest at the tier for what differs. PASS within the noise band, REGRESSED where a fall may be harm (paired over
    the images with the golden records), else CHANGED."""
    scores, ev = _scores(case, precision, segcheck, request)
    found, tol, verdict = segcheck.accuracy_verdict(case, precision, scores, ev)
    if found.row is None:
        segcheck.no_baseline(request, found.reason)
    segcheck.record(request, case, baseline={precision: vars(found.row)}, reference={precision: vars(found.reference)},
                    accuracy_tolerances={precision: vars(tol)})
    if case.config.run.shard is not None:  # merge pairs the merged images with these, as the unsharded run does
        segcheck.record(request, case, baseline_per_image={precision: segcheck.paired_images(case, precision, found.reference)})
    _gated_after_merging(case, ev, segcheck)
    segcheck.judge(request, verdict)


@pytest.mark.int8
def test_int8_agreement(case, segcheck, request):
    """INT8's pixel agreement with FP32 and its output SQNR, image by image on the first images, against the reference
    INT8's (the golden records of this INT8 key, else the nearest recipe's): paired, with an interval."""
    _scores(case, "int8", segcheck, request)
    shard = case.config.run.shard
    if shard is not None:
        pytest.skip(f"{case.name}: shard {shard[0]}/{shard[1]}'s first images are not the whole run's, which the reference's "
                    "agreement was recorded on: run unsharded to judge it")
    segcheck.judge(request, segcheck.agreement_verdict(case))


@pytest.mark.int8
def test_int8_drop(case, segcheck, request):
    """INT8 measured on the same images in the same run may not fall more than the tolerance below FP32
    (with --gate-drop-interval: the upper bound of its paired bootstrap interval over images)."""
    fp32, ev = _scores(case, "fp32", segcheck, request)
    int8, ev8 = _scores(case, "int8", segcheck, request)
    interval = stats.evaluation_drop(ev, ev8, len(case.classes), segcheck.convention)
    segcheck.record(request, case, drop_interval=vars(interval))
    _gated_after_merging(case, ev, segcheck)
    verdict = verdicts.int8_drop(f"{case.name} on {ev.subset.describe()}", fp32, int8, segcheck.tolerances(case), case.classes,
                                 interval, bool(segcheck.options.gate_drop_interval))
    segcheck.judge(request, verdict)


@pytest.mark.int8
def test_int8_class_drop(case, segcheck, request):
    """No class's IoU may fall more than the tolerance below FP32, even when the mean holds; classes with too
    few labelled pixels in the subset are left out and named."""
    fp32, ev = _scores(case, "fp32", segcheck, request)
    int8, _ = _scores(case, "int8", segcheck, request)
    golden = segcheck.golden(case)
    if golden and golden.class_iou:
        segcheck.record(request, case, baseline_class_iou=golden.class_iou)
    _gated_after_merging(case, ev, segcheck)
    labelled = ev.matrix.matrix.sum(axis=1)
    segcheck.judge(request, verdicts.class_drop(f"{case.name} on {ev.subset.describe()}", fp32, int8, labelled, case.classes,
                                                segcheck.tolerances(case)))


def _kept_in_fp32(case) -> list:
    """The convolutions the configured recipe keeps in FP32 (its exclude list, and the architecture's), by stable name."""
    recipe = case.config.calib
    paths = EXCLUDE_LAYERS.get(case.config.arch, ()) + (tuple(recipe.exclude) if recipe else ())
    if not paths:
        return []
    names = calibration.conv_layers(build.build(case.config.network, case.config.crop_size))
    return sorted(names[p] for p in paths if p in names)


@pytest.mark.int8
def test_int8_graph_is_quantized_and_calibrated(case, segcheck, request):
    """Every convolution runs in INT8 but those the recipe keeps in FP32 (an op silently left in FP32 is a regression,
    and so is an excluded one quantized), with calibrated ranges."""
    graph = case.int8.graph
    segcheck.record(request, case, int8_share=round(graph.int8_share, 4), int8_source=case.int8.source)
    assert graph.convs > 0, f"{case.name}: the INT8 graph ({case.int8.source}) holds no convolution"
    kept, left = _kept_in_fp32(case), sorted(calibration.stable(n) for n in graph.fp32_layers)
    assert left == kept, (
        f"{case.name}: {graph.fp32_convs} of {graph.convs} convolutions left in FP32 "
        f"({graph.int8_share:.0%} INT8) in {case.int8.source}: {', '.join(left[:5]) or 'none'}; the recipe keeps "
        f"{len(kept)} in FP32: {', '.join(kept[:5]) or 'none'}"
    )
    if case.config.calib is None or case.config.calib.mode != "none":
        assert graph.calibrated_convs == graph.int8_convs, (
            f"{case.name}: {graph.int8_convs - graph.calibrated_convs} quantized convolutions lack calibrated ranges "
            f"in {case.int8.source}"
        )


@pytest.mark.fp32
def test_fp32_graph_is_fused_on_onednn(case, segcheck, request):
    """FP32 runs fused (_sg_mkldnn_conv), every convolution of the network: INT8 speed-ups are measured against this.
    Where this MXNet had to be fused another way, the run says so (its warnings)."""
    graph = inspect_graph(case.fp32_symbol)
    segcheck.record(request, case, warnings=list(build.FALLBACKS))
    expected = pipeline.conv_count(case.config)
    assert graph.convs == expected and graph.int8_convs == 0, f"{graph.convs} convolutions in the fused graph, {expected} in the network"
    assert graph.unfused_convs == 0, f"{graph.unfused_convs} of {graph.convs} convolutions are not fused onto oneDNN"


@pytest.mark.synthetic
@pytest.mark.fp32
def test_seeded_fp32_model_really_segments(case):
    """The fitted synthetic models must segment (present-class mIoU >= 50) so that an INT8 drop is measurable."""
    if case.config.weights.kind != "seeded":
        pytest.skip("only the synthetic tier's seeded models are checked for this")
    ev = case.evaluation("fp32")
    scores = ev.matrix.compute("present")
    assert scores.miou >= 0.5, f"{case.name}: present-class mIoU {scores.miou:.3f} on {ev.subset.describe()}"
    assert scores.pix_acc >= 0.85, f"{case.name}: pixAcc {scores.pix_acc:.3f} on {ev.subset.describe()}"


@pytest.mark.int8
def test_deploy_round_trip(case, tmp_path):
    """Export to <prefix>-symbol.json / -0000.params, re-import with SymbolBlock.imports: same predictions. In a forked
    child, as the gate's other INT8 inference (a crash or a hang there fails this check alone); a pass of the same
    model, images, environment and code is read from the evaluation cache."""
    case.deploy_round_trip(tmp_path)

"""The accuracy gate: every seed model in FP32 and INT8 against its baseline row and against each other."""

import pytest

from segcheck import gate


def _scores(case, precision, tier, results):
    ev = case.evaluation(precision)
    scores = ev.matrix.compute(tier.metric_convention)
    pixacc, miou = gate.percent(scores)
    results.record(case.spec.name, precision, pixacc=round(pixacc, 4), miou=round(miou, 4))
    results.model(case.spec.name).subset = ev.subset.describe()
    assert not ev.skipped or case.config.skip_bad, f"samples left out: {ev.skipped}"
    return scores, ev


def test_accuracy(case, precision, tier, baseline_row, results):
    """pixAcc and mIoU within tolerance of the baseline row for this tier, environment and setting."""
    scores, ev = _scores(case, precision, tier, results)
    if baseline_row.row is None:
        pytest.skip(baseline_row.reason)
    verdict = gate.against_baseline(f"{case.spec.name} {precision} on {ev.subset.describe()}", scores,
                                    baseline_row.row, precision, tier.tolerances)
    results.verdict(case.spec.name, f"{precision}-accuracy", verdict)
    assert not verdict.failed, verdict.message


@pytest.mark.int8
def test_int8_drop(case, tier, results):
    """INT8 measured on the same images in the same run may not fall more than the tolerance below FP32."""
    fp32, ev = _scores(case, "fp32", tier, results)
    int8, _ = _scores(case, "int8", tier, results)
    verdict = gate.int8_drop(f"{case.spec.name} on {ev.subset.describe()}", fp32, int8, tier.tolerances)
    results.verdict(case.spec.name, "int8-drop", verdict)
    assert not verdict.failed, verdict.message


@pytest.mark.int8
def test_int8_graph_is_quantized_and_calibrated(case, results):
    """Every convolution runs in INT8 (an op silently left in FP32 is a regression), with calibrated ranges."""
    graph = case.int8.graph
    results.model(case.spec.name).int8_share = round(graph.int8_share, 4)
    assert graph.convs > 0
    assert graph.int8_share == 1.0, (
        f"{case.spec.name}: {graph.fp32_convs} of {graph.convs} convolutions left in FP32 "
        f"({graph.int8_share:.0%} INT8): {', '.join(graph.fp32_layers[:5])}"
    )
    if case.config.calib.mode != "none":
        assert graph.calibrated_convs == graph.int8_convs, (
            f"{case.spec.name}: {graph.int8_convs - graph.calibrated_convs} quantized convolutions lack calibrated ranges"
        )


@pytest.mark.fp32
def test_fp32_graph_is_fused_on_onednn(case, tmp_path):
    """FP32 runs fused (_sg_mkldnn_conv): INT8 speed-ups are always measured against this."""
    from segcheck.models import export, quantize

    symbol, _ = export.export(case.fp32, tmp_path / "fp32")
    graph = quantize.inspect_graph(symbol.read_text())
    assert graph.convs > 100 and graph.int8_convs == 0
    assert graph.unfused_convs == 0, f"{graph.unfused_convs} of {graph.convs} convolutions are not fused onto oneDNN"


@pytest.mark.synthetic
@pytest.mark.fp32
def test_seeded_fp32_model_really_segments(case, tier, results):
    """The fitted synthetic models must segment (present-class mIoU >= 50) so that an INT8 drop is measurable."""
    if case.config.tier != "synthetic":
        pytest.skip("the seeded models exist on the synthetic tier only")
    ev = case.evaluation("fp32")
    scores = ev.matrix.compute("present")
    assert scores.miou >= 0.5, f"{case.spec.name}: present-class mIoU {scores.miou:.3f} on {ev.subset.describe()}"
    assert scores.pix_acc >= 0.85, f"{case.spec.name}: pixAcc {scores.pix_acc:.3f} on {ev.subset.describe()}"


@pytest.mark.int8
def test_deploy_round_trip(case, tmp_path):
    """Export to <prefix>-symbol.json / -0000.params, re-import with SymbolBlock.imports: same predictions."""
    import numpy as np

    from segcheck import data
    from segcheck.evaluate import logits
    from segcheck.models import export

    symbol, params = export.export(case.int8.block, tmp_path / "model" / f"{case.spec.name}-quantized-{case.config.calib.mode}")
    deployed = export.load(str(symbol).replace("-symbol.json", ""))
    for x, _, _ in data.batches(case.val, data.first(case.val, 2), 1):
        np.testing.assert_array_equal(logits(deployed, x).asnumpy(), logits(case.int8.block, x).asnumpy())
    assert params.stat().st_size > 1_000_000

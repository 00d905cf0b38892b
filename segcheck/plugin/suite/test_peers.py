"""The same network exported to ONNX and gated on a peer runtime (ONNX Runtime, OpenVINO), in the peer environment
(`segcheck peer install`), judged with segcheck's own metrics: its FP32 against MXNet's, its INT8 drop against its own
FP32 (the peer's own quantizer), and both precisions against the peer's baseline row ("<model>+<runtime>")."""

import pytest

from segcheck.gate import verdicts
from segcheck.gate.checks import peer_row
from segcheck.measure import stats

pytestmark = pytest.mark.peer


def _run(case, peer, segcheck, request):
    """The peer's run of this case, its figures and latencies put in the report of the peer's own row."""
    run = case.peer(peer)
    row = peer_row(case.name, peer)
    figures = {}
    for precision, ev in run.evaluations.items():
        scores = ev.matrix.compute(segcheck.convention)
        latency = run.latency[precision]
        figures[precision] = {**scores.figures(), "matrix": ev.matrix.matrix.tolist(), "per_image": ev.per_image,
                              "latency_ms": latency["min_ms"], "latency_median_ms": latency["median_ms"],
                              "latency_iqr_pct": latency["iqr_pct"], "latency_rounds": latency["rounds"]}
    segcheck.record(request, row, subset=run.evaluations["fp32"].subset.describe(), setting=segcheck.peer_setting(case),
                    int8_key=case.peer_recipe.label(),
                    classes=list(case.classes), tolerances=vars(segcheck.tolerances(case)),
                    int8_source=f"{peer}: {run.quantizer}, {run.quantized_ops} quantizing operations", **figures)
    return run, row


def test_peer_fp32_agrees_with_mxnet(case, peer, segcheck, request):
    """The exported FP32 network, run by the peer, predicts what MXNet's fused FP32 predicts, pixel for pixel (an
    export regression fails here, naming the case and the images least alike)."""
    run, row = _run(case, peer, segcheck, request)
    ids = run.evaluations["fp32"].subset.ids[:len(run.fp32_predictions)]
    equal = case.fp32_predictions(ids) == run.fp32_predictions
    segcheck.record(request, row, agreement_pct=round(100.0 * float(equal.mean()), 4))
    segcheck.judge(request, verdicts.agreement(f"{row} on {len(ids)} images", equal, segcheck.tolerances(case).peer_agreement_pct,
                                               ids))


def test_peer_accuracy(case, peer, precision, segcheck, request):
    """The peer's pixAcc and mIoU within tolerance of its own baseline row (recorded by --update-baselines)."""
    run, row = _run(case, peer, segcheck, request)
    scores = run.evaluations[precision].matrix.compute(segcheck.convention)
    found = segcheck.baseline(case, precision, row)
    if found.row is None:
        segcheck.no_baseline(request, found.reason)
    tol = segcheck.tolerances(case, found.reference, precision)
    segcheck.record(request, row, baseline={precision: vars(found.row)}, reference={precision: vars(found.reference)},
                    accuracy_tolerances={precision: vars(tol)})
    segcheck.judge(request, verdicts.against_baseline(f"{row} {precision} on {run.evaluations[precision].subset.describe()}",
                                                      scores, found.row, precision, tol, found.reference))


def test_peer_int8_drop(case, peer, segcheck, request):
    """The peer's INT8 (its own quantizer, calibrated on the images this case's INT8 calibrates on) may fall at most
    the model's tolerance below the peer's FP32 on the same images; an INT8 model whose every convolution does not take
    quantized input fails, as MXNet's graph check demands of MXNet's."""
    run, row = _run(case, peer, segcheck, request)
    quantized, convs = run.quantized_convs
    assert convs > 0 and quantized == convs, (
        f"{row}: {convs - quantized} of {convs} convolutions of the peer's INT8 model ({run.quantizer}) take FP32 input "
        f"({run.quantized_ops} quantizing operations in all): its INT8 drop would judge a model barely quantized")
    fp32, int8 = (run.evaluations[p] for p in ("fp32", "int8"))
    interval = stats.evaluation_drop(fp32, int8, len(case.classes), segcheck.convention)
    segcheck.record(request, row, drop_interval=vars(interval))
    segcheck.judge(request, verdicts.int8_drop(f"{row} on {fp32.subset.describe()}", fp32.matrix.compute(segcheck.convention),
                                               int8.matrix.compute(segcheck.convention), segcheck.tolerances(case), case.classes,
                                               interval, bool(segcheck.options.gate_drop_interval)))

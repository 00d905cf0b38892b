"""Latency with pytest-benchmark: FP32 (fused) and INT8 at batch 1, and the speed-up gate.

The speed-up gate runs where both benchmarks of the model ran in this process, and judges FP32 and INT8 timed in
turn, round after round (measure.latency.alternating): two benchmarks a second apart each meet the host as it was
then, and on a shared 2-core host one slow second once held all of one benchmark's rounds (a 1.23x "speed-up" of a
model at 2.2x, AVX2). No plain test asserts an absolute time.
"""

import mxnet as mx
import pytest

from segcheck.data import loaders
from segcheck.gate import verdicts
from segcheck.measure import latency

pytestmark = pytest.mark.bench

PAIRED_ROUNDS = 20  # a round is one FP32 and one INT8 pass: 2.4 to 3.4 s a model at 64 px on the 2-core AVX2 EPYC


def test_latency(case, precision, benchmark, segcheck, latencies, request):
    """Rounds adapt (pytest-benchmark's --benchmark-precision, within its --benchmark-max-time) until the mean is
    known to the precision segcheck sets, or the time budget runs out; the spread goes into the results."""
    model = case.model(precision)
    crop = case.config.crop_size
    x = loaders.dummy_input(1, crop)  # the seed's --benchmark mode: data-independent input
    benchmark.group = case.name
    benchmark.extra_info.update(model=case.name, precision=precision, shape=[1, 3, crop, crop], tier=segcheck.run.tier)
    out = benchmark(latency.forward, model, x)
    assert out.shape == (1, case.config.kind.num_classes, crop, crop)
    assert bool(mx.nd.contrib.isfinite(out).min().asscalar())
    if benchmark.stats is not None:  # None when pytest-benchmark is disabled (e.g. under xdist)
        stats = benchmark.stats.stats
        latencies[(case.name, precision)] = stats
        segcheck.record(request, case, **{precision: {
            "latency_ms": round(stats.min * 1000, 3), "latency_median_ms": round(stats.median * 1000, 3),
            "latency_iqr_pct": round(100 * stats.iqr / stats.median, 2), "latency_rounds": stats.rounds}})


def _spread(stats) -> str:
    return f"{stats.rounds} rounds, IQR {100 * stats.iqr / stats.median:.1f}% of the median"


def test_int8_speedup(case, segcheck, latencies, request):
    """INT8 over fused FP32 timed in turn (minimum of each one's rounds), against the minimum for this ISA; the two
    benchmarks above are named beside it."""
    name = case.name
    if (name, "fp32") not in latencies or (name, "int8") not in latencies:
        pytest.skip("needs both latency benchmarks of this model in this process "
                    "(pytest-benchmark is disabled under xdist and by --benchmark-disable)")
    fp32, int8 = latencies[(name, "fp32")], latencies[(name, "int8")]
    timed = latency.alternating([case.model("fp32"), case.model("int8")], loaders.dummy_input(1, case.config.crop_size),
                                PAIRED_ROUNDS)
    paired = {"fp32_ms": round(timed[0].min * 1000, 3), "int8_ms": round(timed[1].min * 1000, 3), "rounds": PAIRED_ROUNDS}
    isa = segcheck.environment.isa
    minimum = segcheck.min_speedup(case, isa)
    segcheck.record(request, case, min_speedup=minimum, speedup_paired=paired)
    spread = (f"timed in turn, {PAIRED_ROUNDS} rounds each; the benchmarks: FP32 {fp32.min * 1000:.2f} ms, {_spread(fp32)}; "
              f"INT8 {int8.min * 1000:.2f} ms, {_spread(int8)}")
    segcheck.judge(request, verdicts.speedup(name, paired["fp32_ms"], paired["int8_ms"], minimum, isa, spread))

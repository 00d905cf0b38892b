"""Latency with pytest-benchmark: FP32 (fused) and INT8 at batch 1, and the speed-up gate.

The speed-up compares the two benchmarks of the same model measured in this process; no plain test
asserts an absolute time.
"""

import mxnet as mx
import pytest

from segcheck.data import loaders
from segcheck.gate import verdicts
from segcheck.measure import latency

pytestmark = pytest.mark.bench


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
    """INT8 over fused FP32, both measured above in this process (minimum of the rounds), against the minimum for this ISA."""
    name = case.name
    if (name, "fp32") not in latencies or (name, "int8") not in latencies:
        pytest.skip("needs both latency benchmarks of this model in this process "
                    "(pytest-benchmark is disabled under xdist and by --benchmark-disable)")
    fp32, int8 = latencies[(name, "fp32")], latencies[(name, "int8")]
    isa = segcheck.environment.isa
    minimum = segcheck.min_speedup(case, isa)
    segcheck.record(request, case, min_speedup=minimum)
    spread = f"FP32 {_spread(fp32)}, INT8 {_spread(int8)}"
    segcheck.judge(request, verdicts.speedup(name, fp32.min * 1000, int8.min * 1000, minimum, isa, spread))

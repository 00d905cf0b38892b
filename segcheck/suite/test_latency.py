"""Latency with pytest-benchmark: FP32 (fused) and INT8 at batch 1, and the speed-up gate.

The speed-up compares the two benchmarks of the same model measured in this process; no plain test
asserts an absolute time.
"""

import mxnet as mx
import pytest

from segcheck import data, gate, latency
from segcheck.environment import threads

pytestmark = pytest.mark.bench


def test_latency(case, precision, benchmark, segcheck, latencies, request):
    model = case.model(precision)
    crop = case.config.crop_size
    x = data.dummy_input(1, crop)  # the seed's --benchmark mode: data-independent input
    env = segcheck.environment
    benchmark.group = case.name
    benchmark.extra_info.update(
        model=case.name, precision=precision, shape=[1, 3, crop, crop], threads=threads(),
        isa=env["isa"], onednn=env["onednn"], mxnet=env["mxnet"], tier=segcheck.run.tier,
    )
    warmup = segcheck.found.get("latency_warmup")
    out = benchmark.pedantic(latency.forward, args=(model, x), rounds=request.config.getoption("benchmark_min_rounds"),
                             warmup_rounds=2 if warmup is None else warmup, iterations=1)
    assert out.shape == (1, case.config.kind.num_classes, crop, crop)
    assert bool(mx.nd.contrib.isfinite(out).min().asscalar())
    if benchmark.stats is not None:  # None when pytest-benchmark is disabled (e.g. under xdist)
        stats = benchmark.stats.stats
        latencies[(case.name, precision)] = stats
        segcheck.record(request, case, **{precision: {"latency_ms": round(stats.min * 1000, 3),
                                                      "latency_median_ms": round(stats.median * 1000, 3)}})


def test_int8_speedup(case, segcheck, latencies, request):
    """INT8 over fused FP32, both measured above in this process, against the minimum for this ISA."""
    name = case.name
    if (name, "fp32") not in latencies or (name, "int8") not in latencies:
        pytest.skip("needs both latency benchmarks of this model in this process "
                    "(pytest-benchmark is disabled under xdist and by --benchmark-disable)")
    fp32_ms, int8_ms = latencies[(name, "fp32")].min * 1000, latencies[(name, "int8")].min * 1000
    isa = segcheck.environment["isa"]
    segcheck.judge(request, gate.speedup(name, fp32_ms, int8_ms, segcheck.min_speedup(case, isa), isa))

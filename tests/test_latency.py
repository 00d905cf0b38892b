"""Latency with pytest-benchmark: FP32 (fused) and INT8 at batch 1, and the speed-up gate.

The speed-up compares the two benchmarks of the same model measured in this process; no plain test
asserts an absolute time.
"""

import mxnet as mx
import pytest

from segcheck import data, gate
from segcheck.environment import threads
from segcheck.evaluate import logits

pytestmark = pytest.mark.bench


def test_latency(case, precision, benchmark, run_config, env, latencies, results, pytestconfig):
    model = case.model(precision)
    x = data.dummy_input(1, run_config.crop_size)  # the seed's --benchmark mode: data-independent input

    def forward():
        out = logits(model, x)
        out.wait_to_read()  # MXNet is asynchronous: the clock stops when the output exists
        return out

    benchmark.group = case.spec.name
    benchmark.extra_info.update(
        model=case.spec.name, precision=precision, shape=[1, 3, run_config.crop_size, run_config.crop_size],
        threads=threads(), isa=env["isa"], onednn=env["onednn"], mxnet=env["mxnet"], tier=run_config.tier,
    )
    out = benchmark.pedantic(forward, rounds=pytestconfig.getoption("benchmark_min_rounds"),
                             warmup_rounds=pytestconfig.getoption("--latency-warmup"), iterations=1)
    assert out.shape == (1, 21, run_config.crop_size, run_config.crop_size)
    assert bool(mx.nd.contrib.isfinite(out).min().asscalar())
    if benchmark.stats is not None:  # None when pytest-benchmark is disabled (e.g. under xdist)
        stats = benchmark.stats.stats
        latencies[(case.spec.name, precision)] = stats
        results.record(case.spec.name, precision, latency_ms=round(stats.min * 1000, 3),
                       latency_median_ms=round(stats.median * 1000, 3))


def test_int8_speedup(case, tier, env, latencies, results):
    """INT8 over fused FP32, both measured above in this process, against the minimum for this ISA."""
    name = case.spec.name
    if (name, "fp32") not in latencies or (name, "int8") not in latencies:
        pytest.skip("needs both latency benchmarks of this model in this process "
                    "(pytest-benchmark is disabled under xdist and by --benchmark-disable)")
    fp32_ms, int8_ms = latencies[(name, "fp32")].min * 1000, latencies[(name, "int8")].min * 1000
    minimum = tier.min_speedup.get(env["isa"], {}).get(case.spec.arch)
    verdict = gate.speedup(name, fp32_ms, int8_ms, minimum, env["isa"])
    results.verdict(name, "speedup", verdict)
    if verdict.status == gate.SKIP:
        pytest.skip(verdict.message)
    assert not verdict.failed, verdict.message

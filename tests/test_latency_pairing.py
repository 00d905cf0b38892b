"""measure.latency.alternating: models timed in turn share the host's drift, so their ratio holds where two runs
timed one after the other do not. On a clock of its own (no wall-clock time): each model's pass costs what it says,
and a slow stretch of the host adds to every pass that falls in it."""

import mxnet as mx

from segcheck.measure import latency


class Host:
    """A fake clock and the passes run on it; the first `slow` passes, whatever model runs them, take 10 ms more."""

    def __init__(self, slow: int):
        self.now, self.passes, self.slow, self.order = 0.0, 0, slow, []

    def model(self, name: str, seconds: float):
        def forward(x):
            self.now += seconds + (0.010 if self.passes < self.slow else 0.0)
            self.passes += 1
            self.order.append(name)
            return mx.nd.zeros((1, 2, 4, 4))

        return forward


def test_a_slow_stretch_over_one_models_rounds_moves_a_sequential_ratio_and_not_an_alternating_one(monkeypatch):
    host = Host(slow=26)  # 26 passes: more than the warm-up and every FP32 round of a sequential measurement
    monkeypatch.setattr(latency.time, "perf_counter", lambda: host.now)
    x = mx.nd.zeros((1, 3, 4, 4))
    fp32, int8 = host.model("fp32", 0.004), host.model("int8", 0.002)
    sequential = latency.measure(fp32, x, 20, 3).min / latency.measure(int8, x, 20, 3).min
    assert round(sequential, 3) == 7.0  # 14 ms against 2 ms: the slow stretch held every FP32 round

    host = Host(slow=26)  # timed in turn, 10 rounds of each in the stretch: all FP32 rounds first would take 20
    monkeypatch.setattr(latency.time, "perf_counter", lambda: host.now)
    fp32, int8 = host.model("fp32", 0.004), host.model("int8", 0.002)
    timed = latency.alternating([fp32, int8], x, 20, warmup=3)
    assert [len(t.times) for t in timed] == [20, 20]
    assert host.order[6:12] == ["fp32", "int8", "int8", "fp32", "fp32", "int8"]  # after 3 warm-up passes each, in turn
    assert round(timed[0].min / timed[1].min, 3) == 2.0  # the true ratio: the stretch fell on both alike

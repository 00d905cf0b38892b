"""No false alarms: a model built twice from a clean cache is the same model, bit for bit."""

import json

import numpy as np
import pytest

from segcheck.data import loaders
from segcheck.models import pipeline
from segcheck.models.build import logits


def _ranges(entry):
    nodes = json.loads((entry.path / "model-symbol.json").read_text())["nodes"]
    return [(n["attrs"]["min_calib_range"], n["attrs"]["max_calib_range"]) for n in nodes if "max_calib_range" in n.get("attrs", {})]


@pytest.mark.slow
def test_rebuilding_from_a_clean_cache_gives_identical_weights_ranges_and_outputs(segcheck, tmp_path):
    """Node names carry Gluon's per-process counters, so the INT8 files are compared by content, not bytes."""
    mc = segcheck.model_config("fcn_resnet101_voc")
    fresh = mc.with_(run=mc.run.with_(cache_dir=tmp_path / "cache"))
    assert pipeline.fp32_params(fresh).read_bytes() == pipeline.fp32_params(mc).read_bytes()
    again, session = pipeline.int8_model(fresh), pipeline.int8_model(mc)
    assert again.entry.built and _ranges(again.entry) == _ranges(session.entry)
    val = pipeline.open_split(mc, "val")
    for x, _, _ in loaders.batches(val, loaders.first(val, 4), 1):
        np.testing.assert_array_equal(logits(again.block, x).asnumpy(), logits(session.block, x).asnumpy())

"""segcheck's own hooks, where a plugin steps into a gate run instead of patching it (as pytest-benchmark declares its
hookspecs): it may hand over a part of a model case made elsewhere, or replace a built model or a calibration recipe.
Each is called with keyword arguments; the first non-None answer wins."""

import pytest


@pytest.hookspec(firstresult=True)
def pytest_segcheck_reuse(case, part):
    """A part of `case` (cases.model_case.PARTS: 'fp32', 'int8', 'fp32-evaluation', 'localisation', ...) made already in
    this process for a case of the same configuration: return it, and the case does not make it again (a localisation on
    fewer images than the run compares on is made again); or None."""


@pytest.hookspec
def pytest_segcheck_release(case):
    """`case` is about to be released, its last test in this run having run (its parts() are still there): a plugin
    that hands parts over to later runs takes them now."""


@pytest.hookspec(firstresult=True)
def pytest_segcheck_model(case, precision, model):
    """The model `case` just built for `precision` (fp32: the fused block; int8: a models.pipeline.Int8Model): return
    a model to gate instead (an injected fault, say), or None to keep it."""


@pytest.hookspec(firstresult=True)
def pytest_segcheck_calibration_recipe(case, recipe):
    """The calibration recipe (config.recipes.CalibRecipe) `case` is about to calibrate with: return another, or None."""


@pytest.hookspec(firstresult=True)
def pytest_segcheck_peer_network(case, net):
    """The FP32 network (unfused, with its weights) `case` is about to export to ONNX for the peer runtimes: return a
    network to export instead (exported once per graph and weights, kept in the cache under their digest: blocks added
    outside its name scope, or weights drawn anew each run, make another digest and another kept export every run; its
    peer runs are kept under the file's digest, as any export's), or None."""


@pytest.hookspec(firstresult=True)
def pytest_segcheck_peer_calibration(case, batches):
    """The calibration image batches (B x 3 x H x W) about to go to a peer's own quantizer: return others, or None."""

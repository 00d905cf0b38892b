"""Evaluations reused across runs (measure.evaluation_cache): FP32 and INT8 evaluations, the per-layer comparison and
the deploy round trip's pass read back where graphs, weights, images, setting, environment and code are the same (for
FP32, a changed calibration recipe among them), made again where any of them changed, and never trusted when damaged;
the cached read costs a small part of an evaluation (a benchmark, as a ratio)."""

import shutil

import inner
import numpy as np
import pytest
from PIL import Image

from segcheck.cases.model_case import ModelCase
from segcheck.config.recipes import CalibRecipe
from segcheck.data import loaders
from segcheck.measure import evaluation_cache, layers
from segcheck.measure.evaluate import Outputs, evaluate
from segcheck.models import cache, export, pipeline

MODEL = "fcn_resnet101_voc"
TIMES = {}


def _evaluate(fresh, count=8, mc=None, split=None, weights=None):
    """(the FP32 evaluation through the cache, how many times it evaluated), with `fresh`'s model and weights digest."""
    config, block, val, digest = fresh
    mc, split, calls = mc or config, split or val, []
    indices = loaders.first(split, count)

    def evaluated(keep):
        calls.append(1)
        return evaluate(block, split, indices, keep=keep)

    return evaluation_cache.evaluation(mc, "fp32", block, split, indices, evaluated, weights or digest), len(calls)


@pytest.fixture
def fresh(segcheck, tmp_path):
    """fcn_resnet101_voc's configuration on a cache with no FP32 evaluation, its FP32 model, val split and weights digest."""
    case = segcheck.case(MODEL)
    mc = case.config.with_(run=case.config.run.with_(cache_dir=tmp_path / "cache"))
    return mc, case.fp32, case.val, pipeline.fp32_weights(case.config)[1]


def test_a_second_run_reads_the_fp32_evaluation_and_a_changed_recipe_does_not_matter(fresh):
    mc = fresh[0]
    first, evaluated = _evaluate(fresh)
    assert evaluated == 1 and not first.cached
    again, evaluated = _evaluate(fresh, mc=mc.with_(calib=CalibRecipe(num_batches=1, batch_size=4)))
    assert evaluated == 0 and again.cached
    assert (again.matrix.matrix == first.matrix.matrix).all() and again.per_image == first.per_image
    assert again.digest == first.digest and again.subset == first.subset
    assert _evaluate(fresh, mc=mc.with_(run=mc.run.with_(eval_cache=False)))[1] == 1  # --no-eval-cache


def test_changed_weights_images_or_setting_evaluate_again(fresh, tmp_path):
    mc, split = fresh[0], fresh[2]
    assert _evaluate(fresh)[1] == 1
    assert _evaluate(fresh, count=9)[1] == 1  # other images
    assert _evaluate(fresh, weights="another weights file")[1] == 1
    assert _evaluate(fresh)[1] == 0  # the first entry again
    assert _evaluate(fresh, mc=mc.with_(run=mc.run.with_(skip_bad=True)))[1] == 1  # another setting
    replaced = []
    for _ in range(2):  # a model a plugin replaced (weights None): evaluated every time, never cached
        evaluation_cache.evaluation(mc, "fp32", fresh[1], split, loaders.first(split, 8), lambda keep: replaced.append(1) or evaluate(
            fresh[1], split, loaders.first(split, 8), keep=keep), None)
    assert len(replaced) == 2
    copy = tmp_path / "voc"
    shutil.copytree(split.root, copy, symlinks=False)
    moved = loaders.open_split(split.kind, copy, split.split, split.crop_size, mc.run.cache_dir)
    assert _evaluate(fresh, split=moved)[1] == 0  # the same files elsewhere: the same key
    image = copy / "VOC2012" / "JPEGImages" / f"{moved.ids[3]}.jpg"
    with Image.open(image) as img:
        changed = img.copy()
    changed.putpixel((0, 0), (255, 0, 255))
    changed.save(image, quality=90)
    assert _evaluate(fresh, split=moved)[1] == 1  # one image file changed


def test_a_damaged_entry_is_evaluated_again_never_trusted(fresh):
    first, _ = _evaluate(fresh)
    (entry,) = cache.entries(fresh[0].run.cache_dir, "fp32-eval")
    (entry / "evaluation.json").write_text('{"matrix": [[1]]}')
    again, evaluated = _evaluate(fresh)
    assert evaluated == 1 and not again.cached and again.digest == first.digest


@pytest.fixture
def int8(segcheck, fresh):
    """fcn_resnet101_voc's INT8 model, its weights digest, and FP32's outputs on the first 8 images (INT8's reference)."""
    int8_model, split = segcheck.case(MODEL).int8, fresh[2]
    outputs = evaluate(fresh[1], split, loaders.first(split, 8), keep=8).outputs
    return int8_model.block, int8_model.entry.manifest["files"]["model-0000.params"], outputs


def test_an_int8_evaluation_is_read_back_with_its_comparison_and_a_changed_reference_evaluates_again(fresh, int8):
    mc, split = fresh[0], fresh[2]
    block, weights, outputs = int8
    indices, calls = loaders.first(split, 8), []

    def through_cache(reference=outputs, weights=weights):
        def evaluated(keep):
            calls.append(1)
            return evaluate(block, split, indices, keep=keep, reference=reference)

        return evaluation_cache.evaluation(mc, "int8", block, split, indices, evaluated, weights, reference)

    first, again = through_cache(), through_cache()
    assert len(calls) == 1 and not first.cached and again.cached and len(first.agreement) == 8
    assert len(cache.entries(mc.run.cache_dir, "int8-eval")) == 1
    assert (again.agreement, again.output_sqnr, again.per_image, again.digest) == (
        first.agreement, first.output_sqnr, first.per_image, first.digest)
    through_cache(reference=Outputs(outputs.classes, outputs.logits + np.float16(0.5)))  # FP32's outputs moved
    assert len(calls) == 2
    for _ in range(2):  # a model a plugin put in place (weights None): evaluated every time
        through_cache(weights=None)
    assert len(calls) == 4


def test_a_per_layer_comparison_is_read_back_equal_and_a_changed_or_damaged_one_is_made_again(fresh, int8):
    mc, fp32, split, digest = fresh
    block, weights, _ = int8
    indices, calls = loaders.first(split, 2), []

    def through_cache(int8_weights=weights, config=mc):
        def compared():
            calls.append(1)
            return layers.localise(fp32, block, [x for x, _, _ in loaders.batches(split, indices, 1)])

        return evaluation_cache.localisation(config, [(fp32, digest), (block, int8_weights)], split, indices, compared)

    first, again = through_cache(), through_cache()
    assert len(calls) == 1 and again == first and len(first.layers) > 100 and first.images == 2
    (entry,) = cache.entries(mc.run.cache_dir, "layers")
    (entry / "localisation.json").write_text('{"layers": [["conv0", 1.0]]}')
    assert through_cache() == first and len(calls) == 2
    through_cache(int8_weights="another INT8 weights file")
    through_cache(config=mc.with_(run=mc.run.with_(eval_cache=False)))  # --no-eval-cache
    assert len(calls) == 4


def test_a_deploy_round_trip_is_kept_only_when_it_passes(segcheck, monkeypatch, tmp_path):
    """The round trip of this session's INT8 model in a cache holding none: where the re-imported export predicts
    otherwise (a weight changed on import), it fails in its child and keeps nothing; a pass is kept and read back, the
    round trip not run again (True)."""
    session = segcheck.case(MODEL)
    config = session.config.with_(run=session.config.run.with_(cache_dir=tmp_path / "cache", eval_cache=True))
    original = export.load

    def changed_on_import(prefix):
        block = original(prefix)
        weight = next(p for name, p in sorted(block.collect_params().items()) if name.endswith("weight"))
        weight.set_data(weight.data() * 1.5)
        return block

    handing = inner.Hooks(pytest_segcheck_reuse=lambda case, part: session.make(part) if part in ("int8", "val") else None)

    def round_trip(folder):
        return ModelCase(config, segcheck.unavailable, handing).deploy_round_trip(tmp_path / folder)

    with monkeypatch.context() as patched:
        patched.setattr(export, "load", changed_on_import)
        with pytest.raises(AssertionError, match="Arrays are not equal"):
            round_trip("broken")
    assert not cache.entries(config.run.cache_dir, "deploy")
    assert round_trip("first") is False and round_trip("again") is True
    assert len(cache.entries(config.run.cache_dir, "deploy")) == 1 and not (tmp_path / "again").exists()


@pytest.mark.parametrize("read", ["evaluated", "cached"])
def test_fp32_evaluation_time(read, fresh, benchmark):
    mc = fresh[0]
    if read == "cached":
        _evaluate(fresh, count=16)
    else:
        mc = mc.with_(run=mc.run.with_(eval_cache=False))
    result, _ = benchmark.pedantic(_evaluate, args=(fresh, 16, mc), rounds=3, warmup_rounds=0)
    assert result.cached == (read == "cached")
    if benchmark.stats is not None:
        TIMES[read] = benchmark.stats.stats.min


def test_a_cached_fp32_evaluation_takes_at_most_a_tenth_of_an_evaluation():
    """Both measured above in this process: the ratio of their minimum rounds."""
    if set(TIMES) != {"evaluated", "cached"}:
        pytest.skip("needs both benchmarks of test_fp32_evaluation_time in this process (pytest-benchmark off under xdist)")
    ratio = TIMES["cached"] / TIMES["evaluated"]
    assert ratio <= 0.1, f"reading the cached FP32 evaluation took {ratio:.0%} of evaluating ({TIMES})"

"""FP32 evaluations reused across runs (measure.fp32_cache): read back where graph, weights, images, setting and
environment are the same (a changed calibration recipe among them), evaluated again where any of them changed, and
never trusted when damaged; the cached read costs a small part of an evaluation (a benchmark, as a ratio)."""

import shutil

import pytest
from PIL import Image

from segcheck.config.recipes import CalibRecipe
from segcheck.data import loaders
from segcheck.measure import fp32_cache
from segcheck.measure.evaluate import evaluate
from segcheck.models import pipeline

MODEL = "fcn_resnet101_voc"
TIMES = {}


def _evaluate(fresh, count=8, mc=None, split=None, weights=None):
    """(the FP32 evaluation through the cache, how many times it evaluated), with `fresh`'s model and weights digest."""
    config, block, val, digest = fresh
    mc, split, calls = mc or config, split or val, []
    indices = loaders.first(split, count)

    def evaluated():
        calls.append(1)
        return evaluate(block, split, indices)

    return fp32_cache.evaluation(mc, block, split, indices, evaluated, weights or digest), len(calls)


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
    assert _evaluate(fresh, mc=mc.with_(run=mc.run.with_(fp32_cache=False)))[1] == 1  # --no-fp32-cache


def test_changed_weights_images_or_setting_evaluate_again(fresh, tmp_path):
    mc, split = fresh[0], fresh[2]
    assert _evaluate(fresh)[1] == 1
    assert _evaluate(fresh, count=9)[1] == 1  # other images
    assert _evaluate(fresh, weights="another weights file")[1] == 1
    assert _evaluate(fresh)[1] == 0  # the first entry again
    assert _evaluate(fresh, mc=mc.with_(run=mc.run.with_(skip_bad=True)))[1] == 1  # another setting
    replaced = []
    for _ in range(2):  # a model a plugin replaced (weights None): evaluated every time, never cached
        fp32_cache.evaluation(mc, fresh[1], split, loaders.first(split, 8), lambda: replaced.append(1) or evaluate(
            fresh[1], split, loaders.first(split, 8)), None)
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
    (entry,) = (fresh[0].run.cache_dir / "models").glob("fp32-eval-*")
    (entry / "evaluation.json").write_text('{"matrix": [[1]]}')
    again, evaluated = _evaluate(fresh)
    assert evaluated == 1 and not again.cached and again.digest == first.digest


@pytest.mark.parametrize("read", ["evaluated", "cached"])
def test_fp32_evaluation_time(read, fresh, benchmark):
    mc = fresh[0]
    if read == "cached":
        _evaluate(fresh, count=16)
    else:
        mc = mc.with_(run=mc.run.with_(fp32_cache=False))
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

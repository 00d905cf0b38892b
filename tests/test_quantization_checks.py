"""The finer INT8 checks on their own: calibration tables and their invariants, ranking layers by their own
fall, the digest verdict, the per-class gate, the golden store, and the bootstrap interval (with its coverage)."""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcheck.gate import golden, verdicts
from segcheck.gate.baselines import BaselineError, Reference, Tolerances
from segcheck.gate.checks import Check
from segcheck.measure import calibration, stats
from segcheck.measure.metrics import ConfusionMatrix

TOL = Tolerances(0.5, 1.0, 1.0, 2.0)


def _conv(name, inner, lo, hi, inputs=()):
    return {"op": "_sg_mkldnn_conv", "name": name, "inputs": [[i, 0, 0] for i in inputs],
            "attrs": {"quantized": "true", "min_calib_range": str(lo), "max_calib_range": str(hi)},
            "subgraphs": [{"nodes": [{"op": "Convolution", "name": inner}]}]}


def _graph(*nodes) -> str:
    return json.dumps({"nodes": list(nodes)})


def test_the_table_names_layers_stably_and_finds_what_moved():
    one = _graph({"op": "_contrib_quantize_v2", "name": "data_quantize", "inputs": [], "attrs": {
        "min_calib_range": "-2", "max_calib_range": "2.5", "out_type": "auto"}},
                 _conv("quantized_sg_mkldnn_conv_bn_act_0", "fcn5_resnetv1s_conv0_fwd", 0, 13.0, [0]))
    other_run = one.replace("fcn5_", "fcn12_")
    table = calibration.table(one)
    assert table == calibration.table(other_run) == {
        "data_quantize": {"range": [-2.0, 2.5], "out_type": "auto"}, "resnetv1s_conv0_fwd": {"range": [0.0, 13.0]}}
    moved = calibration.table(one.replace('"13.0"', '"0.65"').replace('"auto"', '"int8"'))
    changes = calibration.moved(table, moved, 1e-4)
    assert [name for name, _, _ in changes] == ["data_quantize", "resnetv1s_conv0_fwd"]
    assert calibration.moved(table, calibration.table(one.replace('"13.0"', '"13.0001"')), 1e-4) == []
    # largest change first, a ratio either way: conv0 shrunk 10x outranks data grown 8x (more by difference or relative),
    # which outranks conv1 grown 1.1x; a layer another MXNet's graph dropped is reported, not ranked
    two = _graph(json.loads(one)["nodes"][0], _conv("quantized_sg_a", "fcn5_resnetv1s_conv0_fwd", 0, 13.0, [0]),
                 _conv("quantized_sg_b", "fcn5_resnetv1s_conv1_fwd", 0, 1.0, [1]), _conv("quantized_sg_c", "fcn5_extra_fwd", 0, 1.0, [2]))
    scaled = {**calibration.table(two), "data_quantize": {"range": [-2.0, 20.0], "out_type": "auto"},
              "resnetv1s_conv0_fwd": {"range": [0.0, 1.3]}, "resnetv1s_conv1_fwd": {"range": [0.0, 1.1]}}
    assert [name for name, _, _ in calibration.moved(calibration.table(two), scaled, 1e-4)] == [
        "resnetv1s_conv0_fwd", "data_quantize", "resnetv1s_conv1_fwd"]
    dropped = {k: v for k, v in scaled.items() if k != "extra_fwd"}
    judged, structural = verdicts.range_changes(calibration.table(two), dropped, 1e-4, Reference("golden", {"mxnet": "1.8"}, "version"))
    assert [n for n, _, _ in judged] == ["resnetv1s_conv0_fwd", "data_quantize", "resnetv1s_conv1_fwd"]
    assert [n for n, _, _ in structural] == ["extra_fwd"]
    assert [n for n, _, _ in verdicts.range_changes(calibration.table(two), dropped, 1e-4, None)[0]][0] == "extra_fwd"
    verdict = verdicts.calibration_table("m", moved, table, [], 1e-4)
    assert verdict.status == "CHANGED" and "resnetv1s_conv0_fwd: [0, 13] -> [0, 0.65]" in verdict.message
    assert "data_quantize: [-2, 2.5] out_type=auto -> [-2, 2.5] out_type=int8" in verdict.message
    assert "the INT8 figures were not judged" in verdict.message and "pytest --update-baselines" in verdict.message
    harmed = verdicts.calibration_table("m", moved, table, [], 1e-4, judged=Check("REGRESSED", "agreement with FP32 fell"))
    assert harmed.status == "REGRESSED" and harmed.failed and "the INT8 figures regressed: agreement with FP32 fell" in harmed.message
    benign = verdicts.calibration_table("m", moved, table, [], 1e-4, judged=Check("PASS", "within noise"))
    assert benign.status == "CHANGED" and "the INT8 figures are PASS, so it is not shown harmful" in benign.message
    nothing = verdicts.calibration_table("m", table, None, [], 1e-4)
    assert nothing.status == "SKIP" and nothing.compared == "none" and "no golden table" in nothing.message
    vnni = Reference("golden records", {"mxnet": "1.9.1", "onednn": "2.4.4", "isa": "avx512_vnni"}, "isa")
    drifted = calibration.table(one.replace('"13.0"', '"13.1"'))
    assert verdicts.calibration_table("m", drifted, table, [], 1e-4, vnni).status == "CHANGED"
    across = verdicts.calibration_table("m", drifted, table, [], 0.02, vnni)
    assert across.status == "PASS" and across.compared == "isa" and "isa avx512_vnni (tolerance tier: isa)" in across.message
    grown = {**drifted, "head_dropout_output_quantize": {"range": [0.0, 14.5]}}
    assert verdicts.calibration_table("m", grown, table, [], 0.02, vnni).status == "CHANGED"  # one MXNet: a new node is news
    version = Reference("golden records", {"mxnet": "1.9.1", "onednn": "2.4.4", "isa": "avx512_vnni"}, "version")
    other_mxnet = verdicts.calibration_table("m", grown, table, [], 0.02, version)
    assert other_mxnet.status == "PASS" and "all 2 calibrated ranges match" in other_mxnet.message
    assert "another MXNet builds another graph: head_dropout_output_quantize appeared" in other_mxnet.message
    assert verdicts.calibration_table("m", {**grown, "data_quantize": {"range": [-3.0, 2.5]}}, table, [], 0.02, version).status == "CHANGED"
    disjoint = verdicts.calibration_table("m", {"other_fwd": {"range": [0.0, 1.0]}}, {"net_fwd": {"range": [0.0, 1.0]}},
                                          [], 0.02, version)  # another MXNet whose graph shares no node: nothing compared
    assert disjoint.status == "SKIP" and "none was compared" in disjoint.message and "other_fwd appeared" in disjoint.message
    recipe = Reference("golden records", {"mxnet": "1.9.1"}, "exact", "naive/auto/2x16/train")
    assert verdicts.calibration_table("m", drifted, table, [], 0.02, recipe).compared == "recipe"


def test_invariants_missing_ranges_and_unaligned_concat_inputs():
    a = _conv("quantized_sg_a", "net0_a_fwd", 0, 4.0)
    b = _conv("quantized_sg_b", "net0_b_fwd", 0, 5.0)
    bare = dict(_conv("quantized_sg_c", "net0_c_fwd", 0, 1.0), attrs={"quantized": "true"})
    concat = {"op": "_contrib_quantized_concat", "name": "net0_concat0", "inputs": [[0, 0, 0], [1, 0, 0]], "attrs": {}}
    problems = calibration.invariants(_graph(a, b, concat, bare))
    assert problems == ["the inputs of concat concat0 are not aligned: a_fwd [0, 4.0], b_fwd [0, 5.0]",
                        "c_fwd is quantized without a calibrated range"]
    assert verdicts.calibration_table("m", {}, None, problems, 1e-4).status == "FAIL"
    aligned = _graph(a, dict(b, attrs=dict(b["attrs"], max_calib_range="4.0")), concat)
    assert calibration.invariants(aligned) == []


def test_the_layer_where_error_starts_ranks_first_and_harm_is_judged_on_its_own_change():
    """b breaks (a 13 dB fall of its own on every image); c and d inherit its error and lose a little more: b is named
    first and REGRESSED; a layer whose own change stays short of harm is CHANGED; within its band, PASS."""
    up = {"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}

    def curve(**db):  # layer -> (its SQNR on two images, the FP32 energy of each)
        return {n: ([v, v], [1.0, 3.0]) for n, v in db.items()}

    golden_curve = curve(a=30.0, b=25.0, c=22.0, d=20.0)
    now = curve(a=30.0, b=12.0, c=8.5, d=7.9)
    pooled = {n: v[0][0] for n, v in now.items()}
    tol = Tolerances(0.5, 1.0, 1.0, 2.0, sqnr_drop_db=1.0, sqnr_floor_db=5.0)
    verdict, named = verdicts.layer_error("m", pooled, now, golden_curve, up, tol)
    assert verdict.status == "REGRESSED" and verdict.failed
    assert named == ["b", "d"]  # c's own change (-0.5 dB) is within its band; d rose by itself (+1.4 dB)
    assert verdict.message.split("by their own change: ")[1].startswith("layer b 25.00 -> 12.00 dB (-13.00")
    small = curve(a=30.0, b=22.0, c=19.0, d=17.0)
    changed, _ = verdicts.layer_error("m", {n: v[0][0] for n, v in small.items()}, small, golden_curve, up, tol)
    assert changed.status == "CHANGED" and not changed.failed and "none shown harmful" in changed.message
    banded, _ = verdicts.layer_error("m", {n: v[0][0] for n, v in small.items()}, small, golden_curve, up, tol, {"b": 4.0})
    assert banded.status == "PASS"
    unquantized, named = verdicts.layer_error("m", {}, {}, golden_curve, up, tol)  # every convolution kept in FP32
    assert unquantized.status == "SKIP" and "no quantized layer" in unquantized.message and named == []
    floored, named = verdicts.layer_error("m", {**pooled, "d": 4.0}, now, None, up, tol)
    assert floored.status == "FAIL" and "below the 5 dB floor, the error starting at d (no input below the floor): d: 4.0 dB" in floored.message
    assert named == ["d"]
    # b clips and falls 13 dB by itself but stays above a 10 dB floor, while c and d inherit it below: the floor fails
    # from c, and the layers named are still led by b, whose own fall the golden curve shows
    clipped, named = verdicts.layer_error("m", pooled, now, golden_curve, up, dataclasses.replace(tol, sqnr_floor_db=10.0))
    assert clipped.status == "FAIL" and named[0] == "b", named
    assert "the error starting at c (no input below the floor)" in clipped.message
    assert "by its own change against the golden curve, first layer b 25.00 -> 12.00 dB (-13.00" in clipped.message
    alone, _ = verdicts.layer_error("m", pooled, now, None, up, tol)
    assert alone.status == "SKIP" and alone.compared == "none" and "no golden per-layer curve" in alone.message
    unpooled, _ = verdicts.layer_error("m", pooled, now, {n: (v[0], ()) for n, v in golden_curve.items()}, up, tol)
    assert unpooled.status == "SKIP" and "holds no per-image energies" in unpooled.message
    version = Reference("golden records", {"mxnet": "1.9.1"}, "version")
    same, _ = verdicts.layer_error("m", pooled, golden_curve, golden_curve, up, tol, None, version)
    assert same.status == "PASS" and same.compared == "version" and "(tolerance tier: version)" in same.message


def test_a_floor_failure_names_the_layer_where_the_error_starts_not_the_lowest():
    """b breaks below the floor and c, d after it fall further: b, the first floored layer fed only by layers above the
    floor, is named first, then the rest lowest first; an error that starts again after a clean layer is a start too."""
    up = {"a": [], "b": ["a"], "c": ["b"], "d": ["c"], "e": ["d"], "f": ["e"], "g": ["a", "d"]}
    tol = Tolerances(0.5, 1.0, 1.0, 2.0, sqnr_drop_db=1.0, sqnr_floor_db=5.0)
    sqnr = {"a": 30.0, "b": 4.0, "c": 2.0, "d": 1.0, "e": 12.0, "f": 3.0, "g": 4.5}  # g: one input clean, one floored
    verdict, named = verdicts.layer_error("m", sqnr, {}, None, up, tol)
    assert verdict.status == "FAIL" and named == ["b", "f", "d", "c", "g"], named
    assert ("5 layers are below the 5 dB floor, the error starting at b, f (no input below the floor): b: 4.0 dB; "
            "f: 3.0 dB; d: 1.0 dB") in verdict.message


def _digest(images, pixels):
    return {"sha256": "".join(images), "images": images, "pixels": pixels, "ids": ["i0", "i1", "i2"], "classes": ("bg", "cat", "dog")}


def test_a_changed_digest_says_which_of_the_three_it_is():
    """In this environment under this INT8 key a change is CHANGED, REGRESSED where the figures regressed; across
    environments or recipes it lies within that tier's noise: PASS, saying so."""
    old = _digest(["a", "b", "c"], [100, 50, 10])
    assert verdicts.digest("m", old, old).status == "PASS"
    new = _digest(["a", "x", "c"], [96, 54, 10])
    changed = verdicts.digest("m", new, old)
    assert changed.status == "CHANGED" and not changed.failed
    assert "changed in 1 of 3 images (i1), at least 4 pixels; predicted pixels by class: bg -4, cat +4" in changed.message
    here = Reference("golden records", {"isa": "avx512_vnni"}, "exact")
    assert verdicts.digest("m", new, old, here, Check("REGRESSED", "mIoU fell")).status == "REGRESSED"
    other_isa = verdicts.digest("m", new, old, Reference("golden records", {"isa": "avx512_vnni"}, "isa"))
    assert other_isa.status == "PASS" and other_isa.compared == "isa" and "within the noise of tier isa" in other_isa.message
    missing = verdicts.digest("m", new, None)
    assert missing.status == "SKIP" and missing.compared == "none"


def test_one_class_falling_fails_even_when_the_mean_holds():
    def scores(iou):
        return ConfusionMatrix(3).compute("present").__class__("present", 0.9, float(np.mean(iou)), 0.9, tuple(iou))

    fp32, int8 = scores([0.9, 0.8, 0.7]), scores([0.9, 0.70, 0.79])
    verdict = verdicts.class_drop("m", fp32, int8, [5000, 5000, 400], ("bg", "cat", "dog"), TOL)
    assert verdict.status == "FAIL" and "cat 80.0 -> 70.0 (-10.0)" in verdict.message
    assert "left out (fewer than 1000 labelled pixels): dog" in verdict.message
    assert verdicts.class_drop("m", fp32, fp32, [5000, 5000, 400], ("bg", "cat", "dog"), TOL).status == "PASS"
    none_judged = verdicts.class_drop("m", fp32, scores([0.0, 0.0, 0.0]), [900, 900, 400], ("bg", "cat", "dog"), TOL)
    assert none_judged.status == "SKIP" and "no class's drop was compared" in none_judged.message  # not a PASS
    assert "left out (fewer than 1000 labelled pixels): bg, cat, dog" in none_judged.message


def test_golden_records_are_kept_per_environment_setting_and_int8_key(tmp_path):
    table = tmp_path / "baselines.json"
    record = golden.Golden(ranges={"a": {"range": [0.0, 1.0]}}, sqnr_db={"a": 30.0}, agreement=[99.5, 98.0])
    env, setting, recipe = {"isa": "avx2"}, {"crop_size": 64}, "naive/auto/2x16/train"
    assert golden.lookup(table, "synthetic", "m", env, setting, recipe) is None
    assert golden.record(table, "synthetic", env, [(setting, recipe, {"m": record})]) == tmp_path / "baselines.golden.json"
    found = golden.lookup(table, "synthetic", "m", env, setting, recipe)
    assert found == record and found.reference.difference == "exact" and found.reference.recipe is None
    across = golden.lookup(table, "synthetic", "m", {"isa": "avx512_vnni"}, setting, recipe)
    assert across == record and across.reference == Reference("golden records", env, "isa")
    other = golden.lookup(table, "synthetic", "m", env, setting, "naive/auto/1x16/train")
    assert other == record and other.reference.recipe == recipe and other.reference.compared == "recipe"
    assert golden.lookup(table, "synthetic", "m", env, setting).reference.compared == "exact"  # FP32: any recipe
    assert golden.lookup(table, "synthetic", "m", env, {"crop_size": 480}, recipe) is None
    (tmp_path / "baselines.golden.json").write_text('{"schema": 2, "tiers": {"synthetic": [{"environment": {}}]}}')
    with pytest.raises(BaselineError, match=r"baselines.golden.json: key 'tiers.synthetic\[0\].setting': missing"):
        golden.lookup(table, "synthetic", "m", env, setting)


def _images(rng, n, p):
    """Per-image stats (tp, labelled, predicted) of a 2-class problem: each image's pixels right with probability p."""
    labelled = rng.integers(200, 400, size=(n, 2)).astype(float)
    tp = rng.binomial(labelled.astype(int), p).astype(float)
    wrong = labelled - tp
    predicted = tp + wrong[:, ::-1]  # a wrong pixel is predicted as the other class
    return np.stack([tp, labelled, predicted], axis=1)


def test_identical_precisions_have_a_zero_interval_and_the_interval_holds_the_point():
    rng = np.random.default_rng(0)
    fp32 = _images(rng, 30, 0.9)
    same = stats.paired_drop(fp32, fp32, "present", resamples=200)
    assert same.pixacc == (0.0, 0.0, 0.0) and same.miou == (0.0, 0.0, 0.0)
    worse = stats.paired_drop(fp32, _images(rng, 30, 0.85), "present", resamples=200)
    assert worse.pixacc[1] <= worse.pixacc[0] <= worse.pixacc[2] and worse.pixacc[1] > 0


@settings(max_examples=8, deadline=None, derandomize=True)
@given(p=st.floats(0.6, 0.95), gap=st.one_of(st.just(0.0), st.floats(0.005, 0.1)), n=st.integers(20, 60),
       seed=st.integers(0, 2**16))
def test_the_paired_bootstrap_covers_the_true_drop(p, gap, n, seed):
    """Each pixel is right in FP32 with probability p, and stays right in INT8 with probability (p - gap) / p, so
    the true pixAcc drop is 100 x gap points. Over 120 simulated subsets of n images the 95 % interval holds it
    at least 85 % of the time. The gap is 0 or at least half a point: below that a subset of 20 images holds a
    handful of changed pixels or none, and no interval over those images can hold the drop. Derandomized: the
    same examples every run, so a coverage near the threshold cannot turn a run red by chance."""
    rng = np.random.default_rng(seed)
    covered = 0
    for _ in range(120):
        labelled = rng.integers(200, 400, size=(n, 2))
        fp32_right = rng.binomial(labelled, p)
        int8_right = rng.binomial(fp32_right, (p - gap) / p)

        def stack(right):
            wrong = labelled - right
            return np.stack([right, labelled, right + wrong[:, ::-1]], axis=1).astype(float)

        interval = stats.paired_drop(stack(fp32_right), stack(int8_right), "present", resamples=300,
                                     seed=int(rng.integers(1 << 30)))
        covered += interval.pixacc[1] - 1e-9 <= 100 * gap <= interval.pixacc[2] + 1e-9
    assert covered / 120 >= 0.85


def test_models_with_no_quantized_layer_in_common_compare_no_layer():
    """Every convolution left in FP32 (here: no convolution at all): the per-layer comparison holds no layer, and the
    flip rate of the outputs is still measured."""
    import mxnet as mx

    from segcheck.measure import layers

    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Activation("relu"))
    net.hybridize(static_alloc=True, static_shape=True)
    images = [mx.nd.array(np.random.default_rng(seed).standard_normal((1, 3, 8, 8)), dtype="float32") for seed in (0, 1)]
    net(images[0])
    found = layers.localise(net, net, images)
    assert found.layers == () and found.upstream == {} and found.images == 2 and found.flip_all == 0.0

"""Shards: --shard K/N splits the evaluated images, calibration stays the same, and `segcheck merge` adds the
shards up exactly and gates them as one run; shards that do not fit together are refused, naming why."""

import io
import json
from pathlib import Path

import inner
import pytest
from inner import Reuse

from segcheck.cli import commands
from segcheck.data import loaders
from segcheck.errors import SegcheckError
from segcheck.gate.checks import Check
from segcheck.models.cache import entries
from segcheck.plugin.hooks import SUITE
from segcheck.results import merge, report
from segcheck.results.records import Figures, ModelResult, RunResults

MODEL = "fcn_resnet101_voc"
GATED = [f"{SUITE / module}::{test}[{MODEL}{params}]" for module, test, params in (
    ("test_accuracy.py", "test_accuracy", "-fp32"), ("test_accuracy.py", "test_accuracy", "-int8"),
    ("test_accuracy.py", "test_int8_drop", ""), ("test_accuracy.py", "test_int8_class_drop", ""),
    ("test_quantization.py", "test_outputs_digest", "-fp32"), ("test_quantization.py", "test_outputs_digest", "-int8"))]
WHOLE_RUN = ("fp32-accuracy", "int8-accuracy", "int8-drop", "int8-class-drop", "fp32-digest", "int8-digest")  # gated on the merge
RANGES = f"{SUITE / 'test_quantization.py'}::test_int8_calibration_table[{MODEL}]"


def _run(pytester, segcheck, name, *args) -> Path:
    """A run of GATED (and the calibration table). A shard runs on a cache with no INT8 model, so it calibrates for
    itself, and takes this session's FP32 model. The evaluations of its own images it makes once per key (unless this
    session trusts no evaluation cache): they are kept in this session's cache, where the next run's shard reads them
    (its INT8 ones only where its calibration gives the same weights). The whole run takes this session's INT8 model
    and both evaluations: the shards' calibrations are compared with the session's own."""
    target = pytester.path / f"{name}.json"
    sharded, kept = "--shard" in " ".join(args), segcheck.run.eval_cache
    cache = inner.fresh_int8_cache(segcheck.run.cache_dir, pytester.path / f"{name}-cache", int8_evaluations=kept) if (
        sharded) else segcheck.run.cache_dir
    parts = ("fp32",) if sharded else ("fp32-evaluation", "int8", "int8-evaluation")
    reuse = Reuse(segcheck.case(MODEL), parts=parts)
    done = inner.run(pytester, *GATED, RANGES, *args, cache=cache, results=target, plugins=[reuse])
    assert target.is_file(), done.result.stdout.str()[-3000:]
    assert {part for _, part in reuse.handed} == set(parts), f"{name} took {reuse.handed} of {parts}"
    assert not sharded or entries(cache, "int8"), f"{name} calibrated nothing of its own"
    if sharded and kept:
        inner.keep_evaluations(cache, segcheck.run.cache_dir)
    return target


def test_two_shards_merged_equal_one_unsharded_run(pytester, segcheck):
    """Each shard calibrates in a cache of its own: its calibration table is this session's, and the merged shards
    give the unsharded run's confusion matrices image by image."""
    whole = report.load(_run(pytester, segcheck, "whole")).models[MODEL]
    shards = [_run(pytester, segcheck, f"shard{k}", f"--shard={k}/2") for k in (1, 2)]
    parts = [report.load(p).models[MODEL] for p in shards]
    assert [len(m.shard["ids"]) for m in parts] == [24, 24] and all(m.int8_source == whole.int8_source for m in parts)
    assert whole.ranges and all(m.ranges == whole.ranges for m in parts), "the shards calibrated differently"
    assert all(m.checks[name].status == "SKIP" and ("gated on the merged shards" in m.checks[name].message or
                                                   "segcheck merge judges the whole run's" in m.checks[name].message)
               for m in parts for name in WHOLE_RUN)
    assert all(m.checks["int8-ranges"].status == "PASS" for m in parts + [whole])
    out = io.StringIO()
    assert merge.main([str(p) for p in shards] + ["--json", str(pytester.path / "merged.json")], out) == 0
    merged = report.load(pytester.path / "merged.json").models[MODEL]
    for precision in ("fp32", "int8"):
        a, b = merged.figures(precision), whole.figures(precision)
        assert a.matrix == b.matrix and a.per_image == b.per_image  # bit-identical, image by image
        assert (a.pixacc, a.miou, a.iou) == (b.pixacc, b.miou, b.iou)
    assert {c: merged.checks[c].status for c in WHOLE_RUN} == {c: whole.checks[c].status for c in WHOLE_RUN} == {
        c: "PASS" for c in WHOLE_RUN}  # the class drop and the digests as the unsharded run judges them
    assert merged.drop_interval == whole.drop_interval
    assert merged.subset == whole.subset and f"{MODEL} | " in out.getvalue()


def _shard(k, n, ids, whole, **changes) -> RunResults:
    """A fabricated shard result: a 2-class model whose every image has 10 correct pixels of class 1."""
    tolerances = {"pixacc_points": 0.5, "miou_points": 1.0, "int8_drop_pixacc_points": 1.0, "int8_drop_miou_points": 2.0}
    row = {"fp32_latency_ms": 1.0, "s8_latency_ms": 1.0, "fp32_pixacc": 100.0, "fp32_miou": 100.0, "s8_pixacc": 100.0, "s8_miou": 100.0}
    m = ModelResult(MODEL, classes=["background", "thing"], setting={"crop_size": 64}, int8_source="calibrated on train: 2 images",
                    tolerances=tolerances, baseline={"fp32": row, "int8": row},
                    accuracy_tolerances={"fp32": tolerances, "int8": tolerances},
                    shard={"index": k, "count": n, "split": "val", "ids": list(ids),
                           "of": {"count": len(whole), "digest": loaders.Subset("val", tuple(whole)).digest}})
    for precision in ("fp32", "int8"):
        setattr(m, precision, Figures(matrix=[[0, 0], [0, 10 * len(ids)]], per_image=[[[1, 1, 10]]] * len(ids),
                                      latency_ms=2.0 if precision == "fp32" else 1.0))
    m.checks["int8-graph"] = Check("PASS")
    run = RunResults(tier="real", convention="present", environment={"isa": "avx2"}, models={MODEL: m})
    for key, value in changes.items():
        target = run if key in ("environment", "tier") else m
        setattr(target, key, value)
    return run


IDS = ["a", "b", "c", "d", "e"]


def _files(tmp_path, runs) -> list:
    paths = []
    for i, run in enumerate(runs):
        paths.append(report.save(run, tmp_path / f"s{i}.json"))
    return paths


def test_fabricated_shards_add_up_and_are_gated(tmp_path):
    runs = [_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS)]
    merged = merge.merge(_files(tmp_path, runs)).models[MODEL]
    assert merged.fp32.matrix == [[0, 0], [0, 50]] and len(merged.int8.per_image) == 5
    assert merged.checks["fp32-accuracy"].status == "PASS" and merged.checks["speedup"].status == "SKIP"
    failing = [_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS)]
    failing[1].models[MODEL].int8.matrix = [[0, 0], [30, 0]]  # shard 2's INT8 misses every pixel
    merged = merge.merge(_files(tmp_path, failing)).models[MODEL]
    assert merged.checks["int8-drop"].status == "FAIL" and merged.status() == "REGRESSED int8-accuracy"
    class_drop = merged.checks["int8-class-drop"]  # judged on the merged matrices: "thing" is too small, so none is judged
    assert class_drop.status == "SKIP" and "no class's drop was compared" in class_drop.message
    assert "left out (fewer than 1000 labelled pixels): thing" in class_drop.message
    assert commands.main(["merge", *map(str, _files(tmp_path, failing))]) == 1
    unevaluated = [_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS)]
    unevaluated[1].models[MODEL].int8 = Figures()  # shard 2's INT8 evaluation did not run: not merged as if none did
    with pytest.raises(SegcheckError, match=r"s1.json: no int8 confusion matrix, which .*s0.json holds"):
        merge.merge(_files(tmp_path, unevaluated))
    unevaluated[1].models[MODEL].checks["int8-accuracy"] = Check("ERROR", "int8 evaluation: the backend died")
    crashed = merge.merge(_files(tmp_path, unevaluated)).models[MODEL]  # a shard that failed merges, failing
    assert crashed.checks["int8-accuracy"].status == "ERROR" and crashed.int8.matrix is None
    outside = [_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS)]
    outside[1].models[MODEL].shard["index"] = 3
    with pytest.raises(SegcheckError, match=r"s1.json: fcn_resnet101_voc's key 'shard.index' is 3 of 2, not a shard K of N"):
        merge.merge(_files(tmp_path, outside))
    shards = _files(tmp_path, failing)
    shard, kept = shards[0], shards[0].read_text()  # the merged results written over a shard: refused before any write
    with pytest.raises(SegcheckError, match=f"--json {shard} is the input {shard}, which it would overwrite"):
        merge.main([*map(str, shards), "--json", str(shard)], io.StringIO())
    assert shard.read_text() == kept


def test_merge_judges_the_speedup_on_the_median_shards_pair_timed_in_turn(tmp_path):
    """Each shard's FP32 and INT8 timed in turn stay together: the median shard's pair is judged (its benchmarks
    would give 2.0x); where a shard did not time them in turn, the benchmarks' minima are, and the message says so."""
    pairs = [{"fp32_ms": 30.0, "int8_ms": 20.0, "rounds": 20}, {"fp32_ms": 40.0, "int8_ms": 10.0, "rounds": 20},
             {"fp32_ms": 20.0, "int8_ms": 20.0, "rounds": 20}]
    runs = [_shard(k + 1, 3, IDS[2 * k:2 * k + 2], IDS, min_speedup=1.4, speedup_paired=p) for k, p in enumerate(pairs)]
    merged = merge.merge(_files(tmp_path, runs)).models[MODEL]
    assert merged.speedup_paired == pairs[0] and merged.speedup() == 1.5
    assert merged.checks["speedup"].status == "PASS" and "speed-up 1.50x" in merged.checks["speedup"].message
    runs[2].models[MODEL].speedup_paired = {}
    merged = merge.merge(_files(tmp_path, runs)).models[MODEL]
    assert merged.checks["speedup"].status == "PASS" and "speed-up 2.00x" in merged.checks["speedup"].message
    assert "2 of 3 shards timed FP32 and INT8 in turn" in merged.checks["speedup"].message


def test_merge_judges_the_digests_and_the_drop_on_its_interval_as_one_run_would(tmp_path):
    """Each shard carries the golden digest of the whole run (and the run's --gate-drop-interval): the merged per-image
    digests are compared with it, the drop judged on the merged images' interval where the shards were asked so."""
    golden = {"sha256": "whole", "images": [f"d{i}" for i in range(5)], "pixels": [0, 50],
              "reference": {"what": "golden records", "environment": {"isa": "avx2"}, "difference": "exact"}}

    def shards(changed=None, interval=False):
        runs = [_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS)]
        for run, block in zip(runs, (range(0, 2), range(2, 5))):
            run.gate_drop_interval = interval
            m = run.models[MODEL]
            m.golden_digest = {"int8": golden}
            m.int8.image_digests = [changed if i == 3 and changed else f"d{i}" for i in block]
            m.int8.predicted = [0, 10 * len(block)]
        return runs

    same = merge.merge(_files(tmp_path, shards())).models[MODEL]
    assert same.checks["int8-digest"].status == "PASS" and "fp32-digest" not in same.checks
    other = merge.merge(_files(tmp_path, shards("x"))).models[MODEL]
    assert other.checks["int8-digest"].status == "CHANGED" and "changed in 1 of 5 images (d)" in other.checks["int8-digest"].message
    on_interval = merge.merge(_files(tmp_path, shards(interval=True)))
    assert on_interval.gate_drop_interval and "(its upper bound is gated)" in on_interval.models[MODEL].checks["int8-drop"].message


@pytest.mark.parametrize("runs, message", [
    ([_shard(1, 3, IDS[:2], IDS), _shard(3, 3, IDS[4:], IDS)], "gap: shard 2/3 of fcn_resnet101_voc missing"),
    ([_shard(1, 2, IDS[:2], IDS), _shard(1, 2, IDS[2:], IDS)], "overlap: .*s1.json and .*s0.json are both shard 1/2"),
    ([_shard(1, 2, IDS[:3], IDS), _shard(2, 2, IDS[2:], IDS)], "overlap: image c of fcn_resnet101_voc is in .*s0.json and .*s1.json"),
    ([_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[3:], IDS)], "gap: the shards of fcn_resnet101_voc hold 4 images"),
    ([_shard(1, 2, IDS[:2], IDS), _shard(2, 3, IDS[2:], IDS)], "is shard 2/3 of 5 images .* these are not one run"),
    ([_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS[:4])], "these are not one run"),
    ([_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS, setting={"crop_size": 96})], "s1.json: fcn_resnet101_voc's setting differs"),
    ([_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS, int8_source="calibrated on val")], "s1.json: fcn_resnet101_voc's int8_source differs"),
    ([_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS, environment={"isa": "avx512_vnni"})], "s1.json: environment .* differs"),
    ([_shard(1, 2, IDS[:2], IDS), _shard(2, 2, IDS[2:], IDS, shard=None)], "s1.json: fcn_resnet101_voc was not run as a shard"),
    ([_shard(1, 1, IDS, IDS)], "merge needs the results of two or more shards"),
], ids=["missing-shard", "same-shard-twice", "overlapping-images", "images-missing", "other-count", "other-image-list",
        "other-setting", "other-calibration", "other-environment", "not-a-shard", "one-file"])
def test_shards_that_do_not_fit_are_refused_naming_why(tmp_path, runs, message):
    with pytest.raises(SegcheckError, match=message):
        merge.merge(_files(tmp_path, runs))


def test_shards_split_in_order_and_cover_every_image_and_an_empty_one_is_refused():
    for total in range(1, 12):
        for n in range(1, min(total, 5) + 1):
            blocks = [loaders.shard(list(range(total)), (k, n)) for k in range(1, n + 1)]
            assert [i for b in blocks for i in b] == list(range(total))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    for total, k, n in ((2, 4, 5), (2, 1, 5)):  # a run of an empty shard would evaluate nothing and pass
        with pytest.raises(SegcheckError, match=rf"^--shard {k}/{n} of {total} images holds none; split them into at most {total} shards$"):
            loaders.shard(list(range(total)), (k, n))
    with pytest.raises(SegcheckError, match=r"^--shard 1/1 of 0 images holds none; there are no images to split$"):
        loaders.shard([], (1, 1))


def test_shard_option_is_checked(capsys):
    with pytest.raises(SystemExit):
        commands.plan(["--shard", "4/3"])
    assert "argument --shard: expected K/N with 1 <= K <= N, got '4/3'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        commands.plan(["--benchmark", "--shard", "1/2"])
    assert "--shard has no effect with --benchmark" in capsys.readouterr().err
    assert json.dumps(commands.plan(["--shard", "2/3"]).model.run.shard) == "[2, 3]"

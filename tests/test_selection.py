"""Selection: `-k` and `-m` pick exactly the model cases a user means, read from a collect-only inner run."""

from pathlib import Path

import pytest

from segcheck.config.networks import seed_networks

ROOT = Path(__file__).resolve().parents[1]
MODEL_TESTS = ["segcheck/plugin/suite/test_accuracy.py", "segcheck/plugin/suite/test_latency.py"]
NAMES = [n.name for n in seed_networks()]


def collected(pytester, *args) -> list[str]:
    """Node ids (file::test[params]) an inner pytest would run with `args` over the model tests."""
    done = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--collect-only", "-q", "--rootdir", str(ROOT),
        *(str(ROOT / p) for p in MODEL_TESTS), *args)
    ids = [line for line in done.stdout.lines if "::" in line]
    assert ids, f"nothing collected for {args}:\n{done.stdout.str()[-2000:]}"
    return ids


def model_of(node_id: str) -> str:
    return next(n for n in NAMES if f"[{n}" in node_id)


def is_fp32(node_id: str) -> bool:
    return node_id.endswith("-fp32]") or "::test_fp32_" in node_id or "_fp32_model_" in node_id


@pytest.mark.parametrize("how", [["-k", "voc"], ["-m", "voc"]], ids=["k", "m"])
def test_voc_selects_every_voc_case_and_nothing_else(pytester, how):
    ids = collected(pytester, *how)
    everything = collected(pytester)
    assert all("voc" in model_of(i) for i in ids), [i for i in ids if "voc" not in model_of(i)]
    assert set(ids) == {i for i in everything if model_of(i).endswith("_voc")}


@pytest.mark.parametrize("how", [["-k", "psp and int8"], ["-m", "psp and int8"]], ids=["k", "m"])
def test_psp_and_int8_selects_only_psp_int8_cases(pytester, how):
    ids = collected(pytester, *how)
    assert {model_of(i) for i in ids} == {"psp_resnet101_voc", "psp_resnet101_coco"}
    assert not any(is_fp32(i) for i in ids), [i for i in ids if is_fp32(i)]
    assert any(i.endswith("test_accuracy[psp_resnet101_voc-int8]") for i in ids)
    assert any(i.endswith("test_deploy_round_trip[psp_resnet101_coco]") for i in ids)


def test_bench_marker_selects_only_latency(pytester):
    ids = collected(pytester, "-m", "bench")
    assert ids and all("suite/test_latency.py::" in i for i in ids), ids
    assert len(ids) == 3 * len(NAMES)  # fp32 and int8 benchmarks and the speed-up gate per model


def test_the_configured_peer_cases_are_one_skipped_placeholder_in_a_shard(pytester):
    """This repository gates the VOC three on both peers; in a shard they are a single `[sharded]` case naming no
    model, so a shard's results hold no peer row for `segcheck merge` to refuse."""
    peers = ["segcheck/plugin/suite/test_peers.py"]
    whole = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", "--rootdir", str(ROOT),
                                         *(str(ROOT / p) for p in peers)).stdout.lines
    assert sum("[fcn_resnet101_voc-onnxruntime" in line for line in whole) == 4  # agreement, int8 drop, fp32/int8 accuracy
    sharded = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", "--rootdir", str(ROOT),
                                           "--shard=1/2", *(str(ROOT / p) for p in peers)).stdout.lines
    ids = [line for line in sharded if "::" in line]
    assert ids and all(line.endswith("[sharded]") or "[sharded-" in line for line in ids), ids

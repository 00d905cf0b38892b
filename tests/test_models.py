"""Model pipeline: building, pretrained weights, quantization recipes, deploy, GluonCV's INT8 symbols, cache."""

import json
import logging
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from segcheck import atomic
from segcheck.cases.model_case import FIRST_RUN, ModelCase
from segcheck.config import threads
from segcheck.config.networks import SEEDED_ARCHITECTURES, Network, seed_networks
from segcheck.config.project import STORE, DataEntry, ModelEntry
from segcheck.config.recipes import MIN_CROP, CalibRecipe
from segcheck.config.run import RunConfig, resolve
from segcheck.errors import MissingResource, RefusedRanges, SegcheckError
from segcheck.measure import guard
from segcheck.models import build, cache, export, pipeline, quantize
from segcheck.models.build import logits
from segcheck.models.graph import NegativeRange, inspect_graph, negative_unsigned_ranges

import faults

SMALL = Network.from_zoo("fcn_resnet50_voc")
SMALL_CROP = 32


def seeded_input(shape: tuple, low: float = 0.0, high: float = 1.0, seed: int = 0) -> mx.nd.NDArray:
    """A uniform input from its own seeded generator: the same on every run, whatever ran before."""
    return mx.nd.array(np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32))


def assert_close_to_scale(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-4) -> None:
    """Equal to within `rel` of the output's magnitude, and the same argmax nearly everywhere: oneDNN's kernels of
    another ISA or fusion sum in another order, so an absolute tolerance fails on large outputs."""
    scale = float(np.abs(expected).max())
    worst = float(np.abs(actual - expected).max())
    assert worst <= rel * scale, f"largest difference {worst:.3g} exceeds {rel:g} of the output's magnitude {scale:.3g}"
    agree = float((actual.argmax(axis=1) == expected.argmax(axis=1)).mean())
    assert agree >= 0.999, f"argmax agrees on only {agree:.2%} of pixels"


def real_model(name: str, dataset: str, tmp_path):
    """A real-tier ModelConfig for model-zoo network `name` with store weights, caches under tmp_path."""
    entry = ModelEntry(name, Network.from_zoo(name), STORE, DataEntry(dataset))
    return resolve(entry, RunConfig(tier="real", cache_dir=tmp_path / "cache", mxnet_home=tmp_path))


@pytest.mark.parametrize("model", [Network.from_parts(a, b, d) for a in SEEDED_ARCHITECTURES for b in ("resnet50", "resnet101")
                                   for d in ("pascal_voc", "coco")], ids=lambda n: n.name)
def test_builds_gluoncvs_architecture_at_the_given_crop(model):
    net = build.build(model, 96)
    assert net.crop_size == 96 and net._up_kwargs == {"height": 96, "width": 96} and net.nclass == 21
    assert not net.aux and type(net).__module__.startswith("gluoncv.model_zoo.")
    if model.arch == "psp":
        assert net.head.psp._up_kwargs == {"height": 12, "width": 12}


@pytest.mark.parametrize("name, classes", [("fcn_resnet50_ade", 150), ("psp_resnet101_citys", 19), ("icnet_resnet50_citys", 19),
                                           ("fastscnn_citys", 19), ("danet_resnet50_citys", 19), ("deeplab_resnest50_ade", 150)])
def test_other_model_zoo_networks_build_with_their_datasets_classes(name, classes):
    """Shapes inferred from the symbol: the networks are built, not run (running them costs seconds, proves nothing more)."""
    out = build.build(Network.from_zoo(name), 64)(mx.sym.var("data"))
    main = out[0] if isinstance(out, (list, tuple)) else out
    assert main.infer_shape(data=(1, 3, 64, 64))[1] == [(1, classes, 64, 64)]


def test_unknown_networks_name_what_there_is():
    with pytest.raises(SegcheckError, match="unknown model-zoo network 'fcn_resnet7_voc'; GluonCV's segmentation networks are: .*fcn_resnet101_ade"):
        Network.from_zoo("fcn_resnet7_voc")
    with pytest.raises(SegcheckError, match="unknown backbone 'vgg16'"):
        Network.from_parts("fcn", "vgg16", "ade20k")
    with pytest.raises(SegcheckError, match="unknown dataset 'kitti'"):
        Network.from_parts("fcn", "resnet50", "kitti")


@pytest.mark.parametrize("crop", [60, 20, 100, 64.0, True], ids=["not-multiple-of-8", "too-small", "100", "float", "bool"])
def test_crop_sizes_the_architectures_cannot_take_are_refused(crop):
    with pytest.raises(SegcheckError, match="crop size"):
        build.build(SMALL, crop)


def test_smallest_accepted_crop_runs_on_every_architecture():
    for arch in SEEDED_ARCHITECTURES:
        net = build.build(Network.from_parts(arch, "resnet50", "voc"), MIN_CROP)
        net.initialize(mx.init.Zero())  # the forward must run at this crop; the values do not matter
        out = net(mx.nd.zeros((1, 3, 32, 32)))[0]
        out.wait_to_read()
        assert out.shape == (1, 21, 32, 32)


@pytest.fixture(scope="module")
def small_net():
    """A seeded fcn_resnet50_voc shared by the module: tests read its weights, never change them."""
    net = build.build(SMALL, SMALL_CROP)
    build.random_weights(net, SMALL_CROP, seed=1)
    return net


@pytest.fixture
def model_store(tmp_path, monkeypatch, small_net):
    """A file in GluonCV's model-store layout; GluonCV's sha1 table is taught its hash, nothing is fetched."""
    from gluoncv.model_zoo import model_store as store

    def no_download(*args, **kwargs):
        pytest.fail("segcheck tried to download")

    monkeypatch.setattr(store, "download", no_download)
    staging = tmp_path / "staging.params"
    small_net.save_parameters(str(staging))
    sha1 = build.file_sha1(staging)
    monkeypatch.setitem(store._model_sha1, SMALL.name, sha1)
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / f"{SMALL.name}-{sha1[:8]}.params"
    staging.rename(target)
    return tmp_path, target


def test_pretrained_file_from_the_model_store_loads(model_store, small_net):
    home, target = model_store
    assert build.store_path(SMALL, home) == target
    net = build.build(SMALL, SMALL_CROP)
    build.load_params(net, build.pretrained_file(SMALL, home))
    x = seeded_input((1, 3, SMALL_CROP, SMALL_CROP))
    np.testing.assert_array_equal(net(x)[0].asnumpy(), small_net(x)[0].asnumpy())


def test_absent_pretrained_file_says_where_and_how(tmp_path):
    with pytest.raises(MissingResource) as err:
        build.pretrained_file(Network.from_zoo("fcn_resnet101_voc"), tmp_path)
    message = str(err.value)
    assert str(tmp_path / "models" / "fcn_resnet101_voc-12c2b9b3.params") in message
    assert "get_model('fcn_resnet101_voc', pretrained=True)" in message and "$MXNET_HOME" in message


def test_real_tier_without_weights_is_missing_not_downloaded(tmp_path):
    with pytest.raises(MissingResource, match="pretrained weights for psp_resnet101_coco not found"):
        pipeline.fp32_params(real_model("psp_resnet101_coco", "coco", tmp_path))


def test_sha1_mismatch_is_an_error_never_a_silent_refetch(model_store):
    home, target = model_store
    with open(target, "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(SegcheckError, match=rf"^{target}: sha1 [0-9a-f]{{40}} does not match GluonCV's") as err:
        build.pretrained_file(SMALL, home)
    assert not isinstance(err.value, MissingResource)


def test_model_without_published_weights_is_named():
    with pytest.raises(MissingResource, match="GluonCV publishes no pretrained weights for deeplab_resnet50_coco; give a weights file"):
        build.store_path(Network.from_parts("deeplab", "resnet50", "coco"), "/nowhere")


def test_params_loading_is_strict(tmp_path, small_net):
    saved = {k: v.data() for k, v in small_net._collect_params_with_prefix().items()}
    with_aux = dict(saved, **{"auxlayer.block.0.weight": mx.nd.zeros((1,))})
    mx.nd.save(str(tmp_path / "aux.params"), with_aux)
    build.load_params(build.build(SMALL, SMALL_CROP), tmp_path / "aux.params", ignore_prefixes=("auxlayer.",))
    mx.nd.save(str(tmp_path / "extra.params"), dict(saved, **{"layer9.weight": mx.nd.zeros((1,))}))
    with pytest.raises(SegcheckError, match=r"extra.params: parameters do not match the network \(unexpected \['layer9.weight'\]\)"):
        build.load_params(build.build(SMALL, SMALL_CROP), tmp_path / "extra.params")
    partial = {k: v for k, v in saved.items() if not k.startswith("head.")}
    mx.nd.save(str(tmp_path / "partial.params"), partial)
    with pytest.raises(SegcheckError, match=r"partial.params: parameters do not match the network \(missing \['head"):
        build.load_params(build.build(SMALL, SMALL_CROP), tmp_path / "partial.params")
    (tmp_path / "garbage.params").write_bytes(b"\x12\x34" * 100)
    with pytest.raises(SegcheckError, match=r"garbage.params: not a readable MXNet params file"):
        build.load_params(build.build(SMALL, SMALL_CROP), tmp_path / "garbage.params")


def _quantized(net, **recipe):
    calib = [seeded_input((4, 3, SMALL_CROP, SMALL_CROP), -2, 2)]
    return quantize.quantize(net, SMALL.arch, CalibRecipe(num_batches=1, batch_size=4, **recipe), calib, SMALL_CROP)


def _graph(block, tmp_path):
    text = export.graph_json(block)
    return inspect_graph(text), json.loads(text)


@pytest.fixture(scope="module")
def tiny_net():
    """Three fused conv blocks and a classifier: calibration recipes are exercised in seconds."""
    nn = mx.gluon.nn
    net = nn.HybridSequential()
    with net.name_scope():
        for channels in (8, 16):
            net.add(nn.Conv2D(channels, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"))
        net.add(nn.Conv2D(21, 1))
    mx.random.seed(2)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, SMALL_CROP, SMALL_CROP)))
    return net


@pytest.fixture(scope="module")
def recipes(tiny_net):
    """(mode, dtype) -> quantized tiny net, each quantized once per module."""
    made = {}

    def get(mode, dtype="auto"):
        if (mode, dtype) not in made:
            made[mode, dtype] = _quantized(tiny_net, mode=mode, dtype=dtype)
        return made[mode, dtype]

    return get


@pytest.mark.parametrize("mode, dtype", [("naive", "auto"), ("entropy", "auto"), ("none", "auto"), ("naive", "int8")])
def test_calibration_modes_and_dtypes_give_a_quantized_graph(recipes, tmp_path, mode, dtype):
    qnet = recipes(mode, dtype)
    out = logits(qnet, seeded_input((1, 3, SMALL_CROP, SMALL_CROP), -2, 2))
    assert out.shape == (1, 21, SMALL_CROP, SMALL_CROP) and np.isfinite(out.asnumpy()).all()
    graph, doc = _graph(qnet, tmp_path)
    assert graph.convs == 3 and graph.int8_share == 1.0 and graph.unfused_convs == 0
    assert graph.calibrated_convs == (0 if mode == "none" else graph.int8_convs)
    data_quantize = next(n for n in doc["nodes"] if n["op"] == "_contrib_quantize_v2")
    assert data_quantize["attrs"]["out_type"] == dtype


def test_uint8_on_signed_input_is_a_clear_error(tiny_net):
    with pytest.raises(SegcheckError, match=r"takes its input as uint8 \(the recipe asked for uint8\), which needs non-negative "
                                            r"input.*\(--calib-dtype auto or int8\)"):
        _quantized(tiny_net, dtype="uint8")


def test_the_error_names_the_dtype_mxnet_was_asked_for_not_the_recipes(tiny_net, monkeypatch):
    """A fault below segcheck that makes MXNet quantize to uint8 while the recipe says auto (the catalogue's uint8
    mutant): the message is true of what happened, and does not suggest the setting already in force."""
    from mxnet.contrib import quantization

    original = quantization.quantize_net_v2
    monkeypatch.setattr(quantization, "quantize_net_v2", lambda net, **kw: original(net, **{**kw, "quantized_dtype": "uint8"}))
    with pytest.raises(SegcheckError, match=r"takes its input as uint8 \(the recipe asked for auto\)"):
        _quantized(tiny_net, dtype="auto")


def test_a_range_below_zero_under_a_fused_relu_is_named_by_its_layer(tiny_net, monkeypatch):
    """A calibration fault below segcheck gives the first convolution, fused with its ReLU (so its output is uint8), a
    range below zero: MXNet refuses the graph at the next layer naming no node ("data_min < 0"). segcheck's error names
    the layer by the path int8.exclude takes; it used to blame the input's type."""
    from mxnet.contrib import quantization

    original = quantization._calibrate_quantized_sym

    def calibrate(qsym, th_dict):
        first = faults.conv_outputs(qsym)[0][0]
        return original(qsym, {**th_dict, first: (-1.0, float(th_dict[first][1]))})

    monkeypatch.setattr(quantization, "_calibrate_quantized_sym", calibrate)
    first = quantize.conv_paths(tiny_net)[0]
    with pytest.raises(RefusedRanges, match=rf'the calibrated range of {first} \[-1, .*int8.exclude = \["{first}"\]') as refused:
        _quantized(tiny_net)
    assert refused.value.layers == (first,)


def _fused_conv(low: float, attrs: dict, activations: list) -> dict:
    inner = [{"op": "Convolution", "name": "net0_conv0_fwd"}] + [{"op": op, "name": f"act{k}", "attrs": a}
                                                                 for k, (op, a) in enumerate(activations)]
    return {"op": "_sg_mkldnn_conv", "name": "quantized_sg_mkldnn_conv_0", "subgraphs": [{"nodes": inner}],
            "attrs": {"quantized": "true", "min_calib_range": str(low), "max_calib_range": "2.0", **attrs}}


RELU, TANH = ("Activation", {"act_type": "relu"}), ("Activation", {"act_type": "tanh"})


@pytest.mark.parametrize("attrs, activations, unsigned", [
    ({"with_act": "true"}, [RELU], True),
    ({"with_act": "true"}, [("Activation", {"act_type": "sigmoid"})], True),
    ({"with_act": "true"}, [TANH], False),
    ({"with_act": "true"}, [("clip", {"a_min": "0", "a_max": "6"})], True),
    ({"with_act": "true"}, [("clip", {"a_min": "-1", "a_max": "1"})], False),
    ({"with_act": "true"}, [("LeakyReLU", {"act_type": "leaky", "slope": "0.1"})], False),
    ({"with_act": "true", "with_sum": "true"}, [RELU], False),  # ReLU, then the sum: the output is int8
    ({"with_sum": "true", "with_postsum_act": "true"}, [RELU], True),
    ({"with_act": "true", "with_sum": "true", "with_postsum_act": "true"}, [TANH, RELU], True),
    ({"with_act": "true", "with_sum": "true", "with_postsum_act": "true"}, [RELU, TANH], False),
    ({}, [], False),
], ids=["relu", "sigmoid", "tanh", "relu6", "clip", "leaky", "relu-sum", "sum-relu", "tanh-sum-relu", "relu-sum-tanh", "none"])
def test_a_negative_range_is_refused_only_where_mxnet_makes_the_output_unsigned(attrs, activations, unsigned):
    """MXNet's IsOutputUInt8: an unsigned activation with no sum after it, or one after the sum."""
    for low, expected in ((-0.5, unsigned), (0.0, False)):
        found = negative_unsigned_ranges(json.dumps({"nodes": [_fused_conv(low, attrs, activations)]}))
        assert found == ([NegativeRange("net0_conv0_fwd", low, 2.0)] if expected else []), (low, found)


def test_entropy_thresholds_differ_from_naive(recipes, tmp_path):
    bounds = {}
    for mode in ("naive", "entropy"):
        _, doc = _graph(recipes(mode), tmp_path / mode)
        bounds[mode] = [max(abs(float(n["attrs"]["min_calib_range"])), abs(float(n["attrs"]["max_calib_range"])))
                        for n in doc["nodes"] if "max_calib_range" in n.get("attrs", {})]
    assert len(bounds["naive"]) == len(bounds["entropy"]) >= 3
    assert all(e <= n * 1.0001 for e, n in zip(bounds["entropy"], bounds["naive"]))
    assert bounds["entropy"] != bounds["naive"]


def test_excluded_layers_stay_fp32_and_the_share_records_it(small_net, tmp_path):
    graph, _ = _graph(_quantized(small_net, exclude=("head.block.4", "layer4.2.conv3")), tmp_path)
    assert graph.fp32_convs == 2 and graph.int8_share == pytest.approx(1 - 2 / graph.convs)
    assert any(name.endswith("_fcnhead0_hybridsequential0_conv1_fwd") for name in graph.fp32_layers)
    everything = _graph(_quantized(small_net, exclude=tuple(quantize.conv_paths(small_net))), tmp_path / "all")[0]
    assert everything.int8_convs == 0 and everything.int8_share == 0.0
    with pytest.raises(SegcheckError, match="cannot exclude layer 'head.block.9'"):
        _quantized(small_net, exclude=("head.block.9",))


@pytest.mark.parametrize("bad", [{"mode": "kl"}, {"dtype": "int4"}, {"num_batches": 0}, {"batch_size": -1}], ids=["mode", "dtype", "batches", "size"])
def test_unknown_calibration_settings_are_refused(bad):
    with pytest.raises(SegcheckError, match="calibration|quantized dtype"):
        CalibRecipe(**bad)


def test_calibration_is_disjoint_from_evaluation_unless_asked_to_reproduce_the_seed(segcheck):
    mc = segcheck.model_config("fcn_resnet101_voc")
    val = pipeline.open_split(mc, "val")
    _, calib = pipeline.calibration_images(mc, mc.calib)
    assert calib.split == "train" and len(calib.ids) == 32 and not set(calib.ids) & set(val.ids)
    _, seed_like = pipeline.calibration_images(mc, CalibRecipe(num_batches=2, batch_size=16, split="val"))
    assert seed_like.ids == val.ids[:32]


def test_calibration_asking_for_more_images_than_the_split_holds(segcheck):
    with pytest.raises(SegcheckError, match=r"calibration needs 3200 images \(100 batches x 32\) but the train split holds 224; lower --calib-batches"):
        pipeline.calibration_images(segcheck.model_config("fcn_resnet101_coco"), CalibRecipe(num_batches=100))


def test_export_round_trip_and_unwritable_output(small_net, tmp_path):
    qnet = _quantized(small_net)
    prefix = tmp_path / "model" / "fcn_resnet50_voc-quantized-naive"
    with pytest.raises(SegcheckError, match="has not run since it was hybridized"):
        export.export(build.build(SMALL, SMALL_CROP), tmp_path / "unrun" / "m")
    symbol, params = export.export(qnet, prefix)
    assert (symbol.name, params.name) == ("fcn_resnet50_voc-quantized-naive-symbol.json", "fcn_resnet50_voc-quantized-naive-0000.params")
    x = seeded_input((1, 3, SMALL_CROP, SMALL_CROP))
    np.testing.assert_array_equal(logits(export.load(prefix), x).asnumpy(), logits(qnet, x).asnumpy())
    assert sorted(p.name for p in prefix.parent.iterdir()) == [params.name, symbol.name]
    (tmp_path / "file").write_text("")
    with pytest.raises(SegcheckError, match="cannot create folder .*file/sub.*choose a writable --model-prefix"):
        export.export(qnet, tmp_path / "file" / "sub" / "m")


@pytest.mark.parametrize("model", seed_networks(), ids=lambda s: s.name)
def test_gluoncv_int8_symbols_bind_on_this_mxnet(model):
    symbol = mx.sym.load_json(export.gluoncv_int8_symbol(model))
    _, outputs, _ = symbol.infer_shape(data=(1, 3, 480, 480))
    assert outputs == [(1, 21, 480, 480), (1, 21, 480, 480)]
    assert sum(1 for n in json.loads(symbol.tojson())["nodes"] if n.get("attrs", {}).get("quantized") == "true") > 100


@pytest.mark.parametrize("name", [
    "fcn_resnet101_voc",
    *[pytest.param(s.name, marks=pytest.mark.slow) for s in seed_networks() if s.name != "fcn_resnet101_voc"],
])
def test_gluoncv_int8_symbols_run_with_local_weights(segcheck, name):
    block = pipeline.gluoncv_int8(segcheck.model_config(name))
    out = logits(block, seeded_input((1, 3, 480, 480)))
    assert out.shape == (1, 21, 480, 480) and np.isfinite(out.asnumpy()).all()


def test_cache_builds_once_and_rebuilds_damaged_entries(tmp_path, caplog):
    calls = []

    def make(folder):
        calls.append(folder)
        (folder / "weights.bin").write_bytes(b"abc" * 10)
        return {"note": "built"}

    first = cache.get_or_build(tmp_path, "fp32", {"model": "x"}, make)
    assert first.built and first.manifest["note"] == "built" and len(calls) == 1
    again = cache.get_or_build(tmp_path, "fp32", {"model": "x"}, make)
    assert not again.built and again.path == first.path and len(calls) == 1
    assert cache.get_or_build(tmp_path, "fp32", {"model": "y"}, make).path != first.path

    damages = {
        "truncated": lambda p: (p / "weights.bin").write_bytes(b"ab"),
        "same-size": lambda p: (p / "weights.bin").write_bytes(b"xyz" * 10),  # already verified once in this process
        "deleted": lambda p: (p / "weights.bin").unlink(),
        "manifest": lambda p: (p / "manifest.json").write_text("{"),
        "other-key": lambda p: (p / "manifest.json").write_text(json.dumps({"key": "0", "files": {}})),
    }
    for what, damage in damages.items():
        damage(first.path)
        with caplog.at_level(logging.WARNING, logger="segcheck.cache"):
            rebuilt = cache.get_or_build(tmp_path, "fp32", {"model": "x"}, make)
        assert rebuilt.built, what
        assert "is damaged" in caplog.text and "rebuilding it" in caplog.text
        assert (first.path / "weights.bin").read_bytes() == b"abc" * 10
        caplog.clear()
    # ... and each rebuild is a warning of the run that made it, not of a later one
    run = os.environ.get(cache.RUN_ID, "")
    rebuilt = cache.rebuilt_since(tmp_path, 0.0, run)
    assert all(first.path.name in w and "was rebuilt" in w for w in rebuilt), rebuilt
    for why in ("weights.bin does not match its sha256", "weights.bin missing", "manifest belongs to another key"):
        assert any(f"({why})" in w for w in rebuilt), (why, rebuilt)
    assert cache.rebuilt_since(tmp_path, time.time() + 1, run) == [] and cache.rebuilt_since(tmp_path / "none", 0.0, run) == []
    assert cache.rebuilt_since(tmp_path, 0.0, run + "another run") == []  # a run sharing the cache tells of its own


def test_an_entry_linked_into_another_cache_is_read_once_and_again_when_it_changes(tmp_path, monkeypatch):
    """A test's or a shard's cache links this run's entries: the same files, so their sha256 is taken once per process
    (a ResNet-101's weights are 209 MB), and a file changed in place is read, and found damaged, again."""
    read, real = [], atomic.digest
    monkeypatch.setattr(atomic, "digest", lambda path, *how: read.append(Path(path).name) or real(path, *how))
    monkeypatch.setattr(atomic, "RACY_NS", 0)  # the files here are hashed right after their change: see the next test
    built = cache.get_or_build(tmp_path / "a", "fp32", {"model": "x"}, lambda folder: {"size": (folder / "weights.bin").write_bytes(b"abc" * 10)})
    (tmp_path / "b" / "models").mkdir(parents=True)
    (tmp_path / "b" / "models" / built.path.name).symlink_to(built.path)
    assert cache.find(tmp_path / "b", "fp32", {"model": "x"}) is not None and read == ["weights.bin"]
    (built.path / "weights.bin").write_bytes(b"abcd" * 10)
    assert cache.find(tmp_path / "b", "fp32", {"model": "x"}) is None and read == ["weights.bin"] * 2


def test_a_file_another_process_found_intact_is_not_read_until_its_stat_changes(tmp_path, monkeypatch):
    """An entry keeps the stat and digest of the files a process found intact (cache.STAMPS): the next process (here,
    this one with its memo emptied) reads none of them. A stamp with any field changed, or unreadable stamps, only
    mean that the file is read; a manifest whose digest was changed is found damaged as before, also where stamps
    were forged to agree with it and this process read the file; a file rewritten in place at the same size, its mtime
    set back, is read again (its ctime moved) and found damaged."""
    read, real = [], atomic.digest
    monkeypatch.setattr(atomic, "digest", lambda path, *how: read.append(Path(path).name) or real(path, *how))
    monkeypatch.setattr(atomic, "RACY_NS", 0)  # hashed right after the write, yet remembered: see the next test
    monkeypatch.setattr(atomic, "_DIGESTS", {})
    fields = {"model": "x"}
    built = cache.get_or_build(tmp_path, "fp32", fields, lambda folder: {"size": (folder / "weights.bin").write_bytes(b"abc" * 10)})
    stamps, weights = built.path / cache.STAMPS, built.path / "weights.bin"

    def found_after_reads(reads: int) -> bool:
        """Whether a process with no memo finds the entry intact, reading the weights `reads` times to do so."""
        monkeypatch.setattr(atomic, "_DIGESTS", {})
        count = len(read)
        intact = cache.find(tmp_path, "fp32", fields) is not None
        assert len(read) - count == reads, f"read the weights {len(read) - count} times, expected {reads}"
        return intact

    assert cache.find(tmp_path, "fp32", fields) is not None and read == ["weights.bin"] and stamps.is_file()
    assert found_after_reads(0)
    kept = json.loads(stamps.read_text())["weights.bin"]
    stat = weights.stat()
    assert kept == [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, built.manifest["files"]["weights.bin"]]
    for field in range(6):
        stamps.write_text(json.dumps({"weights.bin": [*kept[:field], kept[field] + 1 if field < 5 else "0" * 64, *kept[field + 1:]]}))
        assert found_after_reads(1), field
        assert found_after_reads(0), field  # the stamps were written again
    for garbage in ("{not json", "[1, 2]", '{"weights.bin": {"a": 1}}', "[" * 100_000):
        stamps.write_text(garbage)
        assert found_after_reads(1), garbage
    stamps.unlink()
    assert found_after_reads(1)  # this process now holds the digest it read
    manifest = json.loads((built.path / "manifest.json").read_text())
    (built.path / "manifest.json").write_text(json.dumps({**manifest, "files": {"weights.bin": "0" * 64}}))
    stamps.write_text(json.dumps({"weights.bin": [*kept[:5], "0" * 64]}))  # stamps forged to agree with it
    assert cache.find(tmp_path, "fp32", fields) is None  # the digest this process read stands
    stamps.write_text(json.dumps({"weights.bin": kept}))
    assert not found_after_reads(1)  # the stamp's digest is not the edited manifest's: the file is read, and damaged
    (built.path / "manifest.json").write_text("[" * 100_000)
    assert cache.find(tmp_path, "fp32", fields) is None
    built = cache.get_or_build(tmp_path, "fp32", fields, lambda folder: {"size": (folder / "weights.bin").write_bytes(b"abc" * 10)})
    assert found_after_reads(1) and found_after_reads(0)
    time.sleep(0.05)  # past the file system's timestamp tick (a few ms), as RACY_NS is in earnest
    before = weights.stat()
    weights.write_bytes(b"abd" * 10)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert weights.stat().st_mtime_ns == before.st_mtime_ns and weights.stat().st_ctime_ns != before.st_ctime_ns
    assert not found_after_reads(1)


def test_a_file_hashed_right_after_a_change_is_read_again_next_time(tmp_path, monkeypatch):
    """Within RACY_NS of a change, a same-size rewrite could keep the file's timestamps (one tick): its digest is not
    remembered until the file is older than that (git's racy rule)."""
    read, real = [], atomic.digest
    monkeypatch.setattr(atomic, "digest", lambda path, *how: read.append(Path(path).name) or real(path, *how))
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"abc")
    assert atomic.digest_of(fresh) == atomic.digest_of(fresh) and read == ["fresh.bin"] * 2
    monkeypatch.setattr(atomic, "RACY_NS", -10**18)  # as if it had been written long before
    assert atomic.digest_of(fresh) == atomic.digest_of(fresh) and read == ["fresh.bin"] * 3


def test_failed_build_leaves_nothing_half_written(tmp_path):
    def broken(folder):
        (folder / "weights.bin").write_bytes(b"partial")
        raise RuntimeError("calibration crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build(tmp_path, "int8", {"model": "x"}, broken)
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []


def test_unwritable_cache_folder_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SegcheckError, match=r"cache folder .*file/models is not writable.*--segcheck-cache"):
        cache.get_or_build(tmp_path / "file", "fp32", {"model": "x"}, lambda folder: None)


def test_second_run_skips_calibration(segcheck, monkeypatch):
    mc = segcheck.model_config("deeplab_resnet101_voc")
    pipeline.int8_model(mc)
    monkeypatch.setattr(quantize, "quantize", lambda *a, **k: pytest.fail("calibrated again"))
    second = pipeline.int8_model(mc)
    assert not second.entry.built and second.entry.manifest["calibration_subset"].startswith("train: 32 images")


def _cache_holding(mc, entry, tmp_path):
    """`mc` on a cache of its own under tmp_path: the session's datasets and FP32 models, and a copy of `entry`."""
    copy = tmp_path / "cache"
    shutil.copytree(mc.run.cache_dir / "datasets", copy / "datasets", symlinks=True)
    (copy / "models").mkdir()
    for fp32 in (mc.run.cache_dir / "models").glob("fp32-*"):
        (copy / "models" / fp32.name).symlink_to(fp32)
    shutil.copytree(entry.path, copy / "models" / entry.path.name, ignore=shutil.ignore_patterns("ran-*"))
    return mc.with_(run=mc.run.with_(cache_dir=copy)), copy / "models" / entry.path.name


def test_an_int8_model_runs_first_in_a_child_until_it_has_run_once_under_this_dispatch(segcheck, monkeypatch, tmp_path):
    """A case calibrates and first runs its INT8 model in a forked child, so that a backend crash stays there. A cached
    model whose entry records a first run under this process's dispatch is loaded at once. One without that record
    (its first run never finished, or ran under another cap or CPU), a case remembering a crash and a run that trusts
    no cache (--no-eval-cache) go to the child; a model that does not bind leaves no record."""
    made = segcheck.model_config("deeplab_resnet101_voc")
    mc, entry = _cache_holding(made, pipeline.int8_model(made).entry, tmp_path)
    children = []
    monkeypatch.setattr(guard, "isolated", lambda what, *args, **kwargs: children.append(what))
    first = ModelCase(mc, segcheck.unavailable)
    assert first.int8.entry.path == entry and children == [f"{mc.name} {FIRST_RUN}"]  # no record: the child first
    marker = entry / first._first_run_marker
    assert marker.is_file() and [p.name for p in entry.glob("ran-*")] == [marker.name]  # then run here, recorded
    assert ModelCase(mc, segcheck.unavailable).int8.entry.path == entry and len(children) == 1  # loaded at once
    remembers = ModelCase(mc, segcheck.unavailable)
    remembers._crashes[FIRST_RUN] = guard.BackendCrash("the backend died with SIGABRT")
    with pytest.raises(guard.BackendCrash):
        remembers.int8
    untrusting = ModelCase(mc.with_(run=mc.run.with_(eval_cache=False)), segcheck.unavailable)
    assert untrusting.int8.entry.path == entry and len(children) == 2
    other = ModelCase(mc, segcheck.unavailable)
    other._first_run_marker = "ran-another-dispatch"
    assert other.int8.entry.path == entry and len(children) == 3 and (entry / "ran-another-dispatch").is_file()
    marker.unlink()
    monkeypatch.setattr(export, "load", lambda prefix: lambda x: (_ for _ in ()).throw(mx.base.MXNetError("cannot bind")))
    with pytest.raises(mx.base.MXNetError, match="cannot bind"):
        ModelCase(mc, segcheck.unavailable).int8
    assert not marker.exists() and len(children) == 4


def test_cache_keys_hold_the_library_the_decoders_the_reader_and_the_calibration_files(segcheck, monkeypatch, tmp_path):
    """A model or evaluation is rebuilt when what made it changes: libmxnet.so's contents (not only its version string),
    Pillow and OpenCV, segcheck's own image reading, the calibration images' files (not only their ids), the threads."""
    found = cache.versions()
    assert {"mxnet", "gluoncv", "numpy", "pillow", "opencv-python", "libmxnet", "reader"} <= set(found)
    original = metadata.version
    monkeypatch.setattr(cache.metadata, "version", lambda dist: "9.9" if dist == "pillow" else original(dist))
    assert cache.versions()["pillow"] == "9.9" and cache.versions()["libmxnet"] == found["libmxnet"]
    monkeypatch.undo()
    mc = segcheck.model_config("deeplab_resnet101_voc")
    moved, _ = _cache_holding(mc, pipeline.int8_model(mc).entry, tmp_path)  # the calibrated model, under its key
    copy = moved.run.cache_dir
    monkeypatch.setattr(quantize, "quantize", lambda *a, **k: pytest.fail("reached calibration: the key changed"))
    assert not pipeline.int8_model(moved).entry.built  # the same files: the copy's entry is found
    here = threads.in_force()
    monkeypatch.setenv(threads.VARIABLE, str(here + 1))
    with pytest.raises(pytest.fail.Exception, match="the key changed"):  # calibrated on other threads, a bound may round apart
        pipeline.int8_model(moved)
    monkeypatch.setenv(threads.VARIABLE, str(here))
    source, _ = pipeline.calibration_images(moved, moved.calib)
    image = Path(source.files([0])[0])
    image.unlink()  # the copy's first calibration image, rewritten darker: same id, other pixels
    Image.open(mc.run.cache_dir / image.relative_to(copy)).point(lambda v: v // 2).save(image, quality=92)
    with pytest.raises(pytest.fail.Exception, match="the key changed"):
        pipeline.int8_model(moved)


def _fused_small(small_net, folder):
    """The small network built anew with `small_net`'s weights, then fused (build.fuse), an input, and its outputs
    before fusing."""
    net = build.build(SMALL, SMALL_CROP)
    params = folder / "small.params"
    small_net.save_parameters(str(params))
    build.load_params(net, params)
    x = seeded_input((1, 3, SMALL_CROP, SMALL_CROP), -2, 2)
    reference = net(x)[0].asnumpy()
    return build.fuse(net, SMALL_CROP), x, reference


@pytest.mark.parametrize("backend_argument", [True, False], ids=["hybridize-backend", "mxnet-mkl-1.6-route"])
def test_fp32_fusion_gives_a_fused_graph_with_unchanged_outputs(small_net, tmp_path, monkeypatch, backend_argument):
    if backend_argument and not build.hybridize_takes_backend():
        pytest.skip(f"MXNet {mx.__version__} has no hybridize(backend=...)")
    monkeypatch.setattr(build, "hybridize_takes_backend", lambda: backend_argument)
    fused, x, reference = _fused_small(small_net, tmp_path)
    graph, _ = _graph(fused, tmp_path)
    assert graph.unfused_convs == 0 and graph.fp32_convs == graph.convs > 50
    assert_close_to_scale(logits(fused, x).asnumpy(), reference)


def test_the_subgraph_builders_failure_takes_the_other_route_and_says_so(small_net, tmp_path, monkeypatch):
    """MXNet 1.8's hybridize(backend='MKLDNN') failing on these graphs (its error injected): the network is fused the
    other way, with the same outputs, and the route joins FALLBACKS, which the run's warnings report."""
    if not build.hybridize_takes_backend():
        pytest.skip(f"MXNet {mx.__version__} has no hybridize(backend=...)")
    original, calls = build.materialise, []

    def fails_first(net, crop):
        calls.append(crop)
        if len(calls) == 1:
            raise mx.base.MXNetError(f"Check failed: {build.SUBGRAPH_BUG}")
        return original(net, crop)

    monkeypatch.setattr(build, "materialise", fails_first)
    monkeypatch.setattr(build, "FALLBACKS", [])
    fused, x, reference = _fused_small(small_net, tmp_path)
    assert len(calls) == 2 and isinstance(fused, mx.gluon.SymbolBlock)
    assert len(build.FALLBACKS) == 1 and "fused through get_backend_symbol('MKLDNN')" in build.FALLBACKS[0]
    assert_close_to_scale(logits(fused, x).asnumpy(), reference)


def test_a_shipped_int8_export_is_used_as_it_is_and_a_damaged_one_is_named(segcheck, tmp_path):
    """int8 = { export = ... }: the artefact's own graph and weights are gated; a broken file fails with its name."""
    mc = segcheck.model_config("fcn_resnet101_voc")
    calibrated = pipeline.int8_model(mc)
    prefix = tmp_path / "shipped" / "my-int8"
    symbol, params = export.export(calibrated.block, prefix)
    shipped = pipeline.int8_model(mc.with_(int8_export=prefix))
    assert shipped.entry is None and shipped.source == f"shipped INT8 export {prefix}" and shipped.graph == calibrated.graph
    x = seeded_input((1, 3, mc.crop_size, mc.crop_size), -1, 1)
    np.testing.assert_array_equal(logits(shipped.block, x).asnumpy(), logits(calibrated.block, x).asnumpy())
    params.write_bytes(params.read_bytes()[:1000])
    with pytest.raises(SegcheckError, match=rf"^{params}: cannot be loaded into my-int8-symbol.json"):
        pipeline.int8_model(mc.with_(int8_export=prefix))
    symbol.write_text("{")
    with pytest.raises(SegcheckError, match=rf"^{symbol}: "):
        pipeline.int8_model(mc.with_(int8_export=prefix))
    with pytest.raises(SegcheckError, match=r"predicts 21 classes, but ade20k has 150"):
        pipeline.int8_model(mc.with_(int8_export=calibrated.entry.path / "model", dataset="ade20k"))

"""The peer runtimes: the FP32 network exported to ONNX (models.onnx_export) and run by ONNX Runtime and OpenVINO in
their own virtualenv (segcheck.peers: the environment, the runner protocol, peers/runner.py), in FP32 against MXNet's
output and in INT8, and every way a peer run can fail, each one clear error. Tests that run the peers skip without the
peer environment."""

import functools
import io
import json
import sys
from pathlib import Path

import inner
import mxnet as mx
import numpy as np
import pytest

from segcheck.cases.model_case import ModelCase
from segcheck.cli import commands
from segcheck.config.networks import Network
from segcheck.config.recipes import PEERS
from segcheck.errors import SegcheckError
from segcheck.peers import environment, network_install, protocol, reuse, scoring
from segcheck.peers import runner as peer_runner
from segcheck.models import build, pipeline

onnx_export = pytest.importorskip("segcheck.models.onnx_export", reason="this MXNet has no mx2onnx (mxnet.onnx); 1.9 has")

PSP = Network.from_parts("psp", "resnet50", "pascal_voc")  # its head, on a small backbone (_psp_head_network)
CROP = 64
PSP_CROP = 48  # 6x6 features: PSPNet's bins 1, 2, 3 and 6 all divide them (at 64 px the 8x8 features do not)
EVAL_IMAGES = 3
CALIB_IMAGES = 4
QUICK = {"min_rounds": 3, "max_time_s": 0.3, "precision": 0.02, "warmup": 1}
TIMEOUT_S = 300

pytestmark = pytest.mark.peer


def seeded_images(count: int, crop: int, seed: int) -> np.ndarray:
    """Normalised-looking images from their own seeded generator: the same on every run, whatever ran before."""
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(count, 3, crop, crop)).astype(np.float32)


def assert_close_to_scale(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-4) -> None:
    """Equal to within `rel` of the logits' magnitude: the runtimes sum in another order than oneDNN."""
    scale = float(np.abs(expected).max())
    worst = float(np.abs(actual - expected).max())
    assert worst <= rel * scale, f"largest difference {worst:.3g} exceeds {rel:g} of the logits' magnitude {scale:.3g}"


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


class _Residual(mx.gluon.HybridBlock):
    """A small FCN for the runner's own tests (the six models' peer runs are gated in the suite, every convolution of
    their INT8 models quantized): a strided stem, a residual block with a dilated convolution, a pooled 1x1 head
    upsampled to the crop, as GluonCV's FCN has them (BatchNorm, ReLU, an add, MaxPool, BilinearResize2D); 21 classes,
    4 convolutions."""

    CONVS = 4

    def __init__(self, crop: int, classes: int = 21):
        super().__init__()
        self.crop = crop
        with self.name_scope():
            self.stem = mx.gluon.nn.HybridSequential()
            self.stem.add(mx.gluon.nn.Conv2D(16, 3, strides=2, padding=1, use_bias=False), mx.gluon.nn.BatchNorm(),
                          mx.gluon.nn.Activation("relu"))
            self.body = mx.gluon.nn.HybridSequential()
            self.body.add(mx.gluon.nn.Conv2D(16, 3, padding=1, use_bias=False), mx.gluon.nn.BatchNorm(),
                          mx.gluon.nn.Activation("relu"), mx.gluon.nn.Conv2D(16, 3, padding=2, dilation=2, use_bias=False),
                          mx.gluon.nn.BatchNorm())
            self.pool = mx.gluon.nn.MaxPool2D(2)
            self.head = mx.gluon.nn.Conv2D(classes, 1)

    def hybrid_forward(self, F, x):
        y = self.stem(x)
        y = F.relu(y + self.body(y))
        return F.contrib.BilinearResize2D(self.head(self.pool(y)), height=self.crop, width=self.crop)


def _psp_head_network(crop: int) -> mx.gluon.HybridBlock:
    """GluonCV's PSPNet whose ResNet stages are one convolution each, of the widths and strides its head and auxiliary
    branch expect (2048 and 1024 channels at 1/8 of the crop): the pyramid pooling exports as on PSP-ResNet-101, at
    half the weights of PSP-ResNet-50 (the six models' own PSPNet exports are gated in the suite)."""
    net = build.build(PSP, crop)
    nn = mx.gluon.nn
    with net.name_scope():
        for stage, (channels, kernel, stride) in enumerate(((64, 1, 1), (128, 3, 2), (1024, 1, 1), (2048, 1, 1)), 1):
            layer = nn.HybridSequential(prefix=f"layer{stage}_")
            layer.add(nn.Conv2D(channels, kernel, strides=stride, padding=kernel // 2, use_bias=False), nn.BatchNorm(),
                      nn.Activation("relu"))
            setattr(net, f"layer{stage}", layer)
    return net


def exported(net: mx.gluon.HybridBlock, crop: int, folder, seed: int = 0):
    """(ONNX path, MXNet FP32 logits of the eval images, eval images file) for `net`, a block made for the crop, with
    random weights."""
    build.random_weights(net, crop, seed=seed)
    net.hybridize(static_alloc=True, static_shape=True)
    images = seeded_images(EVAL_IMAGES, crop, seed=1)
    logits = np.stack([build.logits(net, mx.nd.array(images[i:i + 1])).asnumpy()[0] for i in range(len(images))])
    path = onnx_export.export(net, crop, folder / f"{type(net).__name__.lower()}-{crop}.onnx")
    return path, logits, protocol.write_images(folder / "eval.npy", [images])


@pytest.fixture(scope="module")
def peer_python():
    folder = environment.environment_folder()
    python = environment.python_of(folder)
    if python is None:
        pytest.skip(environment.missing_message(folder))
    return python


@pytest.fixture(scope="module")
def fcn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fcn")
    path, logits, images = exported(_Residual(CROP), CROP, folder)
    calib = protocol.write_images(folder / "calib.npy", [mx.nd.array(seeded_images(CALIB_IMAGES, CROP, seed=2))])
    return {"onnx": path, "logits": logits, "eval": images, "calib": calib, "folder": folder}


def request(model: dict, runtime: str, precision: str, **extra) -> dict:
    out = model["folder"] / f"{runtime}-{precision}"
    return dict({"onnx": str(model["onnx"]), "runtime": runtime, "precision": precision, "eval": str(model["eval"]),
                 "calib": str(model.get("calib", "")), "latency": QUICK, "threads": 2, "out": str(out)}, **extra)


def assert_latency(answer: dict) -> None:
    timing = answer["latency"]
    assert set(timing) == {"rounds", "min_ms", "median_ms", "iqr_pct"}
    assert timing["rounds"] >= QUICK["min_rounds"] and 0 < timing["min_ms"] <= timing["median_ms"] and timing["iqr_pct"] >= 0


@pytest.mark.parametrize("runtime", PEERS)
def test_fp32_peer_matches_mxnet(peer_python, fcn, runtime):
    answer = protocol.run(peer_python, request(fcn, runtime, "fp32"), TIMEOUT_S)
    assert answer["ok"] and answer["runtime"] == runtime and answer["quantizer"] == "none" and runtime in answer["versions"]
    if runtime == "openvino":
        assert answer["settings"]["INFERENCE_PRECISION_HINT"] == "f32"
    predictions = np.load(answer["predictions"])
    assert predictions.shape == (EVAL_IMAGES, CROP, CROP) and predictions.dtype == np.uint8
    assert agreement(predictions, fcn["logits"].argmax(axis=1)) >= 0.99
    assert_close_to_scale(np.load(answer["logits0"]), fcn["logits"][0])
    assert_latency(answer)


@pytest.mark.parametrize("runtime", PEERS)
def test_int8_peer_gives_predictions_and_a_latency(peer_python, fcn, runtime):
    answer = protocol.run(peer_python, request(fcn, runtime, "int8"), TIMEOUT_S)
    assert answer["ok"] and answer["precision"] == "int8" and answer["quantizer"] != "none"
    predictions = np.load(answer["predictions"])
    assert predictions.shape == (EVAL_IMAGES, CROP, CROP) and predictions.dtype == np.uint8 and predictions.max() < 21
    assert np.load(answer["logits0"]).shape == (21, CROP, CROP) and answer["quantized_ops"] >= _Residual.CONVS
    quantized, convs = answer["quantized_convs"]
    assert convs == quantized == _Residual.CONVS, answer["quantized_convs"]  # every convolution takes quantized input
    if runtime == "onnxruntime":
        assert (fcn["folder"] / "onnxruntime-int8" / "int8.onnx").is_file() and "QDQ" in answer["quantizer"]
    assert_latency(answer)
    again = request(fcn, runtime, "int8", quantized=answer["model"], predict=False)  # a reused run's (peers.reuse)
    again["out"] += "-timed"
    timed = protocol.run(peer_python, again, TIMEOUT_S)
    assert timed["quantizer"] == "made earlier" and timed["model"] == answer["model"] and timed["predictions"] is None
    assert timed["quantized_ops"] is timed["quantized_convs"] is None and not list(Path(again["out"]).glob("*.npy"))
    assert_latency(timed)


def test_pspnet_exports_at_a_crop_its_bins_divide(peer_python, tmp_path):
    import onnx

    path, logits, images = exported(_psp_head_network(PSP_CROP), PSP_CROP, tmp_path)
    nodes = onnx.load(str(path)).graph.node
    pools = [n for n in nodes if n.op_type in ("AveragePool", "GlobalAveragePool")]
    kernels = sorted(tuple(a.ints) for n in pools for a in n.attribute if a.name == "kernel_shape")
    assert len(pools) == 4 and kernels == [(1, 1), (2, 2), (3, 3)]
    model = {"onnx": path, "eval": images, "folder": tmp_path}
    answer = protocol.run(peer_python, request(model, "onnxruntime", "fp32"), TIMEOUT_S)
    assert agreement(np.load(answer["predictions"]), logits.argmax(axis=1)) >= 0.99
    assert_close_to_scale(np.load(answer["logits0"]), logits[0])


def test_pspnet_exports_exactly_where_its_bins_do_not_divide_the_feature_map(peer_python, tmp_path):
    """At 64 px the feature map is 8x8: bins 3 and 6 become MXNet's overlapping windows, one AveragePool each."""
    import onnx

    path, logits, images = exported(_psp_head_network(CROP), CROP, tmp_path)
    nodes = onnx.load(str(path)).graph.node
    assert sum(n.op_type == "Slice" for n in nodes) >= 3 * 3 + 6 * 6
    model = {"onnx": path, "eval": images, "folder": tmp_path}
    answer = protocol.run(peer_python, request(model, "onnxruntime", "fp32"), TIMEOUT_S)
    assert agreement(np.load(answer["predictions"]), logits.argmax(axis=1)) >= 0.99
    assert_close_to_scale(np.load(answer["logits0"]), logits[0])


class _Erfinv(mx.gluon.HybridBlock):
    """A block whose only operator mx2onnx 1.9.1 has no converter for."""

    def hybrid_forward(self, F, x):
        return F.erfinv(F.tanh(x))


def test_an_operator_mx2onnx_cannot_convert_is_named(tmp_path):
    block = _Erfinv()
    block.hybridize()
    block(mx.nd.zeros((1, 3, CROP, CROP)))
    with pytest.raises(SegcheckError, match=r"^mx2onnx cannot convert erfinv: mxnet 1\.9\.1's ONNX exporter has no converter"):
        onnx_export.export(block, CROP, tmp_path / "odd.onnx")


class _Segmenter(mx.gluon.HybridBlock):
    """A one-convolution segmenter, crop-sized logits, its weights seeded: built twice, the same network (with
    `relu`, another graph of the same weights and names)."""

    def __init__(self, relu: bool = False):
        super().__init__()
        self.relu = relu
        with self.name_scope():
            self.conv = mx.gluon.nn.Conv2D(4, 3, padding=1, in_channels=3)
        self.initialize()
        self.conv.weight.set_data(mx.nd.array(np.random.default_rng(0).normal(size=(4, 3, 3, 3))))

    def hybrid_forward(self, F, x):
        return F.relu(self.conv(x)) if self.relu else self.conv(x)


def test_an_export_the_cache_holds_is_read_without_building_the_network(segcheck, monkeypatch, pytestconfig):
    """A case's ONNX export in the cache is read back without building the FP32 network (0.75 s a model at 64 px):
    no plugin of this session implements pytest_segcheck_peer_network. A plugin that may replace the network (a
    stand-in, whose implementations pytest cannot list) is still offered it."""
    made = segcheck.case("fcn_resnet101_voc")
    cached = made.onnx
    monkeypatch.setattr(pipeline, "fp32_net", lambda mc, fused=True: pytest.fail("built the FP32 network"))
    assert ModelCase(made.config, segcheck.unavailable, pytestconfig.hook).onnx == cached
    offered = []
    plugin = inner.Hooks(pytest_segcheck_peer_network=lambda case, net: offered.append(net))  # answers None
    monkeypatch.setattr(pipeline, "fp32_net", lambda mc, fused=True: f"the FP32 network, fused={fused}")
    assert ModelCase(made.config, segcheck.unavailable, plugin).onnx == cached
    assert offered == ["the FP32 network, fused=False"]


def test_one_network_exports_to_the_same_file_in_any_process(tmp_path):
    """Gluon names a process's second network fcn1_ where its first was fcn0_: the export names both fcn_, so its
    peer runs (keyed by the file's digest) are found again by a later run, whatever that run built first."""
    nets = [_Segmenter(), _Segmenter()]
    assert nets[0].prefix != nets[1].prefix
    files = [onnx_export.export(net, CROP, tmp_path / f"{k}.onnx").read_bytes() for k, net in enumerate(nets)]
    assert files[0] == files[1]


def test_a_network_a_plugin_hands_over_is_exported_once_per_graph_and_weights(segcheck, monkeypatch, tmp_path):
    """A second network of the same graph and weights, under another per-process prefix, reads the first one's export
    from the cache; one weight changed, another graph of the same weights or another crop exports again."""
    made = segcheck.model_config("fcn_resnet101_voc")
    mc = made.with_(run=made.run.with_(cache_dir=inner.empty_cache(segcheck.run.cache_dir, tmp_path / "cache")))
    nets = [_Segmenter(), _Segmenter()]
    first = pipeline.network_onnx(mc, nets[0])
    real_export = onnx_export.export
    monkeypatch.setattr(onnx_export, "export", lambda *args: pytest.fail("exported again"))
    assert pipeline.network_onnx(mc, nets[1]) == first
    nets[1].conv.weight.set_data(nets[1].conv.weight.data() * 1.001)
    monkeypatch.setattr(onnx_export, "export", real_export)
    changed = pipeline.network_onnx(mc, nets[1])
    assert changed != first and changed.read_bytes() != first.read_bytes()
    other_graph = pipeline.network_onnx(mc, _Segmenter(relu=True))
    other_crop = pipeline.network_onnx(mc.with_(crop_size=48), nets[0])
    assert len({first, changed, other_graph, other_crop}) == 4


def test_the_converter_refuses_without_the_shapes_it_needs(tmp_path):
    """mx2onnx called directly passes no shapes: the converter says so rather than guess a kernel."""
    data = mx.sym.var("data")
    symbol = mx.sym.contrib.BilinearResize2D(mx.sym.contrib.AdaptiveAvgPooling2D(data, output_size=2), height=CROP, width=CROP)
    with pytest.raises(SegcheckError, match=r"input shape is unknown to the converter"):
        mx.onnx.export_model(symbol, {}, [(1, 3, CROP, CROP)], np.float32, str(tmp_path / "direct.onnx"))


@pytest.mark.parametrize("extra, message", [
    ({"precision": "fp32", "quantized": "int8.onnx"}, r"'quantized' \(an INT8 model already made\) is for an int8 request only"),
    ({"predict": "no"}, r"predict must be true or false, got 'no'"),
    ({"precision": "int8", "calib": "c.npy", "quantized": "int8.onnx"}, r"quantized file int8.onnx not found"),
], ids=["quantized-fp32", "predict", "quantized-missing"])
def test_a_reused_runs_request_keys_are_checked(tmp_path, extra, message):
    for name in ("m.onnx", "e.npy", "c.npy"):
        (tmp_path / name).write_bytes(b"")
    asked = {"onnx": "m.onnx", "runtime": "onnxruntime", "precision": "fp32", "eval": "e.npy", "out": "out", **extra}
    with pytest.raises(peer_runner.RequestError, match=message):
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(tmp_path)
            peer_runner.check_request(asked)


def test_an_unknown_runtime_is_the_runners_own_error_line(tmp_path):
    """The runner reads the request before it imports a runtime, so any Python 3.11 serves for this."""
    asked = {"onnx": "m.onnx", "runtime": "tensorrt", "precision": "fp32", "eval": "e.npy", "out": str(tmp_path / "out")}
    with pytest.raises(SegcheckError, match=r"^peer runner for tensorrt fp32 failed: RequestError: unknown runtime 'tensorrt'; "
                                            r"choose one of onnxruntime, openvino") as caught:
        protocol.run(sys.executable, asked, TIMEOUT_S)
    assert not isinstance(caught.value, protocol.PeerCrash)
    assert json.loads((tmp_path / "out" / "answer.json").read_text())["ok"] is False


@pytest.mark.parametrize("script, expected", [
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", r"killed by SIGKILL without an answer"),
    ("import sys\nprint('out of memory, say')\nsys.exit(3)\n", r"exit status 3 without an answer \(out of memory, say\)"),
    ("import time\ntime.sleep(60)\n", r"did not answer within 1 s and was killed"),
], ids=["signal", "exit", "timeout"])
def test_a_runner_that_dies_is_a_peer_crash(tmp_path, script, expected):
    runner = tmp_path / "runner.py"
    runner.write_text(script)
    asked = {"runtime": "onnxruntime", "precision": "int8", "out": str(tmp_path / "out")}
    with pytest.raises(protocol.PeerCrash, match=rf"^peer runner for onnxruntime int8 {expected}"):
        protocol.run(sys.executable, asked, 1 if "sleep" in script else TIMEOUT_S, runner=runner)


def test_a_gate_runs_peer_log_outlives_its_temporary_folder(segcheck, tmp_path, monkeypatch):
    """The runner's output, named in the error, is still there when the error is read (its images' folder is gone)."""
    runner = tmp_path / "runner.py"
    runner.write_text("import sys\nprint('the runtime said why')\nsys.exit(3)\n")
    monkeypatch.setattr(scoring, "usable_python", lambda: Path(sys.executable))
    monkeypatch.setattr(reuse, "run", functools.partial(protocol.run, runner=runner))
    with pytest.raises(protocol.PeerCrash, match=r"exit status 3 without an answer \(the runtime said why\); its log is (\S+)$") as err:
        scoring.gate_run("onnxruntime", tmp_path / "model.onnx", segcheck.case("fcn_resnet101_voc").val, [0],
                        [mx.nd.zeros((1, 3, 8, 8))], tmp_path / "cache", model="fcn_resnet101_voc")
    log = Path(str(err.value).rpartition("its log is ")[2])
    assert log == scoring.peer_log(tmp_path / "cache", "fcn_resnet101_voc", "onnxruntime", "fp32") and "the runtime said why" in log.read_text()


def test_a_stale_answer_is_not_taken_for_a_new_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "answer.json").write_text(json.dumps({"ok": True}))
    runner = tmp_path / "runner.py"
    runner.write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(protocol.PeerCrash, match="exit status 0 without an answer"):
        protocol.run(sys.executable, {"runtime": "openvino", "precision": "fp32", "out": str(out)}, TIMEOUT_S, runner=runner)


def test_write_images_stacks_batches_as_float32(tmp_path):
    first = mx.nd.ones((2, 3, 8, 8))
    path = protocol.write_images(tmp_path / "images.npy", [first, np.zeros((3, 8, 8), dtype=np.float64)])
    images = np.load(path)
    assert images.shape == (3, 3, 8, 8) and images.dtype == np.float32 and images[:2].min() == 1 and images[2].max() == 0
    with pytest.raises(SegcheckError, match=r"images\.npy: image batches must all be N x 3 x H x W of one size"):
        protocol.write_images(tmp_path / "images.npy", [np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 4, 4))])


def test_a_folder_without_a_finished_environment_has_no_peer_python(tmp_path, monkeypatch):
    assert environment.python_of(tmp_path / "absent") is None
    (tmp_path / "half" / "bin").mkdir(parents=True)
    (tmp_path / "half" / "bin" / "python").symlink_to(sys.executable)
    assert environment.python_of(tmp_path / "half") is None  # no marker: install() did not finish
    monkeypatch.setenv(environment.ENV_VARIABLE, str(tmp_path / "chosen"))
    assert environment.environment_folder() == tmp_path / "chosen"
    monkeypatch.delenv(environment.ENV_VARIABLE)
    default = environment.environment_folder()  # outside segcheck's cache, one folder per set of pins
    assert (default.parent.name, default.name) == ("segcheck-peers", environment.requirements_digest()[:16]), default
    assert "segcheck peer install" in environment.missing_message(default)


def test_why_a_folder_is_no_peer_environment_is_said(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "_FOUND", {})
    assert environment.missing_message(tmp_path / "none").startswith(f"no peer environment (ONNX Runtime, OpenVINO) at {tmp_path / 'none'}")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / environment.BUILDING).write_text("")
    assert environment.missing_message(tmp_path / "half").startswith("an unfinished peer environment")
    (tmp_path / "old" / "bin").mkdir(parents=True)
    (tmp_path / "old" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "old" / environment.MARKER).write_text(json.dumps({"requirements": "0" * 64}))
    message = environment.missing_message(tmp_path / "old")
    assert "was built from other pins than peer-requirements.txt" in message and message.endswith(
        f"create it with `segcheck peer install` (or point ${environment.ENV_VARIABLE} at one)")
    (tmp_path / "old" / environment.MARKER).write_text(json.dumps({"requirements": environment.requirements_digest()}))
    environment._FOUND.clear()
    assert "does not import its runtimes (ModuleNotFoundError: No module named '" in environment.missing_message(tmp_path / "old")


def test_install_never_replaces_a_folder_that_is_not_a_virtualenv(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(SegcheckError, match="exists and is not a peer environment that segcheck made, so it is not replaced"):
        network_install.install(tmp_path, out=io.StringIO())
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_the_peer_requirements_pin_the_runtimes():
    pins = {line.split("==")[0] for line in environment.requirements_file().read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    assert {"onnxruntime", "openvino", "numpy", "onnx"} <= pins


def test_the_latency_rule_stops_on_precision_or_time():
    assert peer_runner.t_quantile(2) == 63.657 and peer_runner.t_quantile(29) == 2.763 and peer_runner.t_quantile(30) == 2.576
    timing = peer_runner.latency(lambda x: x, None, {"min_rounds": 4, "max_time_s": 0.05, "precision": 0.02, "warmup": 1})
    assert timing["rounds"] >= 4 and timing["min_ms"] <= timing["median_ms"]


def test_segcheck_peer_where_names_the_command_that_makes_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(environment.ENV_VARIABLE, str(tmp_path / "none"))
    assert commands.main(["peer", "where"]) == 2
    assert capsys.readouterr().err.strip() == (f"segcheck: error: {environment.missing_message(tmp_path / 'none')}")
    with pytest.raises(SystemExit):
        commands.main(["peer", "remove"])
    assert "invalid choice: 'remove'" in capsys.readouterr().err



COUNT_CONVS = """
import json, sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
sys.path.insert(0, sys.argv[1])
import runner as peer_runner

def weight(name):
    return numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), name)

q = [numpy_helper.from_array(np.array(0.1, np.float32), "scale"), numpy_helper.from_array(np.array(0, np.uint8), "zero")]
nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["xq"]),
         helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["xd"]),
         helper.make_node("Conv", ["xd", "w1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2"], ["y"])]
graph = helper.make_graph(nodes, "input-only", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight("w1"), weight("w2")] + q)
onnx.save(helper.make_model(graph), sys.argv[2])
print(json.dumps([peer_runner.quantized_ops(sys.argv[2]), list(peer_runner.quantized_convs(sys.argv[2]))]))
"""


def test_a_peer_model_that_quantizes_only_its_input_is_not_counted_as_quantized(peer_python, tmp_path):
    """A QDQ model whose second convolution takes FP32 input holds quantizing operations (the old check passed it),
    but only one of its two convolutions is quantized: the peers' INT8 check counts convolutions, as MXNet's does."""
    import subprocess

    done = subprocess.run([str(peer_python), "-c", COUNT_CONVS, str(peer_runner.__file__).rpartition("/")[0],
                           str(tmp_path / "input-only.onnx")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    ops, (quantized, convs) = json.loads(done.stdout.strip().splitlines()[-1])
    assert ops == 1 and (quantized, convs) == (1, 2)

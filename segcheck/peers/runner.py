"""Run one ONNX model on ONNX Runtime or OpenVINO for segcheck: `python runner.py REQUEST.json`.

It runs in the peer virtualenv (numpy 2, which mxnet 1.9.1 cannot import), so it imports nothing from segcheck:
only numpy, the runtimes, nncf when there is one, and the standard library. It answers through files in the
request's "out" folder only (answer.json last) and never opens a connection beyond this machine.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import platform
import socket
import statistics
import sys
import time
import traceback
from pathlib import Path

RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")
QUANTIZERS = ("auto", "nncf", "onnxruntime")
DEFAULT_LATENCY = {"min_rounds": 5, "max_time_s": 1.0, "precision": 0.02, "warmup": 1}
# two-sided 99 % quantiles of Student's t by degrees of freedom 1 to 28 (2 to 29 rounds); from 30 rounds on, the normal's
T_99 = (63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012, 2.977, 2.947,
        2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779, 2.771, 2.763)
Z_99 = 2.576
NORMAL_FROM = 30
EXIT_ERROR = 2


class RequestError(ValueError):
    """A request the runner cannot serve as written."""


def loopback(host) -> bool:
    """Whether `host` names this machine: "localhost" or a loopback address literal."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def refuse_network() -> None:
    """Make any Python-level connection beyond this machine fail: a quantizer's telemetry must never leave it."""
    def guarded(connect):
        def checked(self, address):
            host = address[0] if isinstance(address, tuple) else ""
            if self.family in (socket.AF_INET, socket.AF_INET6) and not loopback(host):
                raise ConnectionRefusedError(f"the peer runner opens no connection beyond this machine ({host})")
            return connect(self, address)
        return checked

    socket.socket.connect = guarded(socket.socket.connect)
    socket.socket.connect_ex = guarded(socket.socket.connect_ex)


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_array(path: Path, array) -> Path:
    """An .npy file, written atomically."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return write_atomic(path, buffer.getvalue())


def check_request(request: dict) -> dict:
    """The request with its defaults filled in; RequestError naming the first bad key."""
    if not isinstance(request, dict):
        raise RequestError("the request must be a JSON object")
    for key in ("onnx", "runtime", "precision", "eval", "out"):
        if key not in request:
            raise RequestError(f"the request has no {key!r}")
    if request["runtime"] not in RUNTIMES:
        raise RequestError(f"unknown runtime {request['runtime']!r}; choose one of {', '.join(RUNTIMES)}")
    if request["precision"] not in PRECISIONS:
        raise RequestError(f"unknown precision {request['precision']!r}; choose one of {', '.join(PRECISIONS)}")
    quantizer = request.get("quantizer", "auto")
    if quantizer not in QUANTIZERS or (request["runtime"] == "onnxruntime" and quantizer == "nncf"):
        raise RequestError(f"quantizer {quantizer!r} cannot serve {request['runtime']}; choose one of {', '.join(QUANTIZERS)}")
    if request["precision"] == "int8" and not request.get("calib"):
        raise RequestError("an int8 request needs 'calib', an .npy of calibration images")
    if request.get("quantized") is not None and request["precision"] != "int8":
        raise RequestError("'quantized' (an INT8 model already made) is for an int8 request only")
    if not isinstance(request.get("predict", True), bool):
        raise RequestError(f"predict must be true or false, got {request['predict']!r}")
    files = ("onnx", "eval") + (("calib",) if request["precision"] == "int8" else ())
    for key in files + (("quantized",) if request.get("quantized") is not None else ()):
        if not Path(request[key]).is_file():
            raise RequestError(f"{key} file {request[key]} not found")
    threads = request.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise RequestError(f"threads must be a positive integer, got {threads!r}")
    spec = dict(DEFAULT_LATENCY, **(request.get("latency") or {}))
    if spec["min_rounds"] < 2 or spec["max_time_s"] <= 0 or spec["precision"] <= 0 or spec["warmup"] < 0:
        raise RequestError(f"latency settings {spec} need min_rounds >= 2, max_time_s > 0, precision > 0, warmup >= 0")
    return dict(request, quantizer=quantizer, threads=threads, latency=spec)


def load_images(path, what: str):
    """An N x 3 x H x W float32 array from an .npy file, mapped rather than read (a real tier's split is large)."""
    import numpy as np

    images = np.load(path, allow_pickle=False, mmap_mode="r")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1 or images.dtype != np.float32:
        raise RequestError(f"{what} file {path} holds a {images.dtype} array of shape {images.shape}, "
                           "not N x 3 x H x W float32 images")
    return images


def input_name(onnx_path) -> str:
    """The model's only graph input."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    weights = {w.name for w in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in weights]
    if len(names) != 1:
        raise RequestError(f"{onnx_path} takes {len(names)} inputs ({', '.join(names[:3])}); the runner feeds one image batch")
    return names[0]


def quantize_with_onnxruntime(onnx_path, calib, out: Path) -> Path:
    """ONNX Runtime's static INT8 quantization in QDQ format (QUInt8 activations, per-channel QInt8 weights),
    calibrated one image at a time, after its pre-processing (BatchNorm folded into the convolutions)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = input_name(onnx_path)

    class Images(CalibrationDataReader):
        """The calibration images, one batch of one at a time."""

        def __init__(self):
            self.left = iter(range(len(calib)))

        def get_next(self):
            i = next(self.left, None)
            return None if i is None else {name: np.ascontiguousarray(calib[i:i + 1])}

    prepared = out / "fp32-prepared.onnx"
    quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
    target = out / "int8.onnx"
    staged = out / ".int8.onnx.tmp"
    quantize_static(str(prepared), str(staged), Images(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    os.replace(staged, target)
    prepared.unlink()
    return target


def nncf_module():
    """nncf with its telemetry off, or None where it is not installed."""
    os.environ["NNCF_CI"] = "1"  # nncf then sends no telemetry; it means nothing else to nncf
    try:
        import nncf
    except ImportError:
        return None
    return nncf


def ort_model(path, threads: int):
    """An ONNX Runtime session on the CPU as a function of one input batch, and its settings."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name

    def infer(x):
        return session.run([output], {name: x})[0]

    return infer, {"intra_op_num_threads": threads, "providers": session.get_providers()}


def property_text(value) -> str:
    """An OpenVINO property as text: an element type by its short name (f32), anything else as str() gives it."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def ov_model(model, threads: int):
    """An OpenVINO model compiled for the CPU at FP32 inference precision (the CPU plugin would take bf16 where
    the processor has it) as a function of one input batch, and the settings in force."""
    import openvino as ov

    core = ov.Core()
    if not isinstance(model, ov.Model):
        model = core.read_model(str(model))
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def infer(x):
        request.infer([x])
        return request.get_output_tensor(0).data.copy()

    keys = ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS")
    settings = {key: property_text(compiled.get_property(key)) for key in keys}
    settings["device"] = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
    settings["capabilities"] = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    return infer, settings


def prepare(request: dict, out: Path):
    """The model to run (quantized first for int8, unless the request names the INT8 model an earlier request made)
    as (infer function, quantizer, settings, model path)."""
    runtime, threads = request["runtime"], request["threads"]
    if request["precision"] == "fp32":
        quantizer, model = "none", request["onnx"]
    elif request.get("quantized") is not None:
        quantizer, model = "made earlier", Path(request["quantized"])
    elif runtime == "openvino" and request["quantizer"] in ("auto", "nncf") and nncf_module() is not None:
        model, quantizer = quantize_with_nncf(request, out), f"nncf {nncf_module().__version__}"
    elif request["quantizer"] == "nncf":
        raise RequestError("quantizer 'nncf' was asked for, but nncf is not installed in the peer environment")
    else:
        import onnxruntime

        calib = load_images(request["calib"], "calib")
        model = quantize_with_onnxruntime(request["onnx"], calib, out)
        quantizer = f"onnxruntime {onnxruntime.__version__} quantize_static (QDQ)"
    if runtime == "onnxruntime":
        infer, settings = ort_model(model, threads)
    else:
        infer, settings = ov_model(model, threads)
    return infer, quantizer, settings, model


def quantize_with_nncf(request: dict, out: Path):
    """NNCF's post-training INT8 quantization of the OpenVINO model over all calibration images, saved as out/int8.xml."""
    import numpy as np
    import openvino as ov

    nncf = nncf_module()
    calib = load_images(request["calib"], "calib")
    model = ov.Core().read_model(str(request["onnx"]))
    dataset = nncf.Dataset([np.ascontiguousarray(calib[i:i + 1]) for i in range(len(calib))])
    quantized = nncf.quantize(model, dataset, subset_size=len(calib))
    ov.save_model(quantized, str(out / "int8.xml"))
    return out / "int8.xml"


def quantized_ops(model) -> int:
    """How many quantizing operations the INT8 model holds: QuantizeLinear nodes of an ONNX (QDQ) file, FakeQuantize
    operations of an OpenVINO model; none means nothing was quantized."""
    if str(model).endswith(".xml"):
        import openvino as ov

        return sum(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(str(model)).get_ops())
    import onnx

    return sum(node.op_type == "QuantizeLinear" for node in onnx.load(str(model), load_external_data=False).graph.node)


# Operations that move quantized values without changing them: a convolution behind them takes quantized input (a
# concatenation where each of its inputs is quantized)
PASS_THROUGH = ("MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze")


def _quantized(node, kind, inputs, marker: str) -> bool:
    """Whether `node`'s output is quantized: made by `marker`, or moved unchanged from quantized inputs."""
    if kind(node) == marker:
        return True
    if kind(node) in PASS_THROUGH:
        return _quantized(inputs(node)[0], kind, inputs, marker)
    if kind(node) == "Concat":
        return all(_quantized(i, kind, inputs, marker) for i in inputs(node))
    return False


def quantized_convs(model) -> tuple[int, int]:
    """(convolutions whose input is quantized, convolutions) of the INT8 model, as MXNet's side counts its INT8 share:
    an ONNX (QDQ) Conv fed by a DequantizeLinear, an OpenVINO Convolution fed by a FakeQuantize, either through
    operations that only move values (PASS_THROUGH, concatenations: NNCF quantizes a max pool's input, not its output,
    and the inputs of a concatenation)."""
    if str(model).endswith(".xml"):
        import openvino as ov

        convs = [op for op in ov.Core().read_model(str(model)).get_ops()
                 if op.get_type_name() in ("Convolution", "GroupConvolution")]
        kind, inputs = (lambda node: node.get_type_name()), (lambda node: [v.get_node() for v in node.input_values()])
        return sum(_quantized(inputs(op)[0], kind, inputs, "FakeQuantize") for op in convs), len(convs)
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    made_by = {out: node for node in graph.node for out in node.output}
    kind = lambda node: node.op_type if node is not None else None  # noqa: E731 - a graph input has no node
    inputs = lambda node: [made_by.get(name) for name in node.input]  # noqa: E731
    convs = [node for node in graph.node if node.op_type == "Conv"]
    return sum(_quantized(made_by.get(node.input[0]), kind, inputs, "DequantizeLinear") for node in convs), len(convs)


def t_quantile(rounds: int) -> float:
    """The two-sided 99 % quantile for a mean over `rounds` timings."""
    if rounds < 2:
        raise ValueError(f"a confidence interval needs at least 2 rounds, not {rounds}")
    return T_99[rounds - 2] if rounds < NORMAL_FROM else Z_99


def latency(infer, x, spec: dict) -> dict:
    """Time `infer(x)` after spec["warmup"] untimed runs, for at least spec["min_rounds"] rounds and until the mean is
    known to +-spec["precision"] (99 % confidence) or spec["max_time_s"] have passed since timing began."""
    for _ in range(int(spec["warmup"])):
        infer(x)
    times, mean, m2 = [], 0.0, 0.0
    began = time.perf_counter()
    while True:
        started = time.perf_counter()
        infer(x)
        ended = time.perf_counter()
        times.append(ended - started)
        n = len(times)
        delta = times[-1] - mean  # Welford's running mean and variance: each round costs the same
        mean += delta / n
        m2 += delta * (times[-1] - mean)
        if n < spec["min_rounds"]:
            continue
        if mean > 0 and t_quantile(n) * math.sqrt(m2 / (n - 1) / n) / mean <= spec["precision"]:
            break
        if ended - began >= spec["max_time_s"]:
            break
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    median = statistics.median(times)
    return {"rounds": len(times), "min_ms": round(1000 * min(times), 4), "median_ms": round(1000 * median, 4),
            "iqr_pct": round(100 * (q3 - q1) / median, 3) if median > 0 else 0.0}


def versions(runtime: str, quantizer: str) -> dict:
    """The versions of what ran."""
    import numpy as np

    found = {"python": platform.python_version(), "numpy": np.__version__}
    if runtime == "onnxruntime" or "onnxruntime" in quantizer:
        import onnxruntime

        found["onnxruntime"] = onnxruntime.__version__
    if runtime == "openvino":
        import openvino

        found["openvino"] = openvino.get_version()
    if quantizer.startswith("nncf"):
        found["nncf"] = nncf_module().__version__
    return found


def serve(request: dict) -> dict:
    """Carry out a checked request: predictions, the first image's logits, the INT8 model's quantized operations and
    the latency, as the answer (the latency alone where the request says predict: false: a reused run's, whose
    answer the cache holds)."""
    import numpy as np

    out = Path(request["out"])
    images = load_images(request["eval"], "eval")
    infer, quantizer, settings, model = prepare(request, out)
    predictions, predict = None, request.get("predict", True)
    for i in range(len(images) if predict else 0):
        logits = np.asarray(infer(np.ascontiguousarray(images[i:i + 1])))
        if logits.ndim != 4 or logits.shape[0] != 1 or logits.shape[2:] != images.shape[2:]:
            raise RequestError(f"the model gives {logits.shape} logits for a {images[i:i + 1].shape} batch, "
                               "not 1 x classes x H x W")
        if logits.shape[1] > 256:
            raise RequestError(f"the model predicts {logits.shape[1]} classes, more than a uint8 prediction holds")
        if predictions is None:
            predictions = np.empty((len(images),) + images.shape[2:], dtype=np.uint8)
            save_array(out / "logits0.npy", logits[0].astype(np.float32))
        predictions[i] = logits[0].argmax(axis=0)
    if predictions is not None:
        save_array(out / "predictions.npy", predictions)
    if not predict:
        ops, convs = None, None  # a reused run's: the cache holds its counts
    elif request["precision"] == "int8":
        ops, convs = quantized_ops(model), list(quantized_convs(model))
    else:
        ops, convs = 0, [0, 0]
    return {"ok": True, "runtime": request["runtime"], "precision": request["precision"], "quantizer": quantizer,
            "versions": versions(request["runtime"], quantizer), "settings": settings, "model": str(model),
            "latency": latency(infer, np.ascontiguousarray(images[:1]), request["latency"]),
            "quantized_ops": ops, "quantized_convs": convs,
            "predictions": None if predictions is None else str(out / "predictions.npy"),
            "logits0": None if predictions is None else str(out / "logits0.npy")}


def answer(out: Path, content: dict) -> None:
    """Write the answer file, last of all the runner's files."""
    write_atomic(out / "answer.json", (json.dumps(content, indent=2) + "\n").encode("utf-8"))


def main(argv=None) -> int:
    """Serve the request file named on the command line; exit 0 with an answer, 2 with an error answer."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python runner.py REQUEST.json", file=sys.stderr)
        return EXIT_ERROR
    refuse_network()
    try:
        request = json.loads(Path(argv[0]).read_text())
        out = Path(request["out"]) if isinstance(request, dict) and "out" in request else Path(argv[0]).parent
        out.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        print(f"cannot read the request {argv[0]}: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_ERROR
    try:
        answer(out, serve(check_request(request)))
    except Exception as err:
        traceback.print_exc()
        first = (str(err).strip().splitlines() or [""])[0]
        answer(out, {"ok": False, "error": f"{type(err).__name__}: {first}"})
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())

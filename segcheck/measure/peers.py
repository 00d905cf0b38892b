"""The peer runtimes (ONNX Runtime, OpenVINO) from segcheck's side: their virtualenv, and runs of peer_runner.py in it.

The peers need numpy >= 1.24, which mxnet 1.9.1 cannot import, so they never load into this process: segcheck
writes images and a request to files, runs peer_runner.py with the peer interpreter, and reads its answer file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import atomic
from ..data import loaders
from ..errors import MissingResource, SegcheckError
from .environment import threads
from .latency import PRECISION

ENV_VARIABLE = "SEGCHECK_PEER_ENV"
INSTALL_COMMAND = "segcheck peer install"
RUNNER = Path(__file__).with_name("peer_runner.py")
REQUIREMENTS = Path(__file__).with_name("peer-requirements.txt")  # the peer environment's pins, shipped in the package
MARKER = "segcheck-peer.json"  # written last by install(): a folder without it is no peer environment
BUILDING = "segcheck-peer.building"  # written first by install(): a folder with it is segcheck's to replace
LATENCY = {"min_rounds": 5, "max_time_s": 1.0, "precision": PRECISION, "warmup": 1}
CHECK = "import numpy, onnxruntime, onnxruntime.quantization, openvino; print(numpy.__version__)"
CHECK_TIMEOUT_S = 120

# what python_of found, by folder, for this process: importing the runtimes takes a second or two
_FOUND: dict = {}


class PeerCrash(SegcheckError):
    """The peer runner died (a signal, a time-out) or exited without writing its answer."""


def environment_folder(cache_dir) -> Path:
    """Where the peer virtualenv lives: $SEGCHECK_PEER_ENV, else <cache_dir>/peer-env."""
    chosen = os.environ.get(ENV_VARIABLE)
    return Path(chosen).expanduser() if chosen else Path(cache_dir) / "peer-env"


def interpreter(folder: Path) -> Path:
    """The virtualenv's own python."""
    return Path(folder) / "bin" / "python"


def requirements_file() -> Path:
    """The pinned requirements of the peer environment."""
    if not REQUIREMENTS.is_file():
        raise SegcheckError(f"{REQUIREMENTS}: the peer requirements are missing from this segcheck installation; "
                            "reinstall segcheck (pip install -e . from its repository)")
    return REQUIREMENTS


def requirements_digest() -> str:
    """sha256 of the pinned requirements' package lines, so that an environment built from other pins is stale."""
    lines = [line.strip() for line in requirements_file().read_text().splitlines()]
    return hashlib.sha256("\n".join(line for line in lines if line and not line.startswith("#")).encode()).hexdigest()


def python_of(folder) -> Path | None:
    """The peer interpreter in `folder` when install() finished it for the current pins and it imports the
    runtimes (checked once per process, in a subprocess), else None (missing_message says why)."""
    return _found(folder)[0]


def _found(folder) -> tuple:
    folder = Path(folder).expanduser().resolve()
    if folder not in _FOUND:
        _FOUND[folder] = _check(folder)
    return _FOUND[folder]


def _check(folder: Path) -> tuple:
    """(interpreter, "") for a usable environment, else (None, why not)."""
    python = interpreter(folder)
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        unfinished = (folder / BUILDING).is_file()
        return None, f"{'an unfinished' if unfinished else 'no'} peer environment (ONNX Runtime, OpenVINO) at {folder}"
    if not isinstance(marker, dict) or marker.get("requirements") != requirements_digest():
        return None, f"the peer environment at {folder} was built from other pins than {REQUIREMENTS.name}"
    if not python.exists():
        return None, f"the peer environment at {folder} has no {python.relative_to(folder)}"
    try:
        done = subprocess.run([str(python), "-I", "-c", CHECK], capture_output=True, text=True, timeout=CHECK_TIMEOUT_S,
                              env=_peer_env())
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"the peer environment at {folder} does not start ({type(err).__name__})"
    if done.returncode != 0:
        last = _last_text(done.stderr + done.stdout)
        return None, f"the peer environment at {folder} does not import its runtimes ({last or f'exit status {done.returncode}'})"
    return python, ""


def missing_message(folder) -> str:
    """Why a test or command cannot run the peers, and the command that fixes it."""
    why = _found(folder)[1] or f"no peer environment (ONNX Runtime, OpenVINO) at {folder}"
    return f"{why}; create it with `{INSTALL_COMMAND}` (or point ${ENV_VARIABLE} at one)"


def base_python() -> str:
    """The interpreter to build the virtualenv with: this one's base interpreter (segcheck needs Python 3.11)."""
    for candidate in (getattr(sys, "_base_executable", ""), shutil.which("python3.11"), sys.executable):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SegcheckError("no python3.11 to build the peer environment with; install Python 3.11")


def _peer_env() -> dict:
    """This process's environment without what would make the peer interpreter import this one's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def install(folder, out=sys.stdout) -> Path:
    """Create the peer virtualenv in `folder` from the pinned requirements and return its interpreter.

    A half-made environment is never taken for a made one: the marker file that python_of looks for is written
    last. Only a folder that is empty or that install() made is replaced; any other is left alone.
    """
    folder = Path(folder).expanduser().resolve()
    requirements = requirements_file()
    atomic.ensure_writable(folder.parent, f"choose another folder with ${ENV_VARIABLE}")
    _FOUND.pop(folder, None)
    if python_of(folder) is not None:
        print(f"{folder}: the peer environment is already there (remove the folder to build it again)", file=out)
        return interpreter(folder)
    _FOUND.pop(folder, None)
    if folder.exists():
        ours = (folder / MARKER).is_file() or (folder / BUILDING).is_file()
        if any(folder.iterdir()) and not ours:
            raise SegcheckError(f"{folder}: exists and is not a peer environment that segcheck made, so it is not replaced; "
                                f"choose another folder with ${ENV_VARIABLE} or empty it")
        print(f"{folder}: removing the unfinished or outdated peer environment", file=out)
        shutil.rmtree(folder)
    folder.mkdir()
    (folder / BUILDING).write_text(f"segcheck is building this peer environment: unfinished until {MARKER} exists\n")
    steps = ([base_python(), "-m", "venv", str(folder)],
             [str(interpreter(folder)), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
              "-r", str(requirements)])
    for step in steps:
        print(f"$ {' '.join(step)}", file=out)
        done = subprocess.run(step, capture_output=True, text=True, env=_peer_env())
        if done.returncode != 0:
            lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("ERROR")] or lines or [f"exit status {done.returncode}"]
            raise SegcheckError(f"{folder}: creating the peer environment failed at `{' '.join(step[:4])} ...` "
                                f"({errors[-1]}); fix that and run `{INSTALL_COMMAND}` again")
    atomic.write_json(folder / MARKER, {"requirements": requirements_digest(), "from": str(requirements)})
    (folder / BUILDING).unlink()
    python = python_of(folder)
    if python is None:
        raise SegcheckError(f"{folder}: the peer environment was installed but does not import its runtimes; "
                            f"run `{interpreter(folder)} -c \"{CHECK}\"` to see why")
    print(f"peer environment ready: {python}", file=out)
    return python


def write_images(path, batches) -> Path:
    """Stack image batches (NDArrays or arrays, N x 3 x H x W, or single 3 x H x W images) into one float32 .npy, atomically."""
    arrays = []
    for batch in batches:
        array = np.asarray(batch.asnumpy() if hasattr(batch, "asnumpy") else batch, dtype=np.float32)
        arrays.append(array[None] if array.ndim == 3 else array)
    if not arrays:
        raise SegcheckError(f"{path}: no images to write")
    shapes = {a.shape[1:] for a in arrays}
    if any(a.ndim != 4 or a.shape[1] != 3 for a in arrays) or len(shapes) != 1:
        raise SegcheckError(f"{path}: image batches must all be N x 3 x H x W of one size, got {sorted(shapes)}")
    buffer = io.BytesIO()
    np.save(buffer, np.concatenate(arrays), allow_pickle=False)
    return atomic.write_bytes(path, buffer.getvalue())


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _last_text(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _last_line(log: Path) -> str:
    try:
        return _last_text(log.read_text(errors="replace"))
    except OSError:
        return ""


def run(python, request: dict, timeout_s: float, runner=RUNNER, log: Path | None = None) -> dict:
    """Run the peer runner on `request` (written to <out>/request.json) with interpreter `python` and return its answer;
    its output goes to `log` (default <out>/runner.log), which the error messages name.

    PeerCrash when the runner dies by a signal, outlives `timeout_s` or exits without an answer;
    SegcheckError with the runner's own error line when it answers that it failed.
    """
    out = Path(request["out"])
    what = f"{request.get('runtime', '?')} {request.get('precision', '?')}"
    atomic.ensure_writable(out, "choose a writable folder for the peer's answer")
    answer_file, log = out / "answer.json", Path(log) if log else out / "runner.log"
    atomic.ensure_writable(log.parent, "choose a writable segcheck cache (--segcheck-cache) for the peer's log")
    answer_file.unlink(missing_ok=True)
    request_file = atomic.write_json(out / "request.json", {k: str(v) if isinstance(v, Path) else v for k, v in request.items()})
    with open(log, "wb") as handle:
        try:
            done = subprocess.run([str(python), "-I", str(runner), str(request_file)], stdout=handle, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=_peer_env(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise PeerCrash(f"peer runner for {what} did not answer within {timeout_s:g} s and was killed; "
                            f"its log is {log}") from None
        except OSError as err:
            raise PeerCrash(f"peer runner for {what} could not start with {python} ({err.strerror}); "
                            f"recreate the peer environment with `{INSTALL_COMMAND}`") from None
    try:
        answer = json.loads(answer_file.read_text())
    except (OSError, ValueError):
        answer = None
    if isinstance(answer, dict) and not answer.get("ok") and done.returncode >= 0:
        raise SegcheckError(f"peer runner for {what} failed: {answer.get('error', 'no error given')}; its log is {log}")
    if done.returncode != 0 or not isinstance(answer, dict):
        last = _last_line(log)
        when = "after answering" if isinstance(answer, dict) else "without an answer"
        raise PeerCrash(f"peer runner for {what} {_exit_status(done.returncode)} {when}"
                        f"{f' ({last})' if last else ''}; its log is {log}")
    return answer


AGREEMENT_IMAGES = 48  # the images whose FP32 predictions are compared with MXNet's, pixel by pixel
QUANTIZER = {"onnxruntime": "onnxruntime", "openvino": "nncf"}  # each runtime's own quantizer, asked for by name
ANSWER_KEYS = ("predictions", "latency", "quantizer", "versions", "quantized_ops", "quantized_convs")


class PeerMissing(MissingResource):
    """No usable peer environment: the peer cases skip, naming the command that makes one."""


class PeerEnvironmentMissing(PeerMissing):
    """No usable peer virtualenv (none, unfinished, other pins, runtimes that do not import): a CI gate whose models
    name peers fails, since its peer cases would compare nothing (an MXNet without an exporter, which no install can
    fix here, still skips)."""


@dataclass(frozen=True)
class PeerRun:
    """A model gated on a peer runtime: its FP32 and INT8 evaluations (by segcheck's own metrics, from the peer's
    predictions), its latency answers, what quantized it and how many quantizing operations that left."""

    runtime: str
    evaluations: dict  # precision -> measure.evaluate.Evaluation
    latency: dict  # precision -> {"rounds", "min_ms", "median_ms", "iqr_pct"}
    quantizer: str  # the quantizer and the versions that ran, e.g. "nncf 3.4.0 (openvino 2026.4.1, nncf 3.4.0)"
    quantized_ops: int  # QuantizeLinear / FakeQuantize operations of the INT8 model: 0 means nothing was quantized
    fp32_predictions: np.ndarray  # the FP32 argmax of the first AGREEMENT_IMAGES images evaluated, to compare with MXNet's
    quantized_convs: tuple = (0, 0)  # (convolutions fed quantized input, convolutions) of the INT8 model


def _eval_images(split, indices, folder: Path, skip_bad: bool) -> tuple:
    """The images at `indices` as one float32 .npy written image by image (a real tier's val split does not fit in
    memory twice), their labels as int16 (-1, 0..254, 255), their ids and the ids left out (skip_bad)."""
    images, skipped = folder / "eval.npy", []
    array = np.lib.format.open_memmap(images, mode="w+", dtype=np.float32,
                                      shape=(len(indices), 3, split.crop_size, split.crop_size))
    labels, ids = [], []
    for x, y, batch_ids in loaders.batches(split, indices, 1, skip_bad, skipped):
        array[len(ids)] = x.asnumpy()[0]
        labels.append(y[0].astype(np.int16))
        ids.extend(batch_ids)
    array.flush()
    if skipped:
        kept = np.lib.format.open_memmap(folder / "kept.npy", mode="w+", dtype=np.float32, shape=(len(ids),) + array.shape[1:])
        kept[:] = array[:len(ids)]
        kept.flush()
        del kept
        os.replace(folder / "kept.npy", images)
    del array
    if not ids:
        raise SegcheckError(f"{split.source}: every image of the {split.split} split was left out; nothing to run the peer on")
    return images, labels, tuple(ids), skipped


def _checked(answer: dict, what: str, count: int) -> np.ndarray:
    """The predictions of a runner's answer, which must hold every key and one prediction per image sent."""
    missing = [k for k in ANSWER_KEYS if k not in answer]
    if missing:
        raise PeerCrash(f"peer runner for {what} answered without {', '.join(missing)}; recreate the peer environment "
                        f"with `{INSTALL_COMMAND}`")
    try:
        predictions = np.load(answer["predictions"], allow_pickle=False)
    except (OSError, ValueError) as err:
        raise PeerCrash(f"peer runner for {what}: its predictions {answer['predictions']} cannot be read ({err})") from None
    if predictions.shape[0] != count:
        raise PeerCrash(f"peer runner for {what} predicted {predictions.shape[0]} images of the {count} it was sent")
    return predictions


def usable_python(cache_dir) -> Path:
    """The peer environment's python; PeerMissing, saying why and how to make one, where it is not usable."""
    folder = environment_folder(cache_dir)
    python = python_of(folder)
    if python is None:
        raise PeerEnvironmentMissing(missing_message(folder))
    return python


def peer_log(cache_dir, model: str, runtime: str, precision: str) -> Path:
    """Where a gate run keeps the peer runner's output for `model`, past the temporary folder of its images (the
    last run's)."""
    return Path(cache_dir) / "peer-logs" / f"{model}-{runtime}-{precision}.log"


def gate_run(runtime: str, onnx: Path, split, indices, calibration, cache_dir, latency: dict = LATENCY,
             skip_bad: bool = False, timeout_s: float = 3600.0, model: str = "model") -> PeerRun:
    """The peer `runtime` on the exported model `onnx`: FP32 and INT8 (quantized by the runtime's own quantizer on the
    `calibration` image batches) over `split`'s samples at `indices`, their predictions judged here by segcheck's
    metrics; `latency` is the adaptive-rounds rule the runner times with."""
    from .evaluate import Accumulator

    python = usable_python(cache_dir)
    with tempfile.TemporaryDirectory(prefix=f"segcheck-peer-{runtime}-") as tmp:
        images, labels, ids, skipped = _eval_images(split, indices, Path(tmp), skip_bad)
        calib = write_images(Path(tmp) / "calib.npy", calibration)
        evaluations, timing, answers = {}, {}, {}
        for precision in ("fp32", "int8"):
            what = f"{runtime} {precision}"
            answer = run(python, {"onnx": onnx, "runtime": runtime, "precision": precision, "eval": images, "calib": calib,
                                  "quantizer": QUANTIZER[runtime], "latency": latency, "threads": threads(),
                                  "out": Path(tmp) / precision}, timeout_s, log=peer_log(cache_dir, model, runtime, precision))
            predictions = _checked(answer, what, len(ids))
            acc = Accumulator(split.num_classes, split.split)
            for pred, label, image_id in zip(predictions, labels, ids):
                acc.add(pred.astype(np.int64), label.astype(np.int64), image_id)
            evaluations[precision], timing[precision], answers[precision] = acc.evaluation(skipped), answer["latency"], answer
            if precision == "fp32":
                first = predictions[:AGREEMENT_IMAGES].copy()
    int8 = answers["int8"]
    versions = ", ".join(f"{k} {v}" for k, v in int8["versions"].items())
    return PeerRun(runtime, evaluations, timing, f"{int8['quantizer']} ({versions})", int(int8["quantized_ops"]), first,
                   tuple(int(n) for n in int8["quantized_convs"]))

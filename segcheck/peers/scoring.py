"""A model gated on a peer runtime: the images sent, the runner's answers checked, and its predictions scored by
segcheck's own metrics (measure.evaluate), FP32 and INT8."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import loaders
from ..errors import SegcheckError
from ..measure.environment import threads
from ..measure.latency import PRECISION
from . import reuse
from .environment import INSTALL_COMMAND, usable_python
from .protocol import PeerCrash, write_images

LATENCY = {"min_rounds": 5, "max_time_s": 1.0, "precision": PRECISION, "warmup": 1}
AGREEMENT_IMAGES = 48  # the images whose FP32 predictions are compared with MXNet's, pixel by pixel
QUANTIZER = {"onnxruntime": "onnxruntime", "openvino": "nncf"}  # each runtime's own quantizer, asked for by name
ANSWER_KEYS = ("predictions", "latency", "quantizer", "versions", "quantized_ops", "quantized_convs")


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


def peer_log(cache_dir, model: str, runtime: str, precision: str) -> Path:
    """Where a gate run keeps the peer runner's output for `model`, past the temporary folder of its images (the
    last run's)."""
    return Path(cache_dir) / "peer-logs" / f"{model}-{runtime}-{precision}.log"


def gate_run(runtime: str, onnx: Path, split, indices, calibration, cache_dir, latency: dict = LATENCY,
             skip_bad: bool = False, timeout_s: float = 3600.0, model: str = "model") -> PeerRun:
    """The peer `runtime` on the exported model `onnx`: FP32 and INT8 (quantized by the runtime's own quantizer on the
    `calibration` image batches) over `split`'s samples at `indices`, their predictions judged here by segcheck's
    metrics; `latency` is the adaptive-rounds rule the runner times with. Each precision's run is read from and kept
    in the cache (peers.reuse)."""
    from ..measure.evaluate import Accumulator

    python = usable_python()
    with tempfile.TemporaryDirectory(prefix=f"segcheck-peer-{runtime}-") as tmp:
        images, labels, ids, skipped = _eval_images(split, indices, Path(tmp), skip_bad)
        calib = write_images(Path(tmp) / "calib.npy", calibration)
        evaluations, timing, answers = {}, {}, {}
        for precision in ("fp32", "int8"):
            what = f"{runtime} {precision}"
            request = {"onnx": onnx, "runtime": runtime, "precision": precision, "eval": images, "calib": calib,
                       "quantizer": QUANTIZER[runtime], "latency": latency, "threads": threads(), "out": Path(tmp) / precision}
            answer = reuse.answer(python, request, timeout_s, cache_dir, peer_log(cache_dir, model, runtime, precision))
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

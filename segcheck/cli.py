"""The segcheck command: the seed's test.py flags, and `segcheck report`.

Each command of the GluonCV INT8 tutorial works with `python test.py` replaced by `segcheck`:
FP32 or INT8 evaluation (--eval) or dummy-data latency (--benchmark), calibration writing
./model/<name>-quantized-<mode>-symbol.json / -0000.params (--calibration), and the exported model
(--deploy --model-prefix). With --pretrained the GluonCV weights and real datasets are used (an
error where they are absent); without it, the seeded models of the synthetic tier.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .catalog import ARCHITECTURES, BACKBONES, DATASET_ALIASES, ModelSpec, dataset_key
from .errors import SegcheckError
from .models.quantize import CALIB_MODES, QUANTIZED_DTYPES


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def seed_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segcheck", description="The GluonCV INT8 segmentation workflow (test.py flags); "
        "`segcheck report` prints the Performance table of the last pytest run.")
    p.add_argument("--model", default="fcn", choices=ARCHITECTURES)
    p.add_argument("--backbone", default="resnet101", choices=BACKBONES)
    p.add_argument("--dataset", choices=sorted(DATASET_ALIASES), help="default pascal_voc (with --deploy: from the prefix)")
    p.add_argument("--mode", default="val", help="val: short side to the crop, centre crop (testval is not supported)")
    p.add_argument("--eval", action="store_true", help="evaluate pixAcc / mIoU on the val split")
    p.add_argument("--batch-size", type=_positive, default=1)
    p.add_argument("--pretrained", action="store_true", help="GluonCV's pretrained weights and the real datasets")
    p.add_argument("--benchmark", action="store_true", help="latency on dummy data, then exit")
    p.add_argument("--num-iterations", type=_positive, default=20, help="benchmark iterations (after 5 dry runs)")
    p.add_argument("--calibration", action="store_true", help="calibrate and export the INT8 model to ./model/")
    p.add_argument("--num-calib-batches", type=_positive, help="default 5 with --pretrained (the seed), 2 otherwise")
    p.add_argument("--calib-batch-size", type=_positive, help="images per calibration batch: default 32 with --pretrained, 16 otherwise")
    p.add_argument("--calib-mode", choices=CALIB_MODES, help="default naive")
    p.add_argument("--calib-split", help="calibration split (default train; 'val' reproduces the seed)")
    p.add_argument("--quantized-dtype", choices=QUANTIZED_DTYPES, help="default auto")
    p.add_argument("--quantized", action="store_true", help="use the calibrated INT8 model")
    p.add_argument("--deploy", action="store_true", help="load an exported model from --model-prefix")
    p.add_argument("--model-prefix", help="exported model prefix (<prefix>-symbol.json, <prefix>-0000.params)")
    p.add_argument("--crop-size", "--image-shape", dest="crop_size", type=_positive,
                   help="input size (default 480 with --pretrained, 64 otherwise; read from the model with --deploy)")
    p.add_argument("--num-images", type=_positive, help="evaluate only the first N val images")
    p.add_argument("--cache-dir", help="model and data cache (default $SEGCHECK_CACHE_DIR or ~/.cache/segcheck)")
    p.add_argument("--voc-root")
    p.add_argument("--coco-root")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable samples with a warning")
    p.add_argument("--workers", type=int, default=0, help="accepted for compatibility; loading is in-process")
    return p


def report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segcheck report", description="The seed's Performance table from a pytest run.")
    p.add_argument("--results", help="results file (default <cache-dir>/last-run.json, written by pytest)")
    p.add_argument("--cache-dir")
    p.add_argument("--json", dest="json_out", help="also write the results as JSON here")
    p.add_argument("--png", help="also draw them as a PNG chart here")
    p.add_argument("--baseline", choices=("real", "synthetic"), help="print the baseline table's rows for a tier instead")
    p.add_argument("--baselines", default=None, help="baseline file (default: baselines.json beside the package)")
    return p


@dataclass(frozen=True)
class Plan:
    """What a seed command line asks for."""

    action: str  # benchmark | calibrate | evaluate
    precision: str  # fp32 | int8
    spec: ModelSpec
    tier: str
    args: argparse.Namespace


def plan(argv) -> Plan:
    parser = seed_parser()
    args = parser.parse_args(argv)
    if args.mode != "val":
        parser.error(f"--mode {args.mode} is not supported: segcheck follows the seed's mode=val protocol")
    if args.deploy and not args.model_prefix:
        parser.error("--deploy needs --model-prefix (e.g. ./model/fcn_resnet101_voc-quantized-naive)")
    spec = ModelSpec(args.model, args.backbone, dataset_key(args.dataset or "voc"))
    named = _spec_from_prefix(args.model_prefix) if args.deploy else None
    if named:  # the seed's deploy command names the model only through the prefix
        spec = ModelSpec(named.arch, named.backbone, dataset_key(args.dataset) if args.dataset else named.dataset)
    action = "benchmark" if args.benchmark else "calibrate" if args.calibration else "evaluate"
    precision = "int8" if (args.quantized or args.calibration) else "fp32"
    return Plan(action, precision, spec, "real" if args.pretrained else "synthetic", args)


def _spec_from_prefix(prefix: str) -> ModelSpec | None:
    """fcn_resnet101_voc from ./model/fcn_resnet101_voc-quantized-naive, if the name follows that pattern."""
    try:
        return ModelSpec.parse(Path(prefix).name.split("-")[0])
    except SegcheckError:
        return None


def _config(p: Plan, crop: int | None = None):
    from .config import RunConfig, calib_for

    a = p.args
    return RunConfig.for_tier(
        p.tier, crop_size=crop or a.crop_size, num_images=a.num_images, batch_size=a.batch_size,
        calib=calib_for(p.tier, mode=a.calib_mode, dtype=a.quantized_dtype, num_batches=a.num_calib_batches,
                        batch_size=a.calib_batch_size, split=a.calib_split),
        cache_dir=Path(a.cache_dir).expanduser() if a.cache_dir else None,
        voc_root=a.voc_root, coco_root=a.coco_root, skip_bad=a.skip_bad or None,
    )


def _deployed_crop(prefix: str) -> int | None:
    """The output size an exported model was built for (its final BilinearResize2D)."""
    from .models import export

    symbol, _ = export.files(prefix)
    try:
        nodes = json.loads(symbol.read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        return None  # export.load reports the problem with the file
    sizes = [int(n["attrs"]["height"]) for n in nodes if n["op"] == "_contrib_BilinearResize2D" and "height" in n.get("attrs", {})]
    return sizes[-1] if sizes else None


def _model(p: Plan, config):
    from . import pipeline
    from .models import export

    if p.args.deploy:
        return export.load(p.args.model_prefix)
    if p.precision == "int8":
        return pipeline.int8_model(config, p.spec).block
    return pipeline.fp32_net(config, p.spec)


def run(p: Plan, out=sys.stdout) -> int:
    from . import data, pipeline
    from .evaluate import evaluate, logits
    from .models import export

    crop = _deployed_crop(p.args.model_prefix) if p.args.deploy and not p.args.crop_size else None
    config = _config(p, crop)
    label = f"{p.spec.name} {'deployed ' if p.args.deploy else ''}{p.precision.upper()} ({config.tier} tier, crop {config.crop_size})"
    if p.action == "calibrate":
        model = pipeline.int8_model(config, p.spec)
        prefix = p.args.model_prefix or f"./model/{p.spec.name}-quantized-{config.calib.mode}"
        symbol, params = export.export(model.block, prefix)
        print(f"calibrated {p.spec.name}: {config.calib.label()} on {model.entry.manifest['calibration_subset']}; "
              f"{model.graph.int8_convs}/{model.graph.convs} convolutions in INT8", file=out)
        print(f"saved quantized model: {symbol} and {params}", file=out)
        return 0
    model = _model(p, config)
    if p.action == "benchmark":
        x = data.dummy_input(p.args.batch_size, config.crop_size)
        for _ in range(5):
            logits(model, x).wait_to_read()
        times = []
        for _ in range(p.args.num_iterations):
            started = time.perf_counter()
            logits(model, x).wait_to_read()
            times.append(time.perf_counter() - started)
        mean = sum(times) / len(times)
        print(f"{label}: batch size {p.args.batch_size}, {len(times)} iterations: latency {1000 * mean:.2f} ms "
              f"(min {1000 * min(times):.2f}), throughput {p.args.batch_size / mean:.2f} imgs/sec", file=out)
        return 0
    val = pipeline.open_split(config, p.spec.dataset, "val")
    result = evaluate(model, val, data.first(val, config.num_images), config.batch_size, config.skip_bad,
                      desc=f"evaluating {p.spec.name}")
    gluon, present = result.matrix.compute("gluoncv"), result.matrix.compute("present")
    print(f"{label} on {result.subset.describe()}: pixAcc {100 * gluon.pix_acc:.2f}%, "
          f"mIoU {100 * gluon.miou:.2f} (gluoncv convention), {100 * present.miou:.2f} (present convention)", file=out)
    if result.skipped:
        print(f"left out {len(result.skipped)} unreadable samples: {', '.join(result.skipped[:5])}", file=out)
    return 0


def report(argv, out=sys.stdout) -> int:
    from . import baselines
    from . import report as reporting
    from .models.cache import default_dir

    args = report_parser().parse_args(argv)
    if args.baseline:
        path = args.baselines or baselines.DEFAULT_PATH
        tier = baselines.load(path).tier(args.baseline)
        results = reporting.RunResults(tier=tier.name, convention=tier.metric_convention)
        for entry in tier.entries:
            results.setting, results.environment = entry.setting, entry.environment
            for name, row in entry.rows.items():
                results.model(name).baseline = vars(row)
                results.record(name, "fp32", latency_ms=row.fp32_latency_ms, pixacc=row.fp32_pixacc, miou=row.fp32_miou)
                results.record(name, "int8", latency_ms=row.s8_latency_ms, pixacc=row.s8_pixacc, miou=row.s8_miou)
    else:
        cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_dir()
        results = reporting.load(args.results or reporting.last_run_path(cache_dir))
    out.write(reporting.markdown(results))
    if args.json_out:
        print(f"json: {reporting.save(results, args.json_out)}", file=out)
    if args.png:
        print(f"chart: {reporting.chart(results, args.png)}", file=out)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["report"]:
            return report(argv[1:])
        return run(plan(argv))
    except SegcheckError as err:
        print(f"segcheck: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

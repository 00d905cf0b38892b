"""The segcheck command: the seed's test.py flags, and `segcheck report`.

Each command of the GluonCV INT8 tutorial works with `python test.py` replaced by `segcheck`:
FP32 or INT8 evaluation (--eval) or dummy-data latency (--benchmark), calibration writing
./model/<name>-quantized-<mode>-symbol.json / -0000.params (--calibration), and exported models
(--deploy --model-prefix, FP32 or INT8). Weights: --pretrained (GluonCV's model store), --resume PATH
(a params file), --model-zoo NAME (a model-zoo network and its store weights), the export's own; without
any, the synthetic tier's seeded models. Data: real datasets with real weights, else the synthetic tier's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..config import isa, options, refusals, threads
from ..config.networks import BACKBONES, SEGMENTATION_MODELS, Network, classes_mismatch
from ..data.kinds import ALIASES, dataset
from ..errors import SegcheckError

# segcheck SUBCOMMAND ...: what each does (segcheck --help lists them) and the function that runs it, imported on
# use (each loads what it needs); without a subcommand, the seed's test.py workflow.
SUBCOMMANDS = {
    "report": ("the Performance table of the last pytest run (--json, --png, --per-class, --baseline TIER)",
               "segcheck.cli.commands:report"),
    "merge": ("add up the results of a run's shards and gate them (exit 1 when a merged check fails)",
              "segcheck.results.merge:main"),
    "compare": ("two runs' results side by side (an MXNet upgrade, an ISA cap): deltas, moved classes, layers, ranges",
                "segcheck.results.compare:main"),
    "plan": ("what a run evaluates, what is missing and how to fetch it, its cost here, shards for a time budget",
             "segcheck.cli.plan:main"),
    "isa-bench": ("the latency benchmarks under every ISA level this CPU can dispatch, one process each, one table",
                  "segcheck.cli.isa_bench:main"),
    "peer": ("the peer runtimes' own environment: `segcheck peer install` creates it (ONNX Runtime, OpenVINO; pinned)",
             "segcheck.cli.peer:main"),
    "noise": ("how far every gated figure moves under benign variation (results of runs per tier), and the tolerances "
              "that follow (--write)", "segcheck.results.noise:main"),
    "tune": ("when INT8 fails the gate, search calibration recipes and layers kept in FP32 for one it passes, with "
             "its speed cost (--write puts it into segcheck.toml)", "segcheck.cli.tune:main"),
    "migrate": ("rewrite a baseline file and its golden records of an older schema as this segcheck reads them",
                "segcheck.cli.migrate:main"),
    "fetch": ("download weights and datasets: with `peer install` (pip), the only commands that touch the network", "segcheck.cli.fetch:main"),
}


def seed_parser() -> options.Parser:
    p = options.Parser(
        prog="segcheck", description="The GluonCV INT8 segmentation workflow (test.py flags), or a subcommand.",
        epilog="subcommands (segcheck SUBCOMMAND --help):\n" + "\n".join(f"  {name:<8} {what}" for name, (what, _) in SUBCOMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=SEGMENTATION_MODELS, help="default fcn")
    p.add_argument("--backbone", choices=BACKBONES, help="default resnet101")
    p.add_argument("--model-zoo", metavar="NAME", help="a GluonCV model-zoo network (fcn_resnet101_ade, ...) with its store weights")
    p.add_argument("--dataset", choices=sorted(ALIASES), help="default pascal_voc (with --model-zoo or --deploy: from the name)")
    p.add_argument("--mode", default="val", help="val: short side to the crop, centre crop (testval is not supported)")
    p.add_argument("--eval", action="store_true", help="evaluate pixAcc / mIoU on the val split (the default action); "
                   "the seed's evaluation mode, the only one segcheck runs, so its tutorial lines give it beside "
                   "--benchmark and --calibration too")
    p.add_argument("--pretrained", action="store_true", help="GluonCV's pretrained weights and the real datasets")
    p.add_argument("--resume", metavar="PATH", help="a local params file (save_parameters) for --model/--backbone or --model-zoo")
    p.add_argument("--benchmark", action="store_true", help="latency on dummy data, then exit")
    p.add_argument("--num-iterations", type=options.positive, help="benchmark iterations after 5 dry runs (default 20)")
    p.add_argument("--calibration", action="store_true", help="calibrate and export the INT8 model to ./model/")
    p.add_argument("--quantized", action="store_true", help="use the INT8 model (calibrated by segcheck, or the INT8 export)")
    p.add_argument("--deploy", action="store_true", help="load an exported model (FP32 or INT8) from --model-prefix")
    p.add_argument("--model-prefix", help="exported model prefix (<prefix>-symbol.json, <prefix>-0000.params)")
    options.add_to_argparse(p, [o for o in options.RUN if o.dest != "case_timeout"])  # it runs in process: nothing to stop
    return p


def report_parser() -> options.Parser:
    p = options.Parser(prog="segcheck report", description="The seed's Performance table from a pytest run.")
    p.add_argument("--results", help="results file (default <cache>/last-run.json, written by pytest)")
    p.add_argument("--segcheck-cache", "--cache-dir", dest="cache_dir")
    p.add_argument("--json", dest="json_out", help="also write the results as JSON here")
    p.add_argument("--png", help="also draw them as a PNG chart here")
    p.add_argument("--per-class", action="store_true", help="also print per-class IoU (FP32, INT8, golden INT8) per model")
    p.add_argument("--baseline", choices=("real", "synthetic"), help="print the baseline table's rows for a tier instead")
    p.add_argument("--baselines", help="baseline file (default: the configuration's in this folder)")
    p.add_argument("--max-memory", type=options.positive_gb, metavar="GB",
                   help="exit 1 when the run's peak resident set (the pytest process or its largest forked child) exceeded GB: "
                        "CI's memory bound")
    return p


@dataclass(frozen=True)
class Plan:
    """What a seed command line asks for, resolved to one model."""

    action: str  # benchmark | calibrate | evaluate
    precision: str  # fp32 | int8
    model: object  # config.ModelConfig
    deployed: bool
    args: argparse.Namespace


def _export_precision(prefix) -> str:
    from ..models import export
    from ..models.graph import inspect_graph

    symbol, _ = export.files(prefix)
    try:
        return "int8" if inspect_graph(symbol.read_text()).int8_convs else "fp32"
    except FileNotFoundError:
        raise SegcheckError(f"{symbol}: not found; run the calibration first or fix --model-prefix") from None
    except OSError as err:
        raise SegcheckError(f"{symbol}: cannot read it ({err.strerror}); fix --model-prefix") from None
    except (ValueError, KeyError) as err:
        raise SegcheckError(f"{symbol}: not a valid symbol file ({err}); export the model again") from None


def _deployed_crop(prefix) -> int | None:
    """The output size an exported model was built for (its final BilinearResize2D)."""
    from ..models import export

    try:
        nodes = json.loads(export.files(prefix)[0].read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        return None  # export.load reports the problem with the file
    sizes = [int(n["attrs"]["height"]) for n in nodes if n["op"] == "_contrib_BilinearResize2D" and "height" in n.get("attrs", {})]
    return sizes[-1] if sizes else None


def _network(args) -> Network:
    """The network the flags name; a bad name is one error naming the flags it came from."""
    flags = "--model-prefix" if args.deploy else "--model-zoo" if args.model_zoo else "--model, --backbone, --dataset"
    try:
        if args.deploy:
            return Network.from_export(Path(args.model_prefix))
        if args.model_zoo:
            return Network.from_zoo(args.model_zoo)
        return Network.from_parts(args.model or "fcn", args.backbone or "resnet101", args.dataset or "pascal_voc")
    except SegcheckError as err:
        raise SegcheckError(f"{flags}: {err}") from None


def _dataset_of(args, network: Network) -> str:
    if args.dataset:
        return dataset(args.dataset).key
    if network.dataset:
        return network.dataset
    try:  # the seed's deploy command names the model only through the prefix: fcn_resnet101_voc-quantized-naive
        return Network.from_zoo(Path(args.model_prefix).name.split("-")[0]).dataset
    except SegcheckError:
        return "pascal_voc"


def _calibration_given(given) -> list:
    """The calibration options given (their dests), in declaration order."""
    return [d for d in options.CALIBRATION if getattr(given, d) is not None]


def _refuse_what_has_no_effect(args, fail) -> None:
    """Every option given must change what this command does; anything else is a usage error."""
    given = options.GateOptions.read(vars(args).get)
    if args.mode != "val":
        fail(f"--mode {args.mode} is not supported: segcheck follows the seed's mode=val protocol")
    if args.deploy and not args.model_prefix:
        fail("--deploy needs --model-prefix (e.g. ./model/fcn_resnet101_voc-quantized-naive)")
    if args.model_prefix and not (args.deploy or args.calibration):
        fail("--model-prefix has no effect without --deploy (the model to load) or --calibration (where to write)")
    if args.num_iterations is not None and not args.benchmark:
        fail("--num-iterations has no effect without --benchmark")
    for dest in ("num_images", "shard"):
        if args.benchmark and getattr(given, dest) is not None:
            fail(f"{options.flag_of(dest)} has no effect with --benchmark (it times dummy data)")
    if args.benchmark and args.calibration:
        fail("--calibration has no effect with --benchmark, which times the model and exits, exporting nothing; "
             "run them apart")
    if args.calibration and args.shard is not None:
        fail("--shard has no effect with --calibration: every shard calibrates on the same images")
    if args.calibration and args.num_images is not None:
        fail("--num-images has no effect with --calibration, which evaluates nothing (the images it uses are --calib-*)")
    if args.calibration and args.batch_size not in (None, 1):
        fail("--batch-size has no effect with --calibration: the calibration batch size is --calib-batch-size")
    calib = _calibration_given(given)
    if calib and not (args.calibration or args.quantized):
        fail(f"{options.flag_of(calib[0])} has no effect without --calibration or --quantized")
    if args.deploy and (args.model or args.backbone or args.resume or args.model_zoo):
        fail("--model, --backbone, --model-zoo and --resume have no effect with --deploy: the export is the model")
    if args.model_zoo and (args.model or args.backbone):
        fail("--model and --backbone have no effect with --model-zoo, which names the network")
    if args.resume and args.pretrained:
        fail("--resume and --pretrained both name the weights; pick one")


def plan(argv) -> Plan:
    parser = seed_parser()
    args = parser.parse_args(argv)
    # after parsing: --help and usage errors answer without loading MXNet (which takes seconds)
    from ..config.project import STORE, DataEntry, ModelEntry
    from ..config.run import RunConfig, Weights, configure, resolve_root, weights_of

    _refuse_what_has_no_effect(args, parser.error)
    network = _network(args)
    kind = dataset(_dataset_of(args, network))
    given = options.GateOptions.read(vars(args).get)
    roots = [(dest, key) for dest, key in options.ROOTS.items() if getattr(given, dest)]
    real_weights = args.pretrained or args.resume or args.model_zoo or args.deploy
    for dest, key in roots:
        if key != kind.key:
            parser.error(f"{options.flag_of(dest)} has no effect: the dataset is {kind.key}")
        if not real_weights:
            parser.error(f"{options.flag_of(dest)} needs real weights: pass --pretrained, --resume PATH or --model-zoo NAME "
                         "(the seeded weights are fitted on the synthetic tier's data)")
    export_precision = _export_precision(args.model_prefix) if args.deploy else None
    if export_precision == "int8" and args.calibration:
        parser.error(f"{args.model_prefix} is already an INT8 export: --calibration has no effect")
    calib = _calibration_given(given)
    if export_precision == "int8" and calib:
        parser.error(f"{options.flag_of(calib[0])} has no effect: {args.model_prefix} is already an INT8 export, "
                     "gated as it is")
    calibrates = args.quantized and export_precision != "int8" and args.calib_mode != "none"
    read = next((d for d in ("skip_bad", "calib_split", "calib_start", *options.ROOTS) if getattr(given, d) is not None), None)
    if args.benchmark and read and not calibrates:  # a benchmark times dummy data; only a calibration reads the dataset
        parser.error(f"{options.flag_of(read)} has no effect with --benchmark (it times dummy data, and nothing here "
                     "calibrates on the dataset: that takes --quantized, on an FP32 model, in a mode other than none)")
    precision = "int8" if (args.quantized or args.calibration or export_precision == "int8") else "fp32"
    real_data = bool(args.pretrained or args.resume or args.model_zoo or roots)
    if not real_weights and not network.seedable:
        parser.error(f"{network.name} has no seeded weights on the synthetic tier; pass --pretrained, --resume PATH or --model-zoo NAME")
    mismatch = classes_mismatch(network, kind)
    if mismatch:
        parser.error(f"--dataset {kind.key}: {mismatch}; leave --dataset out, or choose a network trained on it")
    crop = args.crop_size or (_deployed_crop(args.model_prefix) if args.deploy else None)
    run = RunConfig.from_options(given.with_(crop_size=crop), "real" if real_data else "synthetic")
    weights = Path(args.resume) if args.resume else (None if args.deploy else STORE)
    entry = ModelEntry(network.name, network, weights, DataEntry(kind.key),
                       int8_export=Path(args.model_prefix) if export_precision == "int8" else None)
    root, source = resolve_root(kind, run.roots.get(kind.key), None, "the command line") if real_data else (None, "the synthetic tier")
    model = configure(entry, run, weights_of(entry) if real_weights else Weights("seeded"), root, source)
    try:
        refusals.any_run(given, run, {model.calib.mode} if model.calib else set(),
                         "name a data root, with real weights, for real data")
        refusals.beyond_the_splits({model.name: model})
    except SegcheckError as err:
        parser.error(str(err))
    action = "benchmark" if args.benchmark else "calibrate" if args.calibration else "evaluate"
    return Plan(action, precision, model, bool(args.deploy), args)


def _model(p: Plan):
    from ..models import pipeline

    if p.precision == "int8":
        return pipeline.int8_model(p.model).block
    return pipeline.fp32_net(p.model)


def run(p: Plan, out=sys.stdout) -> int:
    """Carry out the plan; the networks it built are given back when it returns (memory.reclaim), so that commands run
    one after another in a process (a script, the tests) need no more memory than the largest of them."""
    from ..measure import memory

    try:
        return _run(p, out)
    finally:
        memory.reclaim()


def _run(p: Plan, out) -> int:
    from ..data import loaders
    from ..measure import latency
    from ..measure.evaluate import evaluate
    from ..models import export, pipeline

    mc = p.model
    label = f"{mc.name} {'deployed ' if p.deployed else ''}{p.precision.upper()} ({mc.tier} tier, crop {mc.crop_size})"
    if p.action == "calibrate":
        model = pipeline.int8_model(mc)
        prefix = p.args.model_prefix if not p.deployed and p.args.model_prefix else f"./model/{mc.name}-quantized-{mc.calib.mode}"
        symbol, params = export.export(model.block, prefix)
        print(f"calibrated {mc.name}: {model.source}; {model.graph.int8_convs}/{model.graph.convs} convolutions in INT8", file=out)
        print(f"saved quantized model: {symbol} and {params}", file=out)
        return 0
    model = _model(p)
    if p.action == "benchmark":
        batch = mc.run.batch_size
        timing = latency.measure(model, loaders.dummy_input(batch, mc.crop_size), p.args.num_iterations or 20, warmup=5)
        print(f"{label}: batch size {batch}, {len(timing.times)} iterations: latency {1000 * timing.mean:.2f} ms "
              f"(min {1000 * timing.min:.2f}), throughput {batch / timing.mean:.2f} imgs/sec", file=out)
        return 0
    val = pipeline.open_split(mc, mc.split)
    indices = loaders.shard(loaders.first(val, mc.num_images), mc.run.shard)
    if mc.run.shard:
        label += f" shard {mc.run.shard[0]}/{mc.run.shard[1]} of {len(loaders.first(val, mc.num_images))} images"
    result = evaluate(model, val, indices, mc.run.batch_size, mc.run.skip_bad, desc=f"evaluating {mc.name}")
    gluon, present = result.matrix.compute("gluoncv"), result.matrix.compute("present")
    print(f"{label} on {result.subset.describe()} of {mc.dataset}: pixAcc {100 * gluon.pix_acc:.2f}%, "
          f"mIoU {100 * gluon.miou:.2f} (gluoncv convention), {100 * present.miou:.2f} (present convention)", file=out)
    if result.skipped:
        print(f"left out {len(result.skipped)} unreadable samples: {', '.join(result.skipped[:5])}", file=out)
    return 0


def report(argv, out=sys.stdout) -> int:
    from ..config.project import find
    from ..config.run import default_dir
    from ..results import chart
    from ..results import report as reporting

    args = report_parser().parse_args(argv)
    if args.baselines and not args.baseline:
        raise SegcheckError("--baselines has no effect without --baseline TIER (it names the table that prints)")
    if args.baseline and args.max_memory is not None:
        raise SegcheckError("--max-memory checks a run's results; the baseline table (--baseline) measured no memory")
    ignored = [flag for flag, given in (("--results", args.results), ("--segcheck-cache", args.cache_dir),
                                        ("--per-class", args.per_class)) if given]
    if args.baseline and ignored:
        raise SegcheckError(f"{ignored[0]} has no effect with --baseline, which prints the baseline table, not a run's results")
    if args.baseline:
        project = None if args.baselines else find(Path.cwd())
        if project is None and not args.baselines:
            raise SegcheckError(f"no segcheck configuration in {Path.cwd()} names a baseline file; pass --baselines")
        source = args.baselines or project.baselines
    else:
        source = args.results or reporting.last_run_path(Path(args.cache_dir).expanduser() if args.cache_dir else default_dir())
    atomic.outputs_apart({"--json": args.json_out, "--png": args.png}, [source])
    results = _baseline_table(source, args.baseline) if args.baseline else reporting.load(source)
    if args.max_memory is not None and results.memory is None:
        raise SegcheckError("these results hold no memory figure (a merge of shards, a run under pytest-xdist or "
                            "one from before segcheck measured memory): --max-memory has nothing to check")
    out.write(reporting.markdown(results))
    if args.per_class:
        out.write("\n" + reporting.per_class(results))
    atomic.write_outputs({"json": (args.json_out, lambda: reporting.encoded(results)),
                          "chart": (args.png, lambda: chart.png(results))}, out)
    if args.max_memory is not None:
        return _within_memory(results, args.max_memory, out)
    return 0


def _baseline_table(source, tier_name: str):
    """A baseline file's tier as results, so that the report prints its rows as a run's."""
    from ..gate import baselines
    from ..results.records import Figures, RunResults

    tier = baselines.load(source).tier(tier_name)
    results = RunResults(tier=tier.name, convention=tier.metric_convention)
    for entry in tier.entries:
        # the seed's rows name a CPU, not an ISA: a tier with minimums for one ISA only was measured on it
        isa = entry.environment.get("isa") or (next(iter(tier.min_speedup)) if len(tier.min_speedup) == 1 else "?")
        results.environment = {**entry.environment, "isa": isa}
        for name, row in entry.rows.items():
            m = results.model(name)
            m.baseline = {p: vars(row) for p in ("fp32", "int8")}
            m.setting, m.int8_key, m.tolerances = entry.setting, entry.int8, vars(tier.tolerances.resolve())
            m.min_speedup = tier.min_speedup.get(isa, {}).get(name, tier.min_speedup.get(isa, {}).get(name.split("_")[0]))
            m.fp32 = Figures(pixacc=row.fp32_pixacc, miou=row.fp32_miou, latency_ms=row.fp32_latency_ms)
            m.int8 = Figures(pixacc=row.s8_pixacc, miou=row.s8_miou, latency_ms=row.s8_latency_ms)
    return results


def _within_memory(results, bound_gb: float, out) -> int:
    """0 when the run's peak resident set stayed within `bound_gb`, else 1; saying which."""
    memory = results.memory
    peak = max(memory.peak_mb, memory.children_peak_mb) / 1024
    within = peak <= bound_gb
    where = ("the pytest process: the tests that raised it most are named above" if memory.peak_mb >= memory.children_peak_mb
             else "a forked child: each model's largest forked work is named above")
    print(f"memory: peak resident set {peak:.2f} GB, bound {bound_gb:g} GB: {'within' if within else f'EXCEEDED in {where}'}",
          file=out)
    return 0 if within else 1


def _subcommand(name: str):
    """The function that runs subcommand `name`."""
    module, _, function = SUBCOMMANDS[name][1].partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv=None) -> int:
    threads.select()  # before a configuration or a network name loads GluonCV, and with it MXNet
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] and argv[0] in SUBCOMMANDS:
            return _subcommand(argv[0])(argv[1:])
        p = plan(argv)
        isa.select(p.args.isa, "--isa")
        return run(p)
    except SegcheckError as err:
        print(f"segcheck: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the command reads or writes (a full disk): one line naming it
        print(f"segcheck: error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The state of one gate run under pytest, in one object (as pytest-benchmark's BenchmarkSession).

It holds the project, the run's configuration, the resolved models and their cases, the baseline table,
and the results. Results are built only from the gate tests' reports, so the summary, the JSON and the
outcomes always agree, and pytest-xdist workers' reports merge on the controller like any others.
"""

from __future__ import annotations

import os
import time
import uuid
from functools import cached_property
from pathlib import Path

import pytest

from .. import atomic
from ..cases.model_case import LAYER_IMAGES, LAYER_IMAGES_ACROSS, ModelCase
from ..config import isa, refusals
from ..config.options import GateOptions
from ..config.project import Project
from ..config.run import ModelConfig, RunConfig, resolve_all
from ..data.kinds import DATASETS
from ..errors import MissingResource, SegcheckError
from ..gate import baselines, golden, noise, verdicts
from ..gate.checks import CHANGED, ERROR, FAIL, FAILING, PASS, REGRESSED, SKIP, XFAIL, Check, of_peer_row, of_test, peer_row
from ..measure import environment, guard, latency, memory
from ..models import cache
from ..peers import environment as peer_environment
from ..peers.scoring import LATENCY as PEER_LATENCY
from ..results import chart, report
from ..results.records import Memory, RunResults
from . import suite

IDENTITY, RECORD, VERDICT = "segcheck", "segcheck-record", "segcheck-verdict"


def _published(options: GateOptions, run: RunConfig, table: baselines.Baselines) -> None:
    """Published rows (a tier with match_environment false) are never recorded over."""
    tier = table.tiers.get(run.tier)
    if options.update_baselines and tier is not None and not tier.match_environment:
        raise SegcheckError(f"--update-baselines: the {run.tier} tier of {table.path} holds published rows "
                            "(match_environment false), which are never overwritten")


def _recordable(config, options: GateOptions) -> None:
    """--update-baselines where no row could be recorded (a row needs the latency benchmarks, measured in this process)
    is an error before the run, not a run that ends having recorded nothing."""
    if not options.update_baselines:
        return
    for flag in ("benchmark_skip", "benchmark_disable"):
        if config.getoption(flag, False):
            raise SegcheckError(f"--update-baselines with --{flag.replace('_', '-')}: a baseline row needs the latency "
                                "benchmarks; run them to record")
    if config.getoption("numprocesses", None):
        raise SegcheckError("--update-baselines with -n: the latency benchmarks of pytest-xdist's workers are not "
                            "measured in this process, so no row can be recorded; record without -n")


def _outputs_apart(options: GateOptions, project: Project, table: baselines.Baselines) -> None:
    """--results-json and --report-png name files the run may write at its end: neither one of the files it reads nor
    each other, nor a folder; checked before the run, which would otherwise lose its results or overwrite an input."""
    atomic.outputs_apart({"--results-json": options.results_json, "--report-png": options.report_png},
                         baselines.gate_inputs(project, table.path))


def _crash(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (file, line, reason)
        return longrepr[2].removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    return crash.message if crash is not None else str(longrepr).strip().splitlines()[-1] if longrepr else ""


# the phase of the run each module of the gate's suite is, for the memory it needs (measure.memory.phase)
SUITE_PHASES = {"test_accuracy": "accuracy", "test_quantization": "quantization checks", "test_latency": "benchmarks",
                "test_peers": "peers"}


def _phase(item) -> str:
    """The phase of the run a test is: its gate module's, or, for a project's other tests, their module's name."""
    path = item.path.resolve()
    return SUITE_PHASES.get(path.stem, path.stem) if path.parent == suite.FOLDER else path.stem


def _by_peak(peaks: dict) -> tuple:
    """((phase, MB), ...), largest first."""
    return tuple(sorted(peaks.items(), key=lambda item: -item[1]))


def _params(item) -> dict:
    """The parameters of a collected test (its model under "case", its precision, its peer), or {}."""
    return getattr(getattr(item, "callspec", None), "params", {})


class SegcheckSession:
    def __init__(self, config, project: Project, run: RunConfig, options: GateOptions, table: baselines.Baselines,
                 convention: str, models: dict):
        self.config, self.project, self.run, self.options = config, project, run, options
        self.table, self.convention, self.models = table, convention, models
        self.tier = table.tier_or_new(run.tier, convention)
        self.results = RunResults(tier=run.tier, convention=convention,
                                  strict_changes=bool(options.strict_changes or project.strict_changes),
                                  gate_drop_interval=bool(options.gate_drop_interval))
        self.latencies: dict = {}
        self.lines: list = []
        self._cases: dict = {}
        self._golden: dict = {}
        self._judged: dict = {}
        self.started = time.time()  # cache entries rebuilt since then, by this run, are its warnings
        self.run_id = os.environ.setdefault(cache.RUN_ID, uuid.uuid4().hex)  # its workers and children inherit it
        self.watermark = memory.Watermark()  # which tests raised the process's peak resident set
        self._last_use: dict = {}  # test id -> the model whose case it is the last test of (collection order)

    @classmethod
    def start(cls, config, project: Project, options: GateOptions) -> "SegcheckSession":
        run = RunConfig.from_options(options, options.tier or project.tier)
        if run.case_timeout is None and project.case_timeout is not None:
            run = run.with_(case_timeout=project.case_timeout)
        if options.baselines is not None and not options.update_baselines and not Path(options.baselines).exists():
            raise SegcheckError(f"--baselines {options.baselines}: no such file; correct the path, or add "
                                "--update-baselines to create it")
        table = baselines.load(options.baselines or project.baselines, missing_ok=True)
        refusals.no_effect(options, run, project)
        _published(options, run, table)
        _recordable(config, options)
        convention = table.convention(run.tier, project.metric_convention, project.path)
        models = resolve_all(project.models, run, project.path.name)
        refusals.beyond_the_splits(models)
        _outputs_apart(options, project, table)  # last: it makes the outputs' folders
        session = cls(config, project, run, options, table, convention, models)
        session.watermark.open()
        return session

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # ---- cases

    def _marks(self, name: str) -> list:
        """Markers of a model's cases: its dataset, its architecture and the tier."""
        entry = next(e for e in self.project.models if e.name == name)
        return [DATASETS[entry.data.name].marker, entry.network.arch, self.run.tier]

    def markers(self) -> dict:
        return {m: "segcheck model cases" for name in self.models for m in self._marks(name)}

    def params(self) -> list:
        return [pytest.param(name, id=name, marks=[getattr(pytest.mark, m) for m in self._marks(name)]) for name in self.models]

    def unavailable(self, err: MissingResource):
        if isinstance(err, peer_environment.PeerMissing) and self.run.peers is not None:
            pytest.fail(f"--peer: {err}", pytrace=False)
        if isinstance(err, peer_environment.PeerEnvironmentMissing) and self.require_baseline:
            pytest.fail(f"{self.require_baseline}: the configuration names peers: {err}", pytrace=False)
        if self.options.require_real:
            pytest.fail(f"--require-real: {err}", pytrace=False)
        pytest.skip(str(err))

    def model_config(self, name: str) -> ModelConfig:
        found = self.models[name]
        if isinstance(found, MissingResource):
            self.unavailable(found)
        return found

    def case(self, name: str) -> ModelCase:
        """The case of model `name` (made once per run; plugins step in through segcheck's hooks). The run holds one
        model's case at a time: asking for another releases the one held (an xdist worker, sent tests in any order,
        keeps its cases). A released case is made again where it is asked for again, its parts from the model cache."""
        if name not in self._cases:
            for held in [] if self.is_worker else list(self._cases):
                self.release(held)
            self._cases[name] = ModelCase(self.model_config(name), self.unavailable, self.config.hook, self.peer_latency())
        return self._cases[name]

    def peer_latency(self) -> dict:
        """The peers' adaptive-rounds rule, from pytest-benchmark's options as MXNet's benchmarks take them."""
        get = self.config.getoption
        if get("benchmark_disable", False):
            return {**PEER_LATENCY, "min_rounds": 2, "max_time_s": 1e-6}  # as pytest-benchmark's: a run, not a timing
        return {**PEER_LATENCY, "min_rounds": max(2, int(get("benchmark_min_rounds", PEER_LATENCY["min_rounds"]))),
                "max_time_s": float(get("benchmark_max_time", PEER_LATENCY["max_time_s"]))}

    @property
    def cases(self) -> dict:
        """The model cases of this run made and not yet released, by name."""
        return dict(self._cases)

    @cached_property
    def environment(self) -> environment.Environment:
        return environment.fingerprint(self.run.cache_dir)

    @cached_property
    def noise(self) -> noise.LayerNoise:
        """The per-layer noise bands measured for this tier (<baselines>.noise.json), if any."""
        return noise.load(self.table.path, self.run.tier)

    def tolerances(self, case: ModelCase, reference: baselines.Reference | None = None,
                   precision: str = "int8") -> baselines.Tolerances:
        """The model's tolerances for a comparison of `precision` with `reference` (at the tier of what differs)."""
        return self.tier.tolerances_for(reference, case.config.tolerances, precision)

    def min_speedup(self, case: ModelCase, isa: str) -> float | None:
        return self.tier.least_speedup(isa, case.config)

    def baseline(self, case: ModelCase, precision: str, row: str | None = None) -> baselines.Lookup:
        """The baseline row of `case` (or of its row `row`, a peer's) for this tier, setting and environment: for FP32
        whatever its INT8 key, for INT8 under this run's INT8 key or the nearest other."""
        setting = case.config.setting() if row is None else self.peer_setting(case)
        int8 = None if precision == "fp32" else case.int8_key if row is None else case.peer_recipe.label()
        return self.table.lookup(self.run.tier, row or case.name, self.environment.key(), setting, int8)

    @staticmethod
    def peer_setting(case: ModelCase) -> dict:
        """The setting of a peer's row: the case's, and the pins of the peer environment (other pins, other rows)."""
        return {**case.config.setting(), "peer_pins": peer_environment.requirements_digest()[:16]}

    def peer_pairs(self) -> list:
        """(model, runtime) params of the peer tests: each configured model with the runtimes --peer or its own
        configuration names (a model whose weights or data are missing skips or fails there, as its other cases do)."""
        pairs = [pytest.param(e.name, runtime, id=f"{e.name}-{runtime}", marks=[getattr(pytest.mark, m) for m in self._marks(e.name)])
                 for e in self.project.models for runtime in (self.run.peers if self.run.peers is not None else e.peers)]
        if pairs and self.run.shard is None:
            return pairs
        # one skipped placeholder, which names no model: a shard's results then hold no peer row for merge to refuse
        reason = ("the peer cases run unsharded: a shard's peer figures are not merged" if pairs else
                  "no model is gated on a peer runtime: give --peer onnxruntime,openvino or a model's peer key")
        return [pytest.param(None, None, id="sharded" if pairs else "no-peer", marks=pytest.mark.skip(reason=reason))]

    def shard_of(self, case: ModelCase, evaluation) -> dict | None:
        """What a shard evaluated, and of what whole, for `segcheck merge` to check the shards fit together."""
        if self.run.shard is None:
            return None
        k, n = self.run.shard
        return {"index": k, "count": n, "split": evaluation.subset.split, "ids": list(evaluation.subset.ids),
                "of": {"count": len(case.whole.ids), "digest": case.whole.digest}}

    def golden(self, case: ModelCase, precision: str = "int8"):
        """The golden records of this model at this setting (golden.Golden), from this environment or the nearest
        recorded one, for INT8 under this run's INT8 key or the nearest other (its reference says which); None when none
        were recorded."""
        key = (case.name, precision)
        if key not in self._golden:
            int8 = case.int8_key if precision == "int8" else None
            self._golden[key] = golden.lookup(self.table.path, self.run.tier, case.name, self.environment.key(),
                                              case.config.setting(), int8)
        return self._golden[key]

    @property
    def require_baseline(self) -> str:
        """Why a model without any row fails instead of skipping ('' when it skips): --require-baseline, or a CI run."""
        if self.options.require_baseline:
            return "--require-baseline"
        return "CI=true" if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes") else ""

    def no_baseline(self, request, reason: str):
        """No row to compare with: a SKIP saying so, or a failure under --require-baseline or in CI."""
        request.node.user_properties.append((VERDICT, {"status": SKIP, "message": reason, "compared": "none"}))
        why = self.require_baseline
        if why:
            pytest.fail(f"{why}: {reason}", pytrace=False)
        pytest.skip(reason)

    # ---- what tests report

    @staticmethod
    def record(request, case: ModelCase | str, **payload) -> None:
        """Attach figures of `case` (or of the results row named so, a peer's) to this test's report: the results are
        built from reports only."""
        name = case if isinstance(case, str) else case.name
        request.node.user_properties.append((RECORD, {"model": name, **payload}))

    def judge(self, request, verdict: Check) -> None:
        """Attach the verdict to the report, then skip, xfail or fail as it says (CHANGED fails under --strict-changes)."""
        request.node.user_properties.append((VERDICT, {"status": verdict.status, "message": verdict.message,
                                                       "compared": verdict.compared}))
        if verdict.status == SKIP:
            why = self.require_baseline if verdict.compared == "none" else ""
            if why:  # nothing recorded to compare with: in CI a check that compared nothing fails, naming what is missing
                pytest.fail(f"{why}: {verdict.message}", pytrace=False)
            pytest.skip(verdict.message)
        if verdict.status == XFAIL:
            pytest.xfail(verdict.message)
        if verdict.status == CHANGED and self.results.strict_changes:
            pytest.fail(f"--strict-changes: {verdict.message}", pytrace=False)
        assert not verdict.failed, verdict.message

    # ---- the comparisons with the reference a run replaces, made once per case and precision

    def _paired(self, golden_records, reference) -> bool:
        """Whether golden records were recorded where a row was (the same environment and INT8 key), so that their
        per-image figures pair with the row's."""
        return golden_records is not None and reference is not None and (
            golden_records.reference.environment, golden_records.reference.recipe) == (reference.environment, reference.recipe)

    def paired_images(self, case: ModelCase, precision: str, reference) -> list | None:
        """The per-image confusion matrices of the golden run recorded where the row `reference` names was, which the
        accuracy of `precision` pairs with image by image; None where there are none."""
        recorded = self.golden(case, precision)
        return recorded.per_image.get(precision) if self._paired(recorded, reference) else None

    def accuracy_verdict(self, case: ModelCase, precision: str, scores, evaluation) -> tuple:
        """(Lookup, Tolerances, Verdict) of the accuracy of `precision` against the baseline row (the verdict None
        where there is no row), paired over the images with the golden records of the same reference."""
        found = self.baseline(case, precision)
        if found.row is None:
            return found, None, None
        tol = self.tolerances(case, found.reference, precision)
        then = self.paired_images(case, precision, found.reference)
        verdict = verdicts.against_baseline(f"{case.name} {precision} on {evaluation.subset.describe()}", scores, found.row,
                                            precision, tol, found.reference, evaluation.per_image, then)
        return found, tol, verdict

    def agreement_verdict(self, case: ModelCase) -> Check:
        """INT8's per-image agreement with FP32 and output SQNR against the reference INT8's (golden records)."""
        ev = case.evaluation("int8")
        recorded = self.golden(case, "int8")
        what = f"{case.name} int8 on the first {len(ev.agreement)} of {ev.subset.describe()}"
        if recorded is None or not recorded.agreement:
            return verdicts.agreement_shift(what, (ev.agreement, ev.output_sqnr), ((), ()), self.tolerances(case), None)
        tol = self.tolerances(case, recorded.reference)
        return verdicts.agreement_shift(what, (ev.agreement, ev.output_sqnr), (recorded.agreement, recorded.output_sqnr),
                                        tol, recorded.reference)

    def localisation(self, case: ModelCase):
        """The case's per-layer comparison, on LAYER_IMAGES_ACROSS images where it is recorded or its golden curve's
        reference differs from this run (the harm a clipped range does shows in a few images), else on LAYER_IMAGES."""
        recorded = self.golden(case, "int8")
        across = self.options.update_baselines or bool(recorded and recorded.sqnr_per_image and recorded.reference.differs)
        return case.localisation(LAYER_IMAGES_ACROSS if across else LAYER_IMAGES)

    def layers_verdict(self, case: ModelCase) -> tuple:
        """(Verdict, the layers it names) of per-layer SQNR against the golden curve, each layer at its own noise band."""
        loc = self.localisation(case)
        sqnr = {layer.name: layer.sqnr_db for layer in loc.layers}
        now = {layer.name: (layer.per_image, layer.signal) for layer in loc.layers}
        recorded = self.golden(case, "int8")
        curve = ({k: (v, recorded.signal_per_image.get(k, ())) for k, v in recorded.sqnr_per_image.items()}
                 if recorded and recorded.sqnr_per_image else None)
        reference = recorded.reference if curve else None
        tol = self.tolerances(case, reference)
        own = "sqnr_drop_db" in case.config.tolerances  # a model's own band replaces the measured ones
        bands = self.noise.layer_bands(case.name, reference.differs, self.tier.tolerances) if curve and not own else {}
        what = f"{case.name} on {loc.images} images (low-margin flip rate {100 * loc.flip_low_margin:.1f}%, all {100 * loc.flip_all:.2f}%)"
        return verdicts.layer_error(what, sqnr, now, curve, loc.upstream, tol, bands, reference)

    def int8_judgement(self, case: ModelCase) -> Check | None:
        """What the model's INT8 figures say of a change against their reference: its accuracy against the row, its
        agreement and output SQNR, its layers (one below the floor counts as harm); the worst of them, or None where
        none compared.
        The range and digest checks, which see a change but cannot weigh it, take their verdict from it. None in a
        shard."""
        if self.run.shard is not None:
            return None  # a shard's figures are of its block of images, the references' of the whole run
        if case.name not in self._judged:
            ev = case.evaluation("int8")
            found = [self.accuracy_verdict(case, "int8", ev.matrix.compute(self.convention), ev)[2], self.agreement_verdict(case)]
            try:
                found.append(self.layers_verdict(case)[0])
            except guard.BackendCrash:
                pass  # the per-layer check fails by itself, naming the crash
            judged = [v for v in found if v is not None and v.status in (PASS, CHANGED, REGRESSED, FAIL)]
            harmed = [v for v in judged if v.status in (REGRESSED, FAIL)]  # a layer below the floor is harm too
            status = REGRESSED if harmed else CHANGED if any(v.status == CHANGED for v in judged) else PASS
            shown = [v.message for v in (harmed or [v for v in judged if v.status == CHANGED])]
            self._judged[case.name] = Check(status, "; ".join(shown) or "every INT8 figure within its noise band") if judged else None
        return self._judged[case.name]

    # ---- hooks (the session is registered as a plugin)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        """Name each gate test's model and check in its reports, so outcomes reach the results even from xdist
        workers; give the latency benchmarks a target precision unless --benchmark-precision sets one; and put each
        model's gate tests together, in the order pytest chose within a model (the peer tests' own parameters would
        otherwise interleave the models), so that a run holds one model's networks at a time (release). Other tests
        keep their places."""
        given = self.config.getoption("benchmark_precision", None) is not None
        timing = pytest.mark.benchmark() if given else pytest.mark.benchmark(precision=latency.PRECISION)
        for item in items:
            params = _params(item)
            check = of_test(getattr(item, "originalname", ""), params.get("precision"))
            if check and params.get("case") is not None:
                model = peer_row(params["case"], params["peer"]) if "peer" in params else params["case"]
                item.user_properties.append((IDENTITY, {"model": model, "check": check}))
                if "benchmark" in item.fixturenames:
                    item.add_marker(timing)
        slots = [i for i, item in enumerate(items) if _params(item).get("case") is not None]
        order = list(dict.fromkeys(_params(items[i])["case"] for i in slots))
        grouped = sorted((items[i] for i in slots), key=lambda item: order.index(_params(item)["case"]))
        for i, item in zip(slots, grouped):
            items[i] = item

    def pytest_collection_finish(self, session):
        """Note each model's last test, so that its case is released once that test has run: a run holds one model's
        networks at a time rather than all of them (an xdist worker, which runs what it is sent, keeps its cases).
        What is alive now is set apart from the run's collections (memory.settle): no case has been made yet."""
        memory.settle()
        if self.is_worker:
            return
        last = {_params(item)["case"]: item.nodeid for item in session.items if _params(item).get("case") is not None}
        self._last_use = {nodeid: model for model, nodeid in last.items()}

    def release(self, name: str) -> None:
        """Free the case of model `name` (a later segcheck.case(name) makes a new one)."""
        case = self._cases.pop(name, None)
        if case is not None:
            self._keep_footprints(case)
            self.config.hook.pytest_segcheck_release(case=case)
            case.release()
            self.watermark.reclaimed_mb = memory.reclaim()

    def _keep_footprints(self, case: ModelCase) -> None:
        """The case's footprints into its results (the larger of each work's, where a case was made again)."""
        if case.footprints() and case.name in self.results.models:
            kept = self.results.models[case.name].footprint_mb
            kept.update({what: max(mb, kept.get(what, 0.0)) for what, mb in case.footprints().items()})

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        """Each test counted for its phase of the run's memory."""
        with memory.phase(_phase(item)):
            return (yield)

    def pytest_runtest_logreport(self, report):
        if report.when == "teardown":
            if report.nodeid in self._last_use:
                self.release(self._last_use[report.nodeid])
            self.watermark.step(report.nodeid)
        props = [(k, v) for k, v in report.user_properties]
        identity = next((v for k, v in props if k == IDENTITY), None)
        if identity is None or (report.when != "call" and report.passed):
            return
        for key, payload in props:
            if key == RECORD:
                self.results.apply(payload)
        verdict = next((v for k, v in reversed(props) if k == VERDICT), None) or {}
        compared = verdict.get("compared", "")
        if report.skipped and hasattr(report, "wasxfail"):
            check = Check(XFAIL, verdict.get("message") or report.wasxfail, compared)
        elif report.skipped:
            check = Check(SKIP, _crash(report), compared)
        elif report.failed:
            if verdict.get("status") in FAILING + (CHANGED,):
                check = Check(verdict["status"], verdict["message"], compared)
            else:
                check = Check(FAIL if report.when == "call" else ERROR, _crash(report), compared)
        else:  # passed: as its verdict said (PASS, or CHANGED where that does not fail)
            check = Check(verdict.get("status") if verdict.get("status") == CHANGED else PASS, verdict.get("message", ""), compared)
        self.results.check(identity["model"], identity["check"], check)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if self.finish() and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def finish(self) -> bool:
        """Write the results (and baseline rows when asked); True when a requested write failed, or the run cannot be
        trusted in CI (its environment unknown)."""
        if self.is_worker or not self.results.models:
            return False
        self.results.environment = self.environment.to_dict()
        xdist = self.config.pluginmanager.has_plugin("dsession")  # the workers' processes hold the models, unmeasured here
        mark = self.watermark
        self.results.memory = None if xdist else Memory(memory.peak_mb(), memory.children_peak_mb(), mark.largest(),
                                                        _by_peak(mark.phases), _by_peak(mark.child_phases))
        for case in self._cases.values():  # those not released
            self._keep_footprints(case)
        failed = False
        self.results.warnings += [w for w in cache.rebuilt_since(self.run.cache_dir, self.started, self.run_id) if w not in self.results.warnings]
        if self.environment.onednn == environment.UNKNOWN:
            why = ("oneDNN's probe read no version from its verbose log, so this run's environment key is unknown; its "
                   "comparisons took the recorded oneDNN for this one (never a wider tier)")
            self.results.warnings.append(why)
            if self.require_baseline:
                self.lines.append(f"segcheck: {self.require_baseline}: {why}; a CI gate needs a known environment")
                failed = True
        written = [self._written(self._save_results)]
        if self.options.report_png:
            written.append(self._written(lambda: self.lines.append(f"chart: {chart.chart(self.results, self.options.report_png)}")))
        if self.options.update_baselines:
            written.append(self._written(self._record_baselines))
        return failed or not all(written)

    def _written(self, write) -> bool:
        """One of the run's writes; False, its error among the summary's lines, where it raised: a chart that cannot be
        drawn leaves the results and the recording written."""
        try:
            write()
        except (SegcheckError, OSError) as err:
            self.lines.append(f"segcheck: {err}")
            return False
        return True

    def _save_results(self) -> None:
        target = self.options.results_json or report.last_run_path(self.run.cache_dir)
        self.lines.append(f"results: {report.save(self.results, target)} (segcheck report prints them again)")
        report.store_amx(self.results, self.run.cache_dir)
        amx = report.amx_note(self.results, self.run.cache_dir, "amx" in isa.supported())
        if amx:
            self.lines.append(amx)

    def _record_baselines(self) -> None:
        rows = report.rows_to_record(self.results)
        template = baselines.new_tier(self.convention, f"Rows recorded by segcheck --update-baselines for {self.project.path.name}, "
                                                       "keyed by the environment and setting that produced them.")
        key, provenance = self.environment.key(), self.environment.provenance()
        if rows.groups:
            diff = baselines.record(self.table.path, self.run.tier, key, rows.groups, template, provenance)
            self.lines += (diff or f"{self.table.path} already holds these rows\n").splitlines()
        records = [(setting, int8, {name: report.golden_of(self.results.models[name]) for name in named
                                    if of_peer_row(name)[1] is None}) for setting, int8, named in rows.groups]  # a peer has none
        records = [(setting, int8, named) for setting, int8, named in records if named]
        written = golden.record(self.table.path, self.run.tier, key, records, provenance) if records else None
        if written:
            self.lines.append(f"golden records (calibration table, per-layer SQNR, digests, per-class IoU): {written}")
        self.lines += [f"not recorded: {name}: its cases skipped ({why})" for name, why in rows.skipped.items()]
        problems = [f"{name} not recorded: {why}" for name, why in rows.missing.items()]
        if not rows.groups:
            problems.append(f"nothing was written to {self.table.path}" + ("" if rows.missing else " (every model's cases skipped)"))
        if problems:  # asked to record: a model that ran but was left out, or no row at all, fails the run
            raise SegcheckError("--update-baselines: " + "; ".join(problems))

    def pytest_terminal_summary(self, terminalreporter):
        if self.is_worker or not self.results.models:
            return
        terminalreporter.section("segcheck Performance table")
        for line in report.markdown(self.results).splitlines() + self.lines:
            terminalreporter.write_line(line, red=line.startswith("segcheck: "))

    def pytest_unconfigure(self, config):
        """Release the cases the run still holds: a run made in process (pytester, a team's script) leaves no networks
        behind for whatever keeps its configuration alive."""
        for name in list(self._cases):
            self.release(name)
        self.watermark.close()

"""The environment a run measures on: ISA levels and oneDNN's cap, AMX's tile permission, an environment key that
follows the cap (a cached probe never labels a capped run with another ISA), and the OpenMP threads MXNet runs with."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segcheck.config import isa, threads
from segcheck.errors import SegcheckError
from segcheck.measure import environment
from segcheck.results import report
from segcheck.results.records import RunResults

XEON_AMX = {"sse4_1", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
            "amx_tile", "amx_int8", "amx_bf16"}
EPYC_AVX2 = {"sse4_1", "avx", "avx2", "fma"}


def test_levels_are_named_as_onednn_or_short_and_a_cpu_runs_the_levels_it_has():
    assert isa.name("AVX512_CORE_VNNI") == isa.name("vnni") == "avx512_vnni" and isa.name("avx512_core_amx") == "amx"
    with pytest.raises(SegcheckError, match="unknown ISA 'avx1024'; choose one of sse41, avx, avx2, avx512, avx512_vnni"):
        isa.name("avx1024")
    assert isa.supported(XEON_AMX) == ["sse41", "avx", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"]
    assert isa.supported(EPYC_AVX2) == ["sse41", "avx", "avx2"]
    assert isa.supported(EPYC_AVX2 | {"amx_tile", "amx_int8"}) == ["sse41", "avx", "avx2"]  # AMX needs the VNNI levels
    assert isa.environment_for("avx2") == {v: "AVX2" for v in isa.VARIABLES}


def test_onednn_descriptions_map_to_keys_and_levels():
    for text, key, level in [("Intel AVX2", "avx2", "avx2"),
                             ("Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions", "avx512", "avx512"),
                             ("Intel AVX-512 with Intel DL Boost", "avx512_vnni", "avx512_vnni"),
                             ("Intel AVX-512 with Intel DL Boost and bfloat16 support", "avx512_vnni", "avx512_bf16"),
                             ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer support",
                              "amx", "amx")]:
        assert (environment.isa_from_text(text), environment.level_from_text(text)) == (key, level), text


def test_amx_without_the_cpu_or_the_kernel_is_one_line_saying_why(monkeypatch):
    monkeypatch.setattr(isa, "cpu_flags", lambda: EPYC_AVX2)
    with pytest.raises(SegcheckError, match=r"^AMX was asked for, but this CPU \(.*\) has no AMX \(no amx_tile/amx_int8"):
        isa.request_amx()

    class Refusing:
        def syscall(self, *args):
            return -1

    monkeypatch.setattr(isa, "cpu_flags", lambda: XEON_AMX)
    monkeypatch.setattr(isa.ctypes, "CDLL", lambda *a, **k: Refusing())
    monkeypatch.setattr(isa.ctypes, "get_errno", lambda: 22)
    with pytest.raises(SegcheckError, match=r"Linux refused the tile permission \(arch_prctl ARCH_REQ_XCOMP_PERM: Invalid argument\); AMX needs Linux 5.16"):
        isa.request_amx()


def test_a_cap_above_what_the_cpu_runs_is_refused_naming_its_source(monkeypatch):
    """oneDNN runs an AVX2 CPU's own kernels under an AVX-512 cap: the cap would change nothing, so it is an error
    (`tox -e isa-avx512` on an AVX2 runner would otherwise pass as if it had measured AVX-512); a level the CPU has is
    taken, and nothing is set for a refused one."""
    monkeypatch.setattr(isa, "cpu_flags", lambda: EPYC_AVX2)
    monkeypatch.setattr(isa, "_PROCESS", {})
    for variable in isa.VARIABLES:  # no cap (current_cap reads "" as none); set, so that the cap selected below is undone
        monkeypatch.setenv(variable, "")
    for level, missing in (("avx512", "avx512f/avx512bw/avx512vl/avx512dq"), ("vnni", "avx512f/avx512bw/avx512vl/avx512dq/avx512_vnni")):
        with pytest.raises(SegcheckError, match=rf"^--isa asks for {isa.name(level)}, but this CPU \(.*\) runs oneDNN at most at avx2 "
                                                rf"\(no {missing} in /proc/cpuinfo\), so the cap would change nothing; "
                                                "choose one of sse41, avx, avx2"):
            isa.select(level, "--isa")
        assert isa.current_cap() == "" and "cap" not in isa._PROCESS
    with pytest.raises(SegcheckError, match="^segcheck.toml: key 'isa' asks for avx512, but this CPU"):
        isa.select("avx512", "segcheck.toml: key 'isa'")
    assert isa.select("avx2", "--isa") == "AVX2" and isa.current_cap() == "AVX2"


def test_a_process_keeps_the_cap_it_was_first_given(monkeypatch):
    """A process that selected its cap (the plugin does, before MXNet runs) refuses another later."""
    monkeypatch.setattr(isa, "_PROCESS", {"cap": isa.current_cap()})
    other = next(level for level in ("avx2", "avx512") if isa.CAPS[level] != isa.current_cap())
    with pytest.raises(SegcheckError, match=f"--isa: this process already runs oneDNN capped at .*; run {isa.CAPS[other]} in a new process"):
        isa.select(other, "--isa")
    assert isa.select(None, "again") == isa.current_cap()


def _fingerprint(cache, **env) -> dict:
    code = "import json, sys; from segcheck.measure import environment; print(json.dumps(environment.fingerprint(sys.argv[1]).to_dict()))"
    clean = {k: v for k, v in os.environ.items() if k not in isa.VARIABLES}
    done = subprocess.run([sys.executable, "-c", code, str(cache)], env={**clean, **env}, capture_output=True, text=True,
                          timeout=300, check=True)
    return json.loads(done.stdout)


def test_the_environment_key_follows_the_isa_cap_through_the_cache(tmp_path):
    """The regression: a cached probe from an uncapped run labelled a run under DNNL_MAX_CPU_ISA=AVX2 with the host's ISA."""
    host = _fingerprint(tmp_path)
    capped = _fingerprint(tmp_path, DNNL_MAX_CPU_ISA="AVX2")
    again = _fingerprint(tmp_path, DNNL_MAX_CPU_ISA="AVX2")
    assert capped == again and capped["isa"] == "avx2" and capped["onednn_isa"] == "avx2" and capped["cap"] == "AVX2"
    assert host["cap"] == "" and host["cpu"] == capped["cpu"] == isa.cpu_model()
    assert len(list(tmp_path.glob("environment-*.json"))) == 2
    if "avx512f" in isa.cpu_flags():
        assert host["isa"] != "avx2"


def test_on_a_cpu_with_amx_a_run_of_another_isa_says_what_amx_gives(tmp_path):
    from segcheck.results import report
    from segcheck.results.records import Figures, RunResults

    def run(isa_key, fp32_ms, int8_ms):
        results = RunResults(tier="synthetic", environment={"mxnet": "1.9.1", "onednn": "2.4.4", "isa": isa_key})
        m = results.model("fcn_resnet101_voc")
        m.setting, m.fp32, m.int8 = {"crop_size": 64}, Figures(latency_ms=fp32_ms), Figures(latency_ms=int8_ms)
        return results

    vnni = run("avx512_vnni", 60.0, 18.0)
    assert report.amx_note(vnni, tmp_path, cpu_has_amx=False) is None
    assert "`pytest --isa amx` (tox -e isa-amx) measures what it gives" in report.amx_note(vnni, tmp_path, cpu_has_amx=True)
    assert report.store_amx(vnni, tmp_path) is None  # only an AMX run stores its speed-ups
    assert report.store_amx(run("amx", 60.0, 13.4), tmp_path) == report.amx_path(tmp_path, vnni.environment)
    note = report.amx_note(vnni, tmp_path, cpu_has_amx=True)
    assert "under --isa amx the INT8 speed-ups were fcn_resnet101_voc 4.48x" in note and '"crop_size": 64' in note


def _topology(root, cores):
    """A fabricated /sys/devices/system/cpu: CPU i on (package, core) cores[i]."""
    for cpu, (package, core) in enumerate(cores):
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text(f"{package}\n")
        (folder / "core_id").write_text(f"{core}\n")
    return root


def test_physical_cores_count_a_cores_hyperthreads_once(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert threads.physical_cores(_topology(tmp_path / "ht", [(0, 0), (0, 1), (0, 0), (0, 1)])) == 2
    assert threads.physical_cores(_topology(tmp_path / "two", [(0, 0), (1, 0), (0, 1), (1, 1)])) == 4  # two packages
    assert threads.physical_cores(tmp_path / "unreadable") == 4  # no topology: the CPUs themselves


def test_omp_threads_are_set_where_unset_and_mxnet_not_loaded(monkeypatch):
    """MXNet's own default is half the logical CPUs: on a 2-core machine without hyperthreads, one thread of two."""
    monkeypatch.setattr(threads, "physical_cores", lambda: 6)
    monkeypatch.setenv(threads.VARIABLE, "3")
    assert threads.select() == 3 and os.environ[threads.VARIABLE] == "3"  # the user's setting is kept
    monkeypatch.delenv(threads.VARIABLE)
    assert threads.select() == max(1, (os.cpu_count() or 1) // 2) and threads.VARIABLE not in os.environ  # MXNet loaded
    monkeypatch.delitem(sys.modules, "mxnet")
    assert threads.select() == 6 and os.environ[threads.VARIABLE] == "6"


def test_the_threads_are_said_beside_every_figure_but_key_nothing(tmp_path, monkeypatch):
    """A calibration on another thread count may round a range apart, so a run's environment (its results, the rows
    and golden records it records) says the threads, as provenance: a record of another thread count still compares
    at the same tier."""
    monkeypatch.setenv(threads.VARIABLE, "3")
    found = environment.fingerprint(tmp_path)
    assert found.threads == 3 and found.provenance()["threads"] == 3 and found.to_dict()["threads"] == 3
    assert "threads" not in found.key()
    shown = report.markdown(RunResults(tier="synthetic", environment=found.to_dict()))  # the table's environment line
    assert f"cpu {found.cpu}, threads 3\n" in shown


@pytest.mark.parametrize("ini", [None, "pyproject.toml"], ids=["a-plain-folder", "this-repository's-configuration"])
def test_a_pytest_run_gives_mxnet_the_physical_cores(pytester, monkeypatch, ini):
    """The plugin sets OMP_NUM_THREADS before anything loads MXNet, where the environment did not: this repository's
    configuration included (its warning filters import the module of each warning class they name, and reading its
    segcheck.toml loads GluonCV's model zoo)."""
    monkeypatch.delenv(threads.VARIABLE, raising=False)
    if ini:
        shutil.copy(Path(__file__).parents[1] / "segcheck.toml", pytester.path)
    pytester.makepyfile(test_omp="import os\n\ndef test_threads():\n    print('threads', os.environ.get('OMP_NUM_THREADS'))\n")
    config = ["-c", str(Path(__file__).parents[1] / ini), f"--rootdir={pytester.path}"] if ini else []
    done = pytester.runpytest_subprocess(*config, "-s", "-p", "no:cacheprovider", "test_omp.py")
    done.assert_outcomes(passed=1)
    assert f"threads {threads.physical_cores()}" in done.stdout.str()

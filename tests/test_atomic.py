"""Atomic writes (segcheck.atomic): a reader sees the old file or the new one; a link, a pipe or a folder in the way is
handled or named, never replaced."""

import errno
import io
import os
import threading

import pytest

from segcheck import atomic
from segcheck.cli import commands
from segcheck.errors import SegcheckError
from segcheck.results import report
from segcheck.results.records import Figures, RunResults


def test_a_link_keeps_pointing_at_its_file_which_gets_the_new_contents(tmp_path):
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("old")
    link.symlink_to(real)
    assert atomic.write_text(link, "new") == real
    assert link.is_symlink() and real.read_text() == "new"
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    with pytest.raises(SegcheckError, match="loop.json: a symbolic link that leads nowhere"):
        atomic.write_text(loop, "x")


def test_a_pipe_is_written_as_a_stream_also_through_a_link_and_stays_a_pipe(tmp_path):
    """As /dev/stdout is: a link to the pipe or terminal the process writes to."""
    pipe, link, got = tmp_path / "pipe", tmp_path / "stdout", []
    os.mkfifo(pipe)
    link.symlink_to(pipe)
    reader = threading.Thread(target=lambda: got.append(pipe.read_text()), daemon=True)
    reader.start()
    atomic.write_text(link, "streamed")
    reader.join(10)
    assert got == ["streamed"] and pipe.is_fifo() and link.is_symlink()


def test_a_folder_or_a_full_disk_is_one_error_naming_the_file_and_the_old_file_stays(tmp_path, monkeypatch, capsys):
    with pytest.raises(SegcheckError, match=rf"^{tmp_path} is a folder; name a file to write$"):
        atomic.write_text(tmp_path, "x")
    results = report.save(RunResults(tier="synthetic", convention="present"), tmp_path / "results.json")
    target = tmp_path / "out.json"
    target.write_text("old")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(OSError, match=f"No space left on device: '{target}'"):
        atomic.write_text(target, "new")
    assert commands.main(["report", "--results", str(results), "--json", str(target)]) == 2
    assert f"segcheck: error: {target}: No space left on device" in capsys.readouterr().err
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "results.json"]


def test_a_commands_outputs_are_written_as_one_so_a_failing_second_leaves_the_first_unwritten(tmp_path, capsys):
    """report --json ok --png <unwritable>: before, the JSON was written and then the chart failed."""
    run = RunResults(tier="synthetic", convention="present")
    model = run.model("fcn_resnet101_voc")
    model.fp32, model.int8 = Figures(pixacc=92.5, miou=66.1, latency_ms=100.0), Figures(pixacc=92.4, miou=65.9, latency_ms=40.0)
    results = report.save(run, tmp_path / "results.json")
    (tmp_path / "a-file").write_text("")
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    args = ["report", "--results", str(results), "--json", str(kept), "--png", str(tmp_path / "a-file" / "chart.png")]
    assert commands.main(args) == 2
    assert f"cannot create folder {tmp_path / 'a-file'}" in capsys.readouterr().err
    assert kept.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "kept.json", "results.json"]
    assert commands.main(args[:-2]) == 0 and kept.read_text() != "old"


def test_a_full_disk_met_when_the_buffer_is_flushed_or_on_a_device_names_the_file(tmp_path, monkeypatch):
    """A small file's write only fills Python's buffer: the full disk comes at flush, and again at close."""
    target = tmp_path / "small.json"
    target.write_text("old")

    class Full(io.BytesIO):
        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    fdopen = atomic.os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: (fdopen(fd, mode).close(), Full())[1])
    with pytest.raises(OSError, match=f"No space left on device: '{target}'"):
        atomic.write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["small.json"]
    with pytest.raises(OSError, match="No space left on device: '/dev/full'"):
        atomic.write_text("/dev/full", "x")

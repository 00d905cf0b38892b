"""Atomic writes (segcheck.atomic): a reader sees the old file or the new one; a link, a pipe or a folder in the way is
handled or named, never replaced."""

import errno
import os
import threading

import pytest

from segcheck import atomic
from segcheck.cli import commands
from segcheck.errors import SegcheckError
from segcheck.results import report
from segcheck.results.records import RunResults


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

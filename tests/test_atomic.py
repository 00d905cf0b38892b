"""Atomic writes (segcheck.atomic): a reader sees the old file or the new one; a link, a pipe or a folder in the way is
handled or named, never replaced."""

import errno
import os
import threading

import pytest

from segcheck import atomic
from segcheck.errors import SegcheckError


def test_a_link_keeps_pointing_at_its_file_which_gets_the_new_contents(tmp_path):
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("old")
    link.symlink_to(real)
    assert atomic.write_text(link, "new") == real
    assert link.is_symlink() and real.read_text() == "new"


def test_a_pipe_is_written_as_a_stream_and_stays_a_pipe(tmp_path):
    pipe, got = tmp_path / "pipe", []
    os.mkfifo(pipe)
    reader = threading.Thread(target=lambda: got.append(pipe.read_text()), daemon=True)
    reader.start()
    atomic.write_text(pipe, "streamed")
    reader.join(10)
    assert got == ["streamed"] and pipe.is_fifo()


def test_a_folder_or_a_full_disk_is_one_error_and_the_old_file_stays(tmp_path, monkeypatch):
    with pytest.raises(SegcheckError, match=rf"^{tmp_path} is a folder; name a file to write$"):
        atomic.write_text(tmp_path, "x")
    target = tmp_path / "results.json"
    target.write_text("old")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(SegcheckError, match=r"cannot write .*results.json \(No space left on device\); the old file"):
        atomic.write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]

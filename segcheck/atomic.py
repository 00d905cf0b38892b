"""Atomic writes: a reader sees the old file or the new one, never a half-written one."""

import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import SegcheckError


def ensure_writable(folder: Path, remedy: str = "choose a writable location") -> None:
    """Create `folder` if need be; one clear error when it cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SegcheckError(f"cannot create folder {folder} ({err.strerror}); {remedy}") from None
    if not os.access(folder, os.W_OK):
        raise SegcheckError(f"folder {folder} is not writable; {remedy}")


def digest(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


_DIGESTS: dict = {}  # (device, inode) -> ((size, mtime, ctime), digest) of a file hashed long enough after its last change
RACY_NS = 2_000_000_000  # a file changed this close before its hashing may change again within one timestamp tick


def digest_of(path) -> str:
    """digest(path), read again when the file's size, mtime or ctime changed since this process read it, by this path
    or another (a file linked into another cache is the same inode). A file read within RACY_NS of its last change is
    not remembered: a same-size rewrite in the same timestamp tick would otherwise go unseen (git's racy rule)."""
    began = time.time_ns()
    now = _stat_stamp(path)
    inode, stamp = tuple(now[:2]), tuple(now[2:])
    if _DIGESTS.get(inode, (None,))[0] == stamp:
        return _DIGESTS[inode][1]
    found = digest(path)
    if max(stamp[1:]) < began - RACY_NS:
        _DIGESTS[inode] = (stamp, found)
    return found


def _stat_stamp(path) -> list:
    """[device, inode, size, mtime, ctime] of `path`: the memo's key (the first two) and the stat it holds a digest under."""
    stat = Path(path).stat()
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def stamp_of(path) -> list | None:
    """[device, inode, size, mtime, ctime, digest] of `path` where this process remembers its digest under that stat
    (it was read after the racy window), else None: what a later process may take through `trust`."""
    stamp = _stat_stamp(path)
    held = _DIGESTS.get(tuple(stamp[:2]))
    return stamp + [held[1]] if held is not None and list(held[0]) == stamp[2:] else None


def trust(path, stamp) -> None:
    """Take the digest in `stamp` (stamp_of's, from a process that read `path`) as the file's while its stat is still the
    stamp's: digest_of then reads the file only once its stat changes (git's index does the same). Any write sets the
    ctime to the clock's time. A stamp of another stat or shape is ignored, and a digest this process read is kept."""
    now = _stat_stamp(path)
    if isinstance(stamp, list) and len(stamp) == 6 and stamp[:5] == now and isinstance(stamp[5], str):
        _DIGESTS.setdefault(tuple(now[:2]), (tuple(now[2:]), stamp[5]))


def files_digest(paths) -> str:
    """The contents of several files, in order."""
    return hashlib.sha256("\n".join(digest_of(p) for p in paths).encode()).hexdigest()[:20]


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def resolved(path) -> Path:
    """`path` with every symbolic link followed; a loop is one error naming it."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # Python 3.11 raises RuntimeError on a loop
        raise SegcheckError(f"{path}: a symbolic link that leads nowhere (a loop); name a file") from None


def write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and an atomic rename. A symlink to a file
    has its target replaced, not the link; a device or a pipe (/dev/stdout, also through its link), which no rename may
    replace, is written as a stream; a folder is one error naming it. A write that fails (a full disk) leaves the old
    file and no temporary file, and raises the OSError (the command line names its file)."""
    return write_all({path: data})[0]


def write_into(path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file beside it and one rename, into its folder as it stands: a folder
    removed meanwhile (a cache entry another process rebuilt) is an OSError, never made again."""
    path = Path(path)
    tmp = _staged(path, data)
    try:
        with _naming(path):
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_all(files: dict) -> list:
    """Write several files (path -> bytes) as one, each as write_bytes does: every file is checked and staged beside
    its target before any replaces its target, so a failure up to then (a folder in the way, a full disk) replaces no
    file and leaves no temporary one. Returns the paths written, in order."""
    targets = [(_target(path), data) for path, data in files.items()]
    staged = []
    try:
        for target, data in targets:
            if not target.stream:
                staged.append((_staged(target.path, data), target.path))
        for target, data in targets:
            if target.stream:
                with _naming(target.path), open(target.path, "wb") as stream:
                    stream.write(data)
        for tmp, path in staged:
            with _naming(path):
                os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
    return [target.path for target, _ in targets]


@dataclass(frozen=True)
class _Target:
    path: Path
    stream: bool  # a device or a pipe: written in place, no rename can replace it


def _target(path) -> _Target:
    """Where a write of `path` goes: the file a symlink leads to; a stream as such; a folder is one error naming it."""
    path = Path(path)
    try:
        found = os.stat(path)  # through links: /dev/stdout leads to a pipe or a terminal
    except (OSError, ValueError):
        found = None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise SegcheckError(f"{path} is a folder; name a file to write")
    if found is not None and not stat.S_ISREG(found.st_mode):
        return _Target(path, True)
    path = resolved(path) if path.is_symlink() else path
    ensure_writable(path.parent)
    return _Target(path, False)


def _staged(path: Path, data: bytes) -> str:
    """A temporary file beside `path` holding `data`, flushed to disk, with the mode `path` has or would get."""
    tmp = None
    try:
        with _naming(path):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; keep the file's mode, or the usual default
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        return tmp
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _naming(path: Path):
    """An OSError that names no file (a full disk, also where closing the file raised it again) names `path`."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def outputs_apart(outputs: dict, inputs) -> None:
    """Each output a command was asked to write (option -> path; None where not given) is neither one of its `inputs`
    nor another output, and can be written (no folder in its way; its folder made if need be): one error naming it
    otherwise, before the command's work and before anything is written."""
    taken = {resolved(p): f"the input {p}" for p in inputs if p is not None}
    for option, path in outputs.items():
        if path is None:
            continue
        try:
            _target(path)
        except SegcheckError as err:
            raise SegcheckError(f"{option}: {err}") from None
        where = resolved(path)
        if where in taken:
            raise SegcheckError(f"{option} {path} is {taken[where]}, which it would overwrite; name another file")
        taken[where] = f"also {option}'s output"


def write_outputs(outputs: dict, out) -> None:
    """A command's outputs (label -> (path, a function making its bytes); path None where not asked for) written as one
    by write_all, each then named on `out` as "label: path"."""
    asked = {label: (path, make) for label, (path, make) in outputs.items() if path}
    written = write_all({path: make() for path, make in asked.values()})
    for label, path in zip(asked, written):
        print(f"{label}: {path}", file=out)


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def json_bytes(obj) -> bytes:
    """`obj` as the indented JSON every segcheck file holds."""
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8")


def write_json(path, obj) -> Path:
    return write_bytes(path, json_bytes(obj))


@contextmanager
def staged_dir(final):
    """Yield a fresh temporary folder beside `final`; on success it replaces `final` in one rename."""
    final = Path(final)
    ensure_writable(final.parent)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

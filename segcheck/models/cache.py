"""A content-addressed cache of built, fitted and calibrated models.

An entry is a folder named by the hash of everything that changes its content, holding its files
and a manifest with their sha256. Entries are written to a staging folder and published with one
rename under a file lock; a damaged entry (missing file, wrong hash, unreadable manifest) is
rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import portalocker

from .. import atomic
from ..errors import SegcheckError

FORMAT = 1
log = logging.getLogger("segcheck.cache")


# What reads, decodes or computes a cached entry besides segcheck's own modelling: the distributions (Pillow and OpenCV
# decode the images), libmxnet.so itself (two builds may carry one version string), segcheck's own image reading.
DISTRIBUTIONS = ("mxnet", "mxnet-mkl", "gluoncv", "numpy", "pillow", "opencv-python")


def versions() -> dict:
    """What a cached model or evaluation depends on besides its own inputs: the installed distributions' versions, the
    digest of the libmxnet.so in use, and the digest of segcheck's image reading (data/loaders.py)."""
    import mxnet as mx

    from ..data import loaders

    found = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    found["libmxnet"] = atomic.digest_of(mx.libinfo.find_lib_path()[0])[:16]
    found["reader"] = atomic.digest_of(loaders.__file__)[:16]
    return found


def key_of(fields: dict) -> str:
    text = json.dumps({"format": FORMAT, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Entry:
    path: Path
    manifest: dict
    built: bool  # True when this call built it, False when it was found intact

    def file(self, name: str) -> Path:
        return self.path / name


def _intact(folder: Path, key: str) -> tuple:
    """(manifest, '') of an intact entry; (None, why) when anything is off ('' for an absent entry), the reason logged.

    Files are checked against their sha256 through atomic.digest_of, which reads a file again only when its stat
    changed or it was changed just before its last read (one memo, with one rule, for every path to it).
    """
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("key") != key:
            raise ValueError("manifest belongs to another key")
        stamps = _trusted_stamps(folder, manifest["files"])
        for name, digest in manifest["files"].items():
            if atomic.digest_of(folder / name) != digest:
                raise ValueError(f"{name} does not match its sha256")
        _keep_stamps(folder, manifest["files"], stamps)
        return manifest, ""
    except FileNotFoundError as err:
        why = f"{Path(err.filename).name} missing" if folder.exists() else ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        why = str(err)
    if why:
        log.warning("cache entry %s is damaged (%s); rebuilding it", folder, why)
    return None, why


STAMPS = "stamps.json"  # in an entry: each file's stat and digest when a process last found it intact (atomic.stamp_of)


def _trusted_stamps(folder: Path, files: dict) -> dict:
    """The entry's stamps; those that carry the manifest's digest go to atomic.trust, so that a process does not read
    200 MB of weights again that another one has checked and that no write has touched since. {} where none are."""
    try:
        stamps = json.loads((folder / STAMPS).read_text())
        for name, digest in files.items():
            if name in stamps and stamps[name][5:] == [digest]:
                atomic.trust(folder / name, stamps[name])
        return stamps
    except (OSError, ValueError, TypeError, AttributeError, KeyError, RecursionError):
        return {}  # none yet, or unreadable: every file is read


def _keep_stamps(folder: Path, files: dict, before: dict) -> None:
    """Record the stat of the entry's files just found intact, where it is new and no file is within the racy window
    (atomic.RACY_NS). Written only into the folder as it stands (never made again if another process removed it), by
    one rename; a cache that cannot be written only means that the next process reads the files again."""
    try:
        stamps = {name: atomic.stamp_of(folder / name) for name in files}
        if None not in stamps.values() and stamps != before:
            atomic.write_into(folder / STAMPS, atomic.json_bytes(stamps))
    except OSError as err:
        log.info("could not keep the stat of %s's files (%s): the next process reads them again", folder, err)


REBUILT = "rebuilt.jsonl"  # beside the entries: one line per damaged entry rebuilt, from whichever process rebuilt it
RUN_ID = "SEGCHECK_RUN_ID"  # set by the run (inherited by its workers and children): whose rebuilds a note tells of


def _note_rebuilt(folder: Path, why: str) -> None:
    """A damaged entry this process has rebuilt, noted beside the entries (a forked child rebuilds most of them), so
    that the run it belongs to says so."""
    line = json.dumps({"time": time.time(), "run": os.environ.get(RUN_ID, ""), "entry": folder.name, "why": why}) + "\n"
    try:
        with open(folder.parent / REBUILT, "a", encoding="utf-8") as out:  # one short append: whole lines
            out.write(line)
    except OSError:
        pass  # the warning logged when it was found still says it


def rebuilt_since(cache_dir, started: float, run: str = "") -> list:
    """One warning per damaged entry rebuilt since `started` by the run `run` (its RUN_ID)."""
    try:
        lines = (Path(cache_dir) / "models" / REBUILT).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            note = json.loads(line)
            if note["time"] >= started and note.get("run", "") == run:
                found.append(f"cache entry {note['entry']} was damaged ({note['why']}) and was rebuilt")
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return list(dict.fromkeys(found))


def entries(cache_dir, kind: str) -> list:
    """The folders of `kind`'s entries, sorted (exactly that kind: "int8" does not list "int8-eval" entries)."""
    named = re.compile(rf"{re.escape(kind)}-[0-9a-f]{{20}}")
    return sorted(p for p in (Path(cache_dir) / "models").glob(f"{kind}-*") if named.fullmatch(p.name))


def find(cache_dir, kind: str, fields: dict) -> Entry | None:
    """The intact entry for `fields`, or None (absent or damaged: get_or_build makes it)."""
    key = key_of({"kind": kind, **fields})
    folder = Path(cache_dir) / "models" / f"{kind}-{key}"
    manifest, _ = _intact(folder, key)
    return None if manifest is None else Entry(folder, manifest, built=False)


def get_or_build(cache_dir, kind: str, fields: dict, build) -> Entry:
    """The entry for `fields`, built by `build(folder) -> dict of extra manifest data` when absent or damaged."""
    found = find(cache_dir, kind, fields)
    if found is not None:
        return found
    root = Path(cache_dir) / "models"
    key = key_of({"kind": kind, **fields})
    folder = root / f"{kind}-{key}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = portalocker.Lock(str(root / f".{kind}-{key}.lock"), timeout=3600)
    except OSError as err:
        raise SegcheckError(f"cache folder {root} is not writable ({err.strerror}); pass --segcheck-cache or set $SEGCHECK_CACHE_DIR") from None
    with lock:
        manifest, why = _intact(folder, key)  # another process may have built it while we waited
        if manifest is not None:
            return Entry(folder, manifest, built=False)
        with atomic.staged_dir(folder) as tmp:
            extra = build(tmp) or {}
            files = {p.name: atomic.digest_of(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            manifest = {"key": key, "kind": kind, "fields": fields, "files": files, **extra}
            atomic.write_json(tmp / "manifest.json", manifest)
    if why:
        _note_rebuilt(folder, why)
    return Entry(folder, manifest, built=True)


def clear(cache_dir) -> None:
    shutil.rmtree(Path(cache_dir) / "models", ignore_errors=True)

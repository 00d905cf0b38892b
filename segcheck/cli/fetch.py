"""`segcheck fetch`: the one explicit, opt-in command that downloads, and the only code in segcheck that touches the network.

Weights go through GluonCV's own model store (its URLs, the $MXNET_GLUON_REPO mirror, its lock, unzip and sha1
check); datasets are the official archives with the sha1s of GluonCV's scripts/datasets. Every download goes to
<file>.part, resumes with an HTTP Range request, and is renamed into place only once complete and verified; an
archive is extracted into a staging folder that is renamed into place, so an interruption never leaves a
half-written file or folder where the gate looks.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import os
import re
import socket
import sys
import tarfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import requests
import urllib3
from tqdm import tqdm

from .. import atomic
from ..config import options
from ..config.networks import seed_networks
from ..data.kinds import dataset
from ..errors import SegcheckError

CHUNK = 1 << 20
TIMEOUT = (30, 60)  # seconds to connect, and to wait for the next bytes
RETRY = "check the network connection and run the same command again"
MIRROR = "check the network connection (or set $MXNET_GLUON_REPO to a reachable mirror) and run the same command again"


@dataclass(frozen=True)
class Archive:
    """One published archive of a dataset: where it is, its sha1, and the folder of it the loaders read."""

    part: str  # its name for --parts
    url: str
    sha1: str  # as published in GluonCV's scripts/datasets
    filename: str  # kept as <root>/<filename>(.part) until extracted
    inner: str  # the folder inside the archive that becomes <root>/<its last component>
    size: str  # for --help

    @property
    def folder(self) -> str:
        return PurePosixPath(self.inner).name


# GluonCV's scripts/datasets/pascal_voc.py and mscoco.py; COCO's smaller parts first.
ARCHIVES = {
    "voc": [
        Archive("trainval", "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                "4e443f8a2eca6b1dac8a6c57641b67dd40621a49", "VOCtrainval_11-May-2012.tar", "VOCdevkit/VOC2012", "1.9 GB"),
    ],
    "coco": [
        Archive("annotations", "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                "8551ee4bb5860311e79dace7e79cb91e432e78b3", "annotations_trainval2017.zip", "annotations", "241 MB"),
        Archive("val", "http://images.cocodataset.org/zips/val2017.zip",
                "4950dc9d00dbe1c933ee0170f5797584351d2a41", "val2017.zip", "val2017", "778 MB"),
        Archive("train", "http://images.cocodataset.org/zips/train2017.zip",
                "10ad623668ab00c62c096f0ed636d6aff41faca5", "train2017.zip", "train2017", "18 GB"),
    ],
}
DATASET_KEYS = {"voc": "pascal_voc", "coco": "coco"}
# Python 3.11.4+ refuses tar members that would land outside the folder (PEP 706); 3.11.0-3.11.3 lack the option.
SAFE_TAR = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def human(size: int) -> str:
    """A byte count for a message: 1.9 GB, 241 MB."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1000


def _sha1(path: Path) -> str:
    """A file's sha1, as GluonCV and the dataset scripts publish them."""
    return atomic.digest(path, "sha1")


def _part(target: Path) -> Path:
    """Where `target` is downloaded to until it is complete and verified."""
    return target.with_name(target.name + ".part")


def _one_line(err: BaseException) -> str:
    """An exception's message on one line, for a SegcheckError."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _causes(err: BaseException):
    """`err` and everything it wraps: requests -> urllib3 -> the socket error."""
    seen, todo = set(), [err]
    while todo:
        cause = todo.pop(0)
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        wrapped = [a for a in (getattr(cause, "reason", None), *cause.args) if isinstance(a, BaseException)]
        todo.extend([*wrapped, cause.__cause__, cause.__context__])


def _why_stopped(err: BaseException) -> str:
    """Why a transfer stopped part-way, in a few words."""
    causes = list(_causes(err))
    if any(isinstance(c, (urllib3.exceptions.ReadTimeoutError, TimeoutError)) for c in causes):
        return f"no data for {TIMEOUT[1]} s"
    if any(isinstance(c, (urllib3.exceptions.IncompleteRead, http.client.IncompleteRead)) for c in causes):
        return "the server closed the connection early"
    if any(isinstance(c, ConnectionResetError) for c in causes):
        return "the connection was reset"
    return _one_line(err)


def unreachable(url: str, err: BaseException, remedy: str = RETRY) -> SegcheckError:
    """One line for a connection that could not be made: no network, no DNS, refused, timed out."""
    parts = urlsplit(url)
    causes = list(_causes(err))
    if any(isinstance(c, OSError) and c.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN) for c in causes):
        return SegcheckError(f"cannot download {url}: the network is unreachable (no network?); {remedy}")
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return SegcheckError(f"cannot download {url}: {parts.hostname}:{parts.port or 80} refused the connection "
                             f"(server down or wrong address); {remedy}")
    if any(isinstance(c, socket.gaierror) for c in causes):
        return SegcheckError(f"cannot download {url}: the host name {parts.hostname} does not resolve (no network or no DNS); {remedy}")
    if isinstance(err, requests.Timeout):
        return SegcheckError(f"cannot download {url}: timed out connecting to {parts.hostname}; {remedy}")
    return SegcheckError(f"cannot download {url}: {_one_line(err)}; {remedy}")


def disk_full(what: str, folder: Path, needed: int | None) -> SegcheckError:
    """One line for ENOSPC: what was being written, in which folder, and how much more it needs."""
    amount = f"about {human(needed)} more is needed" if needed else "the space needed is unknown"
    return SegcheckError(f"disk full {what} in {folder}: {amount}; free space there (or choose another folder) "
                         "and run the same command again")


def _range_total(value: str | None, start: int | None = None) -> int | None:
    """The total size in a Content-Range header; None when absent or (given `start`) not starting there."""
    found = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)|bytes \*/(\d+)", (value or "").strip())
    if not found:
        return None
    first, total, unsatisfied = found.groups()
    if start is not None and (first is None or int(first) != start):
        return None
    size = total or unsatisfied
    return int(size) if size and size != "*" else None


def _transfer(session: requests.Session, url: str, part: Path, remedy: str) -> None:
    """Bring `part` up to the whole of `url`: resume it where the server honours Range (206), else restart."""
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        response = session.get(url, headers=headers, stream=True, timeout=TIMEOUT)
    except requests.RequestException as err:
        raise unreachable(url, err, remedy) from None
    with response:
        status, content_range = response.status_code, response.headers.get("Content-Range")
        if have and status == 416 and _range_total(content_range) == have:
            return  # complete already: only the rename was missing
        if status == 200 or (have and status == 206 and _range_total(content_range, start=have) is not None):
            length = response.headers.get("Content-Length")
            total = _range_total(content_range) if status == 206 else int(length) if length and length.isdigit() else None
            _save(response, url, part, have if status == 206 else 0, total, remedy)
            return
        if not (have and status in (206, 416)):
            raise SegcheckError(f"cannot download {url}: the server answered HTTP {status} {response.reason}; "
                                "check the address (or the mirror) and run the same command again")
    part.unlink()  # a range the server cannot serve as asked: start over
    _transfer(session, url, part, remedy)


def _save(response: requests.Response, url: str, part: Path, start: int, total: int | None, remedy: str) -> None:
    """Write the body to `part` (appending from `start`), and fail clearly when it stops short or the disk fills."""
    written = start
    stream = response.raw.stream(CHUNK, decode_content=False)
    try:
        with open(part, "ab" if start else "wb") as handle, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=part.name[:-5], disable=None) as bar:
            while True:
                try:
                    chunk = next(stream, None)
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
                    raise SegcheckError(f"download of {url} stopped after {human(written)}"
                                        f"{f' of {human(total)}' if total else ''} ({_why_stopped(err)}); {part} is kept: "
                                        f"{remedy} to resume") from None
                if chunk is None:
                    break
                handle.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise disk_full(f"writing {part.name}", part.parent, total - written if total else None) from None
        raise
    if total is not None and written < total:
        raise SegcheckError(f"download of {url} stopped after {human(written)} of {human(total)}; {part} is kept: "
                            f"{remedy} to resume")


def download(url: str, target, sha1: str | None = None, reuse: bool = True, remedy: str = RETRY) -> Path:
    """`url` saved as `target` through `<target>.part`, resumed if a rerun finds one; `target` appears only complete
    and, when `sha1` is given, verified. With `reuse`, a `target` already there (and verified) is kept as it is."""
    target = Path(target)
    if reuse and target.is_file() and (sha1 is None or _sha1(target) == sha1):
        return target
    atomic.ensure_writable(target.parent)
    part = _part(target)
    with requests.Session() as session:
        _transfer(session, url, part, remedy)
    if sha1 is not None:
        actual = _sha1(part)
        if actual != sha1:
            part.unlink()
            raise SegcheckError(f"{url}: the downloaded {target.name} has sha1 {actual}, expected {sha1}; removed it: "
                                "run the same command again, and if it recurs the server holds another file")
    os.replace(part, target)
    return target


def _zip_entries(zf: zipfile.ZipFile, prefix: str, bar):
    """The zip's entries below `prefix`, renamed to drop it."""
    for info in zf.infolist():
        if info.filename.startswith(prefix) and info.filename != prefix:
            info.filename = info.filename[len(prefix):]
            bar.update()
            yield info


def _tar_entries(tar: tarfile.TarFile, prefix: str, bar):
    """The tar's members below `prefix`, renamed to drop it."""
    for member in tar:
        if member.name.startswith(prefix) and member.name != prefix:
            member.name = member.name[len(prefix):]
            if member.islnk() and member.linkname.startswith(prefix):
                member.linkname = member.linkname[len(prefix):]
            bar.update()
            yield member


def _unpacked_size(archive: Path, prefix: str) -> int | None:
    """The bytes the entries under `prefix` take once extracted (for a full-disk message)."""
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                return sum(i.file_size for i in zf.infolist() if i.filename.startswith(prefix))
        with tarfile.open(archive) as tar:
            return sum(m.size for m in tar if m.name.startswith(prefix))
    except (OSError, zipfile.BadZipFile, tarfile.TarError):
        return None


def unpack(archive: Path, inner: str, final: Path) -> Path:
    """The folder `inner` of `archive` (.zip or .tar) as `final`, extracted beside it and renamed into place."""
    prefix = inner.strip("/") + "/"
    try:
        with atomic.staged_dir(final) as staging, tqdm(unit=" files", desc=f"extracting {final.name}", disable=None) as bar:
            if archive.suffix == ".zip":
                with zipfile.ZipFile(archive) as zf:
                    for info in _zip_entries(zf, prefix, bar):
                        zf.extract(info, staging)
            else:
                with tarfile.open(archive) as tar:
                    tar.extractall(staging, members=_tar_entries(tar, prefix, bar), **SAFE_TAR)
            if not any(staging.iterdir()):
                raise SegcheckError(f"{archive}: holds no {prefix} folder, so it is not the expected archive; "
                                    "remove it and run the same command again")
    except (zipfile.BadZipFile, tarfile.TarError) as err:
        raise SegcheckError(f"{archive}: cannot be extracted ({_one_line(err)}); remove it and run the same command again") from None
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise disk_full(f"extracting {archive.name}", final.parent, _unpacked_size(archive, prefix)) from None
        raise
    return final


def fetch_dataset(key: str, root: Path, parts=None, out=sys.stdout) -> list:
    """Download, verify and lay out dataset `key`'s archives (`parts` of them, default all) under `root`."""
    chosen = [a for a in ARCHIVES[key] if parts is None or a.part in parts]
    atomic.ensure_writable(root, "choose another --root")
    done = []
    for archive in chosen:
        final = root / archive.folder
        if final.exists():
            print(f"{final}: already there (remove it to fetch it again)", file=out)
        else:
            local = download(archive.url, root / archive.filename, archive.sha1)
            unpack(local, archive.inner, final)
            local.unlink()
            print(f"{final}: extracted from {archive.filename} (sha1 verified)", file=out)
        done.append(final)
    return done


def _store_url(model_store, file_name: str) -> str:
    """The address GluonCV's get_model_file downloads `file_name` from (for messages)."""
    repo = os.environ.get("MXNET_GLUON_REPO", model_store.apache_repo_url)
    return model_store._url_format.format(repo_url=repo if repo.endswith("/") else repo + "/", file_name=file_name)


def _store_download(url, path=None, overwrite=False, sha1_hash=None):
    """gluoncv.utils.download's signature, done by segcheck's resumable, atomic download."""
    return str(download(url, Path(path), sha1_hash, reuse=not overwrite, remedy=MIRROR))


@contextmanager
def _segcheck_transport(model_store):
    """GluonCV's get_model_file with segcheck's download underneath: GluonCV's own writes the zip in place,
    cannot resume and raises a bare RuntimeError; its URL, lock, unzip and sha1 check stay GluonCV's."""
    original = model_store.download
    model_store.download = _store_download
    try:
        yield
    finally:
        model_store.download = original


def _store_file(model_store, name: str, root: Path) -> Path:
    """One verified file of GluonCV's model store, fetched by GluonCV's get_model_file when absent or damaged."""
    file_name = f"{name}-{model_store.short_hash(name)}"
    params, archive = root / f"{file_name}.params", root / f"{file_name}.zip"
    expected = model_store._model_sha1[name]
    try:
        return Path(model_store.get_model_file(name, root=str(root)))
    except ValueError:
        if not params.is_file() or _sha1(params) == expected:
            raise
        actual = _sha1(params)
        params.unlink()
        raise SegcheckError(f"{_store_url(model_store, file_name)}: the unpacked {params.name} has sha1 {actual}, "
                            f"GluonCV expects {expected}; removed it: run the same command again, and if it recurs "
                            "the mirror ($MXNET_GLUON_REPO) holds another file") from None
    except zipfile.BadZipFile:
        archive.unlink(missing_ok=True)
        raise SegcheckError(f"{_store_url(model_store, file_name)}: not a zip archive; removed {archive.name}: check the "
                            "mirror ($MXNET_GLUON_REPO) and run the same command again") from None
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        needed = _unpacked_size(archive, "")
        params.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
        raise disk_full(f"unpacking {archive.name}", root, needed) from None


def fetch_weights(names, out=sys.stdout) -> list:
    """GluonCV's pretrained weights for `names`, in its model store ($MXNET_HOME/models), sha1-verified."""
    from gluoncv.model_zoo import model_store

    from ..config.run import mxnet_home

    published = model_store._model_sha1
    for name in names:
        if name not in published:
            close = get_close_matches(name, published, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SegcheckError(f"GluonCV publishes no pretrained weights named {name!r}{hint}; "
                                "name a model-zoo network from gluoncv.model_zoo.pretrained_model_list()")
    root = mxnet_home() / "models"
    atomic.ensure_writable(root, "set $MXNET_HOME to a writable folder")
    paths = []
    with _segcheck_transport(model_store):
        for name in names:
            paths.append(_store_file(model_store, name, root))
            print(f"{name}: {paths[-1]} (sha1 verified)", file=out)
    return paths


def default_weights(folder: Path) -> tuple:
    """The store names of the models configured for `folder`; without a configuration, the tutorial's six."""
    from ..config.project import STORE, find

    project = find(folder, None, folder)
    if project is None:
        return tuple(n.store_name for n in seed_networks())
    return tuple(dict.fromkeys(e.network.store_name for e in project.models if e.weights == STORE and e.network.export is None))


def _coco_parts(text: str) -> tuple:
    """--parts: known COCO parts, comma-separated."""
    known = [a.part for a in ARCHIVES["coco"]]
    parts = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not parts or any(p not in known for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: choose among {', '.join(known)}, comma-separated")
    return parts


def parser() -> options.Parser:
    """segcheck fetch weights [NAME ...] | voc [--root DIR] | coco [--root DIR] [--parts P,...]."""
    p = options.Parser(
        prog="segcheck fetch", description="Download what the gate reads, explicitly (nothing else in segcheck downloads): "
        "every file goes to <file>.part, resumes on a rerun, and is put in place only once complete and sha1-verified.")
    sub = p.add_subparsers(dest="what", required=True, metavar="{weights,voc,coco}")
    w = sub.add_parser("weights", help="GluonCV's pretrained weights into its model store ($MXNET_HOME/models)",
                       description="Fill GluonCV's model store ($MXNET_HOME/models, default ~/.mxnet/models) through GluonCV's "
                       "own get_model_file; $MXNET_GLUON_REPO names a mirror.")
    w.add_argument("names", nargs="*", metavar="NAME", help="model-zoo names (fcn_resnet101_voc, ...); default: the models the "
                   "segcheck configuration here takes from the store, else the tutorial's six ResNet-101 FCN, PSPNet and DeepLabV3")
    for key in ("voc", "coco"):
        kind = dataset(DATASET_KEYS[key])
        archives = ARCHIVES[key]
        d = sub.add_parser(key, help=f"{kind.key}: {', '.join(a.filename for a in archives)}",
                           description=f"Download {', '.join(f'{a.filename} ({a.size})' for a in archives)} with their "
                           f"published sha1s and lay them out under the root as {', '.join(f'<root>/{a.folder}/' for a in archives)}; "
                           "each archive is removed once extracted, and a folder already there is kept.")
        d.add_argument("--root", help=f"the dataset folder (default ${kind.env}, else {kind.default_root})")
    coco = sub.choices["coco"]
    coco.add_argument("--parts", type=_coco_parts, default=",".join(a.part for a in ARCHIVES["coco"]),
                      help="comma-separated, of " + ", ".join(f"{a.part} ({a.filename}, {a.size})" for a in ARCHIVES["coco"]) +
                      "; default all three: evaluation reads val and annotations, calibration the train split "
                      "(unless --calib-split val)")
    return p


def main(argv=None, out=sys.stdout) -> int:
    """Run `segcheck fetch`; a SegcheckError is the caller's to print (cli.main: one line, exit status 2)."""
    args = parser().parse_args(argv)
    if args.what == "weights":
        names = tuple(args.names) or default_weights(Path.cwd())
        if not names:
            print("nothing to fetch: the segcheck configuration here takes no weights from GluonCV's model store", file=out)
            return 0
        fetch_weights(names, out)
        return 0
    from ..config.run import resolve_root

    kind = dataset(DATASET_KEYS[args.what])
    root, source = (Path(args.root).expanduser(), "--root") if args.root else resolve_root(kind, None, None)
    parts = args.parts if args.what == "coco" else None
    print(f"fetching {kind.key} into {root} ({source})", file=out)
    fetch_dataset(args.what, root, parts, out)
    return 0

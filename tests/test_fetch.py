"""`segcheck fetch`, against a small HTTP server on 127.0.0.1 that each test starts: never a real host."""

import errno
import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from segcheck.cli import commands, fetch
from segcheck.errors import SegcheckError


@dataclass
class Site:
    """What the test server serves, how, and the requests it saw: (path, Range header, status)."""

    port: int
    files: dict = field(default_factory=dict)
    ranges: bool = True  # honour Range with 206
    cut: int | None = None  # send only this many body bytes, then close
    seen: list = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        site, asked = self.server.site, self.headers.get("Range")
        data = site.files.get(self.path)
        if data is None:
            site.seen.append((self.path, asked, 404))
            self.send_error(404)
            return
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked and site.ranges else 0
        status = 206 if asked and site.ranges else 200
        if start >= len(data) and status == 206:
            status, body = 416, b""
        else:
            body = data[start:]
        site.seen.append((self.path, asked, status))
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if status == 416:
            self.send_header("Content-Range", f"bytes */{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if site.cut is None else body[:site.cut])
        self.close_connection = True

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads


@contextmanager
def serving(site: Site | None = None):
    """A server on 127.0.0.1 in a thread, on a port of its own (serving `site`'s files where given), stopped and
    closed on exit. A port is never bound twice: another process may have taken it in between."""
    server = Server(("127.0.0.1", 0), Handler)
    server.site = replace(site, port=server.server_address[1]) if site else Site(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield server.site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def site():
    with serving() as served:
        yield served


@pytest.fixture
def closed_port():
    """A port of 127.0.0.1 that refuses connections: bound by this test (so no one else takes it) and never listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(autouse=True)
def local_only(monkeypatch, tmp_path):
    """No proxy between the tests and 127.0.0.1, and no real model store or dataset root."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet"))
    monkeypatch.delenv("MXNET_GLUON_REPO", raising=False)
    monkeypatch.chdir(tmp_path)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def tar_of(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_of(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


VOC_FILES = {
    "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt": b"2007_000033\n",
    "VOCdevkit/VOC2012/JPEGImages/2007_000033.jpg": bytes(range(256)) * 64,
    "VOCdevkit/VOC2012/SegmentationClass/2007_000033.png": b"\x89PNG" + bytes(4000),
}


def serve_voc(site, monkeypatch, data: bytes, checksum: str | None = None):
    """Serve `data` as the VOC archive, expected with `checksum` (default: its own)."""
    site.files["/voc/VOCtrainval_11-May-2012.tar"] = data
    archive = replace(fetch.ARCHIVES["voc"][0], url=site.url("/voc/VOCtrainval_11-May-2012.tar"), sha1=checksum or sha1(data))
    monkeypatch.setitem(fetch.ARCHIVES, "voc", [archive])
    return archive


def serve_coco(site, monkeypatch):
    contents = {
        "annotations": zip_of({"annotations/instances_val2017.json": b'{"images": []}',
                               "annotations/instances_train2017.json": b'{"images": []}'}),
        "val": zip_of({"val2017/000000000139.jpg": b"jpeg" * 100}),
        "train": zip_of({"train2017/000000000009.jpg": b"jpeg" * 100}),
    }
    archives = []
    for archive in fetch.ARCHIVES["coco"]:
        data = contents[archive.part]
        site.files[f"/coco/{archive.filename}"] = data
        archives.append(replace(archive, url=site.url(f"/coco/{archive.filename}"), sha1=sha1(data)))
    monkeypatch.setitem(fetch.ARCHIVES, "coco", archives)


@pytest.fixture
def store(site, monkeypatch, tmp_path):
    """GluonCV's model store pointed at the test server, publishing fcn_resnet101_voc as a small file."""
    from gluoncv.model_zoo import model_store

    params = b"not really weights" * 500
    monkeypatch.setitem(model_store._model_sha1, "fcn_resnet101_voc", sha1(params))
    monkeypatch.setenv("MXNET_GLUON_REPO", site.url("/mirror"))  # no trailing slash: GluonCV adds it
    file_name = f"fcn_resnet101_voc-{sha1(params)[:8]}"
    site.files[f"/mirror/gluon/models/{file_name}.zip"] = zip_of({f"{file_name}.params": params})
    calls = []
    original = model_store.get_model_file
    monkeypatch.setattr(model_store, "get_model_file", lambda *a, **k: calls.append((a, k)) or original(*a, **k))
    return tmp_path / "mxnet" / "models" / f"{file_name}.params", params, calls


def test_weights_go_through_gluoncv_model_store(store, site):
    path, params, calls = store
    out = io.StringIO()
    assert fetch.main(["weights", "fcn_resnet101_voc"], out=out) == 0
    assert path.read_bytes() == params
    assert calls and calls[0][1]["root"] == str(path.parent)
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == [path.name]
    assert f"fcn_resnet101_voc: {path} (sha1 verified)" in out.getvalue()
    requests_before = len(site.seen)
    fetch.main(["weights", "fcn_resnet101_voc"], out=io.StringIO())
    assert len(site.seen) == requests_before  # verified already: not downloaded again


def test_weights_with_the_wrong_sha1_are_removed(store, monkeypatch):
    from gluoncv.model_zoo import model_store

    path, params, _ = store
    wrong = path.name.split("-")[-1].removesuffix(".params") + "0" * 32
    monkeypatch.setitem(model_store._model_sha1, "fcn_resnet101_voc", wrong)
    with pytest.raises(SegcheckError) as err:
        fetch.main(["weights", "fcn_resnet101_voc"], out=io.StringIO())
    message = str(err.value)
    assert path.name in message and sha1(params) in message and wrong in message and "removed" in message
    assert not path.exists() and not path.with_suffix(".zip").exists()


def test_unknown_weights_name_is_a_clear_error(store, site):
    with pytest.raises(SegcheckError, match=r"no pretrained weights named 'fcn_resnet101_vocc' \(did you mean fcn_resnet101_voc"):
        fetch.main(["weights", "fcn_resnet101_voc", "fcn_resnet101_vocc"], out=io.StringIO())
    assert not site.seen  # every name is checked before anything is fetched


def test_default_weights_are_the_configured_store_models_else_the_tutorials(tmp_path):
    from gluoncv.model_zoo import model_store

    seed = fetch.default_weights(tmp_path)
    assert sorted(seed) == sorted(f"{a}_resnet101_{d}" for a in ("fcn", "psp", "deeplab") for d in ("voc", "coco"))
    assert all(n in model_store._model_sha1 for n in seed)
    (tmp_path / "segcheck.toml").write_text(
        '[[models]]\nnetwork = "psp_resnet101_ade"\n'
        '[[models]]\nname = "again"\nnetwork = "psp_resnet101_ade"\n'
        '[[models]]\nmodel = "fcn"\nbackbone = "resnet50"\nweights = "mine.params"\ndataset = { name = "pascal_voc" }\n'
        '[[models]]\nexport = "model/exported"\ndataset = { name = "pascal_voc" }\n')
    assert fetch.default_weights(tmp_path) == ("psp_resnet101_ade",)


def test_voc_is_laid_out_as_root_voc2012(site, monkeypatch, tmp_path):
    serve_voc(site, monkeypatch, tar_of(VOC_FILES))
    root = tmp_path / "voc"
    assert fetch.main(["voc", "--root", str(root)], out=io.StringIO()) == 0
    assert [p.name for p in root.iterdir()] == ["VOC2012"]  # no archive, .part or staging folder left
    for name, data in VOC_FILES.items():
        assert (root / name.removeprefix("VOCdevkit/")).read_bytes() == data
    fetch.main(["voc", "--root", str(root)], out=io.StringIO())
    assert len(site.seen) == 1  # there already: not downloaded again


def test_coco_parts_are_laid_out_under_root(site, monkeypatch, tmp_path):
    serve_coco(site, monkeypatch)
    root = tmp_path / "coco"
    assert fetch.main(["coco", "--root", str(root), "--parts", "val,annotations"], out=io.StringIO()) == 0
    assert sorted(p.name for p in root.iterdir()) == ["annotations", "val2017"]
    assert (root / "annotations" / "instances_val2017.json").is_file()
    assert (root / "val2017" / "000000000139.jpg").is_file()
    assert not any("train2017" in path for path, _, _ in site.seen)
    fetch.main(["coco", "--root", str(root)], out=io.StringIO())  # default: all three; two are there already
    assert sorted(p.name for p in root.iterdir()) == ["annotations", "train2017", "val2017"]
    assert len(site.seen) == 3


def test_full_disk_while_extracting_leaves_no_folder(site, monkeypatch, tmp_path):
    import shutil

    serve_coco(site, monkeypatch)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    copy = shutil.copyfileobj
    monkeypatch.setattr(shutil, "copyfileobj", full)  # what zipfile writes an entry with
    with pytest.raises(SegcheckError, match=rf"^disk full extracting val2017.zip in {tmp_path}: about 400 bytes more is needed"):
        fetch.fetch_dataset("coco", tmp_path, parts=("val",), out=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val2017.zip"]  # verified, kept for the rerun
    monkeypatch.setattr(shutil, "copyfileobj", copy)
    fetch.fetch_dataset("coco", tmp_path, parts=("val",), out=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val2017"]
    assert len(site.seen) == 1  # the archive was not downloaded again


def test_archive_without_the_expected_folder(site, monkeypatch, tmp_path):
    data = tar_of({"VOC2012/JPEGImages/a.jpg": b"jpeg"})
    serve_voc(site, monkeypatch, data)
    with pytest.raises(SegcheckError, match=r"VOCtrainval_11-May-2012.tar: holds no VOCdevkit/VOC2012/ folder"):
        fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    assert not (tmp_path / "VOC2012").exists()


def test_nothing_to_fetch_when_no_model_takes_store_weights(tmp_path):
    (tmp_path / "segcheck.toml").write_text(
        '[[models]]\nmodel = "fcn"\nbackbone = "resnet50"\nweights = "mine.params"\ndataset = { name = "pascal_voc" }\n')
    out = io.StringIO()
    assert fetch.main(["weights"], out=out) == 0
    assert out.getvalue().startswith("nothing to fetch")


def test_coco_parts_must_be_known(capsys):
    with pytest.raises(SystemExit) as exit:
        fetch.main(["coco", "--parts", "val,test"])
    assert exit.value.code == 2 and "choose among annotations, val, train" in capsys.readouterr().err


def test_checksum_mismatch_removes_the_file(site, monkeypatch, tmp_path):
    data = tar_of(VOC_FILES)
    serve_voc(site, monkeypatch, data, checksum="0" * 40)
    root = tmp_path / "voc"
    with pytest.raises(SegcheckError) as err:
        fetch.fetch_dataset("voc", root, out=io.StringIO())
    message = str(err.value)
    assert "VOCtrainval_11-May-2012.tar" in message and sha1(data) in message and "0" * 40 in message
    assert "removed it" in message and "\n" not in message
    assert list(root.iterdir()) == []


def test_refused_connection_is_one_clear_error(monkeypatch, tmp_path, closed_port):
    url = f"http://127.0.0.1:{closed_port}/voc/VOCtrainval_11-May-2012.tar"
    monkeypatch.setitem(fetch.ARCHIVES, "voc", [replace(fetch.ARCHIVES["voc"][0], url=url)])
    with pytest.raises(SegcheckError, match=rf"cannot download {url}: 127.0.0.1:{closed_port} refused the connection"):
        fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_server_gone_mid_download_then_back(monkeypatch, tmp_path, closed_port):
    """Cut off mid-download, then refused (the server gone), then served again (from a new port: ports are never
    reused here): the rerun resumes where the part file ends."""
    data = tar_of(VOC_FILES)
    part = tmp_path / "VOCtrainval_11-May-2012.tar.part"
    with serving() as site:
        serve_voc(site, monkeypatch, data)
        site.cut = 1000
        with pytest.raises(SegcheckError, match="stopped after 1 kB of"):
            fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    serve_voc(replace(site, port=closed_port), monkeypatch, data)
    with pytest.raises(SegcheckError, match=rf"127.0.0.1:{closed_port} refused the connection .*; check the network connection"):
        fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    assert part.stat().st_size == 1000
    with serving(replace(site, cut=None, seen=[])) as back:
        serve_voc(back, monkeypatch, data)
        fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    assert back.seen == [("/voc/VOCtrainval_11-May-2012.tar", "bytes=1000-", 206)]
    assert (tmp_path / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").is_file()


def test_missing_file_is_one_clear_error(site, monkeypatch, tmp_path):
    url = site.url("/nowhere.tar")
    monkeypatch.setitem(fetch.ARCHIVES, "voc", [replace(fetch.ARCHIVES["voc"][0], url=url)])
    with pytest.raises(SegcheckError, match=rf"cannot download {url}: the server answered HTTP 404 Not Found; check the address"):
        fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_no_network_says_so(monkeypatch, tmp_path, closed_port):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(SegcheckError, match=r"does not resolve \(no network or no DNS\); check the network connection"):
        fetch.download(f"http://127.0.0.1:{closed_port}/file", tmp_path / "file")


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "restarted"])
def test_interrupted_download_keeps_the_part_and_completes_on_rerun(site, monkeypatch, tmp_path, ranges):
    data = tar_of(VOC_FILES)
    serve_voc(site, monkeypatch, data)
    site.cut, site.ranges = len(data) // 2, ranges
    part = tmp_path / "VOCtrainval_11-May-2012.tar.part"
    with pytest.raises(SegcheckError, match=rf"stopped after .* of .*; {part} is kept: .* to resume"):
        fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    assert part.stat().st_size == len(data) // 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [part.name]  # nothing at the target
    site.cut = None
    fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    path, asked, status = site.seen[-1]
    assert (asked, status) == (f"bytes={len(data) // 2}-", 206 if ranges else 200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VOC2012"]


def test_complete_part_left_unrenamed_is_not_downloaded_again(site, monkeypatch, tmp_path):
    data = tar_of(VOC_FILES)
    serve_voc(site, monkeypatch, data)
    (tmp_path / "VOCtrainval_11-May-2012.tar.part").write_bytes(data)
    fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    assert [status for _, _, status in site.seen] == [416]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VOC2012"]


def test_interrupted_weights_download_resumes(store, site):
    path, params, _ = store
    (url_path, data), = site.files.items()
    site.cut = len(data) // 2
    with pytest.raises(SegcheckError, match=r"\$MXNET_GLUON_REPO"):
        fetch.main(["weights", "fcn_resnet101_voc"], out=io.StringIO())
    assert not path.exists() and path.with_suffix(".zip.part").stat().st_size == len(data) // 2
    site.cut = None
    fetch.main(["weights", "fcn_resnet101_voc"], out=io.StringIO())
    assert site.seen[-1] == (url_path, f"bytes={len(data) // 2}-", 206)
    assert path.read_bytes() == params


class FullDisk:
    """A file whose writes fail as on a full disk once `room` bytes are written."""

    def __init__(self, handle, room: int):
        self.handle, self.room = handle, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_full_disk_names_the_folder_and_the_space_needed(site, monkeypatch, tmp_path):
    data = tar_of(VOC_FILES)
    serve_voc(site, monkeypatch, data)
    monkeypatch.setattr(fetch, "open", lambda path, mode: FullDisk(open(path, mode), 0), raising=False)
    with pytest.raises(SegcheckError) as err:
        fetch.fetch_dataset("voc", tmp_path, out=io.StringIO())
    assert str(err.value) == (f"disk full writing VOCtrainval_11-May-2012.tar.part in {tmp_path}: about "
                              f"{fetch.human(len(data))} more is needed; free space there (or choose another folder) "
                              "and run the same command again")
    assert not (tmp_path / "VOC2012").exists()


def test_cli_exits_2_with_one_line(monkeypatch, tmp_path, closed_port, capsys):
    url = f"http://127.0.0.1:{closed_port}/val2017.zip"
    monkeypatch.setitem(fetch.ARCHIVES, "coco", [replace(fetch.ARCHIVES["coco"][1], url=url)])
    assert commands.main(["fetch", "coco", "--root", str(tmp_path), "--parts", "val"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"segcheck: error: cannot download {url}: ") and err.count("\n") == 1
    assert "run the same command again" in err

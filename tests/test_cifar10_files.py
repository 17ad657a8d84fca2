"""support/cifar10_files: corrupt and crafted batch files, and fetching, checking and extracting the
archive from a local HTTP server; where get_cifar10 looks for the data.
"""

import codecs
import functools
import hashlib
import http.client
import http.server
import inspect
import io
import os
import pickle
import re
import shlex
import socket
import tarfile
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from cifar10_helpers import (
    ARCHIVE,
    BATCHES,
    CLASS_NAMES,
    N_PER_BATCH,
    VAL,
    assert_loaded,
    no_archive_env,  # noqa: F401 (autouse: no test may fetch the official archive)
)
from conftest import LABEL_NAMES, dump_py2_pickle, write_batch, write_fake_cifar, write_meta

import cifar10_utils as cu


def md5_of(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- corrupt input


def _rewrite_batch(name, n=N_PER_BATCH, columns=3072, dtype=np.uint8, labels=None):
    def mutate(batches_dir):
        data = np.random.default_rng(7).integers(0, 256, size=(n, columns)).astype(dtype)
        ys = list(np.arange(n) % 10) if labels is None else labels
        write_batch(batches_dir / name, data, ys)
        return name

    return mutate


def _write_bytes(name, payload):
    def mutate(batches_dir):
        (batches_dir / name).write_bytes(payload(batches_dir / name) if callable(payload) else payload)
        return name

    return mutate


def _remove(name):
    def mutate(batches_dir):
        (batches_dir / name).unlink()
        return name

    return mutate


def _py2(name, obj):
    def mutate(batches_dir):
        dump_py2_pickle(obj, batches_dir / name)
        return name

    return mutate


def _meta(label_names):
    def mutate(batches_dir):
        write_meta(batches_dir / "batches.meta", label_names)
        return "batches.meta"

    return mutate


CORRUPTIONS = {
    "missing data_batch_3": _remove("data_batch_3"),
    "missing test_batch": _remove("test_batch"),
    "truncated": _write_bytes("data_batch_2", lambda p: p.read_bytes()[: p.stat().st_size // 2]),
    "empty file": _write_bytes("data_batch_5", b""),
    "garbage bytes": _write_bytes("data_batch_4", np.random.default_rng(3).bytes(5000)),
    "text": _write_bytes("test_batch", b"<html>404 Not Found</html>\n" * 10),
    "not a dict": _py2("data_batch_1", [1, 2, 3]),
    "python 3 list pickle": _write_bytes("data_batch_1", pickle.dumps(["data", "labels"])),
    "no data key": _py2("data_batch_2", {b"labels": [0, 1]}),
    "no labels key": _py2("data_batch_2", {b"data": np.zeros((2, 3072), np.uint8)}),
    "3071 columns": _rewrite_batch("data_batch_3", columns=3071),
    "float pixels": _rewrite_batch("data_batch_1", dtype=np.float32),
    "int64 pixels": _rewrite_batch("test_batch", dtype=np.int64),
    "1-d data": _py2("data_batch_1", {b"data": np.zeros(3072, np.uint8), b"labels": [0]}),
    "label 10": _rewrite_batch("data_batch_5", labels=[10] + [0] * (N_PER_BATCH - 1)),
    "label -1": _rewrite_batch("data_batch_2", labels=[1] * (N_PER_BATCH - 1) + [-1]),
    "test label 10": _rewrite_batch("test_batch", labels=[10] * N_PER_BATCH),
    "string labels": _rewrite_batch("data_batch_2", labels=[b"cat"] * N_PER_BATCH),
    "label count mismatch": _rewrite_batch("data_batch_4", labels=[0] * (N_PER_BATCH - 1)),
    "2-d labels": _rewrite_batch("data_batch_4", labels=[[0]] * N_PER_BATCH),
    "empty batch": _rewrite_batch("data_batch_1", n=0, labels=[]),
    "missing batches.meta": _remove("batches.meta"),
    "meta with 9 label_names": _meta(LABEL_NAMES[:9]),
    "meta with 11 label_names": _meta(LABEL_NAMES + [b"extra"]),
    "meta without label_names": _py2("batches.meta", {b"num_vis": 3072}),
    "meta not a dict": _py2("batches.meta", LABEL_NAMES),
    "batches of different sizes": _rewrite_batch("data_batch_4", n=N_PER_BATCH - 10),
}


@pytest.mark.parametrize("mutate", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_input_raises_cifar10_error_naming_the_file(fake_cifar, mutate):
    name = mutate(fake_cifar.batches_dir)
    with pytest.raises(cu.CIFAR10Error) as excinfo:
        cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)
    message = str(excinfo.value)
    assert name in message and str(fake_cifar.batches_dir) in message, message


def test_corrupt_input_detected_with_validation_size_zero(fake_cifar):
    _rewrite_batch("data_batch_5", labels=[-1] * N_PER_BATCH)(fake_cifar.batches_dir)
    with pytest.raises(cu.CIFAR10Error, match="data_batch_5"):
        cu.get_cifar10(fake_cifar.data_dir, validation_size=0)


def test_scalar_labels_raise_cifar10_error(fake_cifar):
    _py2("data_batch_2", {b"data": np.zeros((1, 3072), np.uint8), b"labels": 3})(fake_cifar.batches_dir)
    with pytest.raises(cu.CIFAR10Error, match="data_batch_2"):
        cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)


def test_meta_with_unsized_label_names_raises_cifar10_error(fake_cifar):
    _py2("batches.meta", {b"label_names": None})(fake_cifar.batches_dir)
    with pytest.raises(cu.CIFAR10Error, match="batches.meta"):
        cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)


class _RunsShellCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("where", ["top level", "inside the batch dict"])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_with_disallowed_global_is_refused_not_executed(fake_cifar, tmp_path, where, protocol):
    marker = tmp_path / "pwned"
    payload = _RunsShellCommand(f"touch {shlex.quote(str(marker))}")
    obj = payload if where == "top level" else {b"data": payload, b"labels": [0]}
    blob = pickle.dumps(obj, protocol=protocol)
    # the payload is live: a plain unpickler would run it
    pickle.loads(blob)
    assert marker.exists()
    marker.unlink()

    (fake_cifar.batches_dir / "data_batch_3").write_bytes(blob)
    with pytest.raises(cu.CIFAR10Error, match="data_batch_3") as excinfo:
        cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)
    assert not marker.exists()
    # the message names what was refused ("posix.system" here: os.system's real home)
    assert f"refuses to load {os.system.__module__}.{os.system.__name__}" in str(excinfo.value)


class _Reduce:
    """Pickles as a call of ``function(*args)``: how a crafted file names a global of its choice."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


REFUSED_GLOBALS = {
    # protocol 2 writes Python 3's builtins under their Python 2 name, __builtin__
    "builtins.eval": (_Reduce(eval, "1 + 1"), "(builtins|__builtin__).eval"),
    "numpy.load": (_Reduce(np.load, "x.npy"), "numpy.load"),
    "codecs other than latin-1": (_Reduce(codecs.encode, "text", "rot13"), "_codecs.encode with the 'rot13'"),
}


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("payload", REFUSED_GLOBALS.values(), ids=REFUSED_GLOBALS.keys())
def test_refused_global_is_named(fake_cifar, protocol, payload):
    obj, name = payload
    blob = pickle.dumps({b"data": obj, b"labels": [0]}, protocol=protocol)
    (fake_cifar.batches_dir / "test_batch").write_bytes(blob)
    with pytest.raises(cu.CIFAR10Error) as excinfo:
        cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)
    message = str(excinfo.value)
    assert re.search(f"refuses to load {name}", message) and "test_batch" in message, message


LABEL_KINDS = {
    "list of int": lambda labels: [int(y) for y in labels],
    "list of numpy int64": lambda labels: list(labels),
    "int64 array": np.asarray,
}


@pytest.mark.parametrize("labels_kind", LABEL_KINDS.values(), ids=LABEL_KINDS.keys())
@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_batches_repickled_by_current_python_and_numpy_load(fake_cifar, protocol, labels_kind):
    """Re-saving the batches with pickle.dump gives other globals (numpy._core..., _codecs.encode for
    bytes at protocol 2, _frombuffer at 5, scalar for NumPy integers): all only rebuild arrays."""
    before = cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)
    for name in [*cu.TRAIN_FILES, cu.TEST_FILE, cu.META_FILE]:
        path = fake_cifar.batches_dir / name
        batch = pickle.loads(path.read_bytes(), encoding="bytes")  # our own fake file: trusted
        if b"labels" in batch:
            batch[b"labels"] = labels_kind(np.asarray(batch[b"labels"], dtype=np.int64))
        path.write_bytes(pickle.dumps(batch, protocol=protocol))
    after = cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)
    for name in before:
        assert np.array_equal(before[name].images, after[name].images)
        assert np.array_equal(before[name].labels, after[name].labels)
        assert after[name].classes == CLASS_NAMES


# ---------------------------------------------------------------- fetching


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of the server's root, plus /short/NAME (body cut, full Content-Length) and
    /chunked-cut/NAME (chunked transfer broken off mid-chunk)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        for prefix in ("/short/", "/chunked-cut/"):
            if self.path.startswith(prefix):
                body = (self.server.root / self.path[len(prefix) :]).read_bytes()
                self.send_response(200)
                if prefix == "/short/":
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                if prefix == "/chunked-cut/":
                    self.wfile.write(b"%x\r\n" % len(body))
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
        super().do_GET()


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """A server on 127.0.0.1 for ``tmp_path/www``: yields it with ``.root``, ``.url`` and ``.requests``."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root))
    )
    server.root = root
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def unreachable_url():
    """A URL on a port of 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{ARCHIVE}"


def make_archive(path, batches_dir=None, arcname=BATCHES, extra=()):
    """A tar.gz of ``batches_dir`` as ``arcname/``, plus ``extra`` (TarInfo, bytes or None) members."""
    with tarfile.open(path, "w:gz") as tar:
        if batches_dir is not None:
            tar.add(batches_dir, arcname=arcname)
        for info, payload in extra:
            if payload is not None:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return md5_of(path)


@pytest.fixture
def source(tmp_path):
    """Fake batches to pack, written outside any data_dir."""
    return write_fake_cifar(tmp_path / "src", seed=11)


@pytest.fixture
def data_dir(tmp_path):
    """Where the archive is fetched to: nested, so escapes to its parents can be looked for."""
    return tmp_path / "dl" / "data"


def leftovers(data_dir):
    """Names in data_dir a later run could trip over (temporary files included)."""
    return sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []


def test_download_with_url_and_md5_arguments(http_server, source, data_dir, unreachable_url):
    md5 = make_archive(http_server.root / ARCHIVE, source.batches_dir)
    url = f"{http_server.url}/{ARCHIVE}"
    data = cu.get_cifar10(str(data_dir), validation_size=VAL, url=url, md5=md5)
    assert_loaded(data, source)
    assert http_server.requests == [f"/{ARCHIVE}"]
    assert (data_dir / ARCHIVE).read_bytes() == (http_server.root / ARCHIVE).read_bytes()
    assert leftovers(data_dir) == sorted([ARCHIVE, BATCHES])  # no .part, no .cifar10-extract-* directory
    # a second run uses what is there and fetches nothing
    assert_loaded(cu.get_cifar10(str(data_dir), validation_size=VAL, url=unreachable_url, md5=md5), source)
    assert len(http_server.requests) == 1


def test_download_with_environment_variables(http_server, source, data_dir, monkeypatch):
    md5 = make_archive(http_server.root / "elsewhere.tgz", source.batches_dir)
    monkeypatch.setenv("CIFAR10_URL", f"{http_server.url}/elsewhere.tgz")
    monkeypatch.setenv("CIFAR10_MD5", md5)
    assert_loaded(cu.get_cifar10(data_dir, validation_size=VAL), source)
    assert http_server.requests == ["/elsewhere.tgz"]
    assert md5_of(data_dir / ARCHIVE) == md5
    assert leftovers(data_dir) == sorted([ARCHIVE, BATCHES])


def test_download_with_wrong_md5_leaves_nothing(http_server, source, data_dir):
    md5 = make_archive(http_server.root / ARCHIVE, source.batches_dir)
    url = f"{http_server.url}/{ARCHIVE}"
    with pytest.raises(cu.CIFAR10Error, match="MD5") as excinfo:
        cu.get_cifar10(data_dir, validation_size=VAL, url=url, md5="0" * 32)
    assert url in str(excinfo.value)
    assert leftovers(data_dir) == []
    # and nothing stands in the way of a good run afterwards
    assert_loaded(cu.get_cifar10(data_dir, validation_size=VAL, url=url, md5=md5), source)


def test_truncated_download_leaves_nothing(http_server, source, data_dir):
    md5 = make_archive(http_server.root / ARCHIVE, source.batches_dir)
    with pytest.raises(cu.CIFAR10Error):
        cu.get_cifar10(data_dir, validation_size=VAL, url=f"{http_server.url}/short/{ARCHIVE}", md5=md5)
    assert leftovers(data_dir) == []


def test_broken_chunked_download_raises_cifar10_error(http_server, source, data_dir):
    md5 = make_archive(http_server.root / ARCHIVE, source.batches_dir)
    try:
        with pytest.raises(cu.CIFAR10Error):
            cu.get_cifar10(
                data_dir, validation_size=VAL, url=f"{http_server.url}/chunked-cut/{ARCHIVE}", md5=md5
            )
    finally:
        assert leftovers(data_dir) == []  # holds even now: the .part file is removed


def test_connection_refused_names_url_and_where_to_put_the_archive(data_dir, unreachable_url):
    with pytest.raises(cu.CIFAR10Error) as excinfo:
        cu.get_cifar10(str(data_dir), url=unreachable_url, md5="0" * 32)
    message = str(excinfo.value)
    assert unreachable_url in message
    assert os.path.join(str(data_dir), ARCHIVE) in message
    assert not data_dir.parent.exists()  # nor the empty directories it made for data_dir


def test_failed_download_removes_what_it_made_behind_a_symlink(tmp_path, unreachable_url):
    """'link/../data' is made beside the link's target, where the system resolves it."""
    (tmp_path / "real" / "inner").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "inner")
    with pytest.raises(cu.CIFAR10Error):
        cu.get_cifar10(os.path.join(tmp_path, "link", "..", "data"), url=unreachable_url, md5="0" * 32)
    assert os.listdir(tmp_path / "real") == ["inner"]


def test_failed_download_keeps_directories_that_were_there(data_dir, unreachable_url):
    data_dir.mkdir(parents=True)
    with pytest.raises(cu.CIFAR10Error):
        cu.get_cifar10(data_dir, url=unreachable_url, md5="0" * 32)
    assert data_dir.is_dir() and leftovers(data_dir) == []


def test_http_404_raises_cifar10_error(http_server, data_dir):
    url = f"{http_server.url}/no-such-{ARCHIVE}"
    with pytest.raises(cu.CIFAR10Error) as excinfo:
        cu.get_cifar10(data_dir, url=url, md5="0" * 32)
    assert url in str(excinfo.value)
    assert http_server.requests == [f"/no-such-{ARCHIVE}"]
    assert leftovers(data_dir) == []


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


UNSAFE_MEMBERS = {
    "parent": lambda tmp: (_member("../evil.txt"), b"evil"),
    "grandparent": lambda tmp: (_member("../../evil.txt"), b"evil"),
    "nested traversal": lambda tmp: (_member(f"{BATCHES}/../../../../evil.txt"), b"evil"),
    "absolute": lambda tmp: (_member(str(tmp / "evil.txt")), b"evil"),
    "absolute symlink": lambda tmp: (
        _member(f"{BATCHES}/link", tarfile.SYMTYPE, str(tmp / "evil.txt")),
        None,
    ),
    "relative symlink": lambda tmp: (_member(f"{BATCHES}/link", tarfile.SYMTYPE, "../../../evil.txt"), None),
    "symlink batch": lambda tmp: (_member(f"{BATCHES}/data_batch_9", tarfile.SYMTYPE, "data_batch_1"), None),
    "hard link": lambda tmp: (_member(f"{BATCHES}/passwd", tarfile.LNKTYPE, "/etc/passwd"), None),
}


@pytest.mark.parametrize("member", UNSAFE_MEMBERS.values(), ids=UNSAFE_MEMBERS.keys())
def test_unsafe_archive_members_are_refused(http_server, source, data_dir, tmp_path, member, tar_python):
    info, payload = member(tmp_path)
    md5 = make_archive(http_server.root / ARCHIVE, source.batches_dir, extra=[(info, payload)])
    with tarfile.open(http_server.root / ARCHIVE) as tar:
        assert info.name in tar.getnames()
    with pytest.raises(cu.CIFAR10Error, match="unsafe") as excinfo:
        cu.get_cifar10(data_dir, validation_size=VAL, url=f"{http_server.url}/{ARCHIVE}", md5=md5)
    assert repr(info.name) in str(excinfo.value)
    for root, dirs, files in os.walk(tmp_path):
        for name in dirs + files:
            path = os.path.join(root, name)
            assert name != "evil.txt" and name != "passwd" and not os.path.islink(path), path
    assert not (data_dir / BATCHES).exists()
    assert leftovers(data_dir) == [ARCHIVE]  # no temporary directory either


def test_archive_already_in_data_dir_is_used_without_download(source, data_dir, unreachable_url):
    data_dir.mkdir(parents=True)
    md5 = make_archive(data_dir / ARCHIVE, source.batches_dir)
    assert_loaded(cu.get_cifar10(data_dir, validation_size=VAL, url=unreachable_url, md5=md5), source)
    assert leftovers(data_dir) == sorted([ARCHIVE, BATCHES])


def test_archive_in_data_dir_with_wrong_md5_is_refused(source, data_dir, unreachable_url):
    data_dir.mkdir(parents=True)
    md5 = make_archive(data_dir / ARCHIVE, source.batches_dir)
    wrong = "f" * 32 if md5 != "f" * 32 else "0" * 32
    with pytest.raises(cu.CIFAR10Error, match="MD5") as excinfo:
        cu.get_cifar10(data_dir, validation_size=VAL, url=unreachable_url, md5=wrong)
    assert str(data_dir / ARCHIVE) in str(excinfo.value)
    assert not (data_dir / BATCHES).exists()
    assert leftovers(data_dir) == [ARCHIVE]


def test_batches_path_taken_by_a_file_is_an_error(source, data_dir, unreachable_url):
    """A file where cifar-10-batches-py/ should go: the archive is fine, the rename is not."""
    data_dir.mkdir(parents=True)
    md5 = make_archive(data_dir / ARCHIVE, source.batches_dir)
    (data_dir / BATCHES).write_text("not a directory")
    with pytest.raises(cu.CIFAR10Error, match=BATCHES):
        cu.get_cifar10(data_dir, validation_size=VAL, url=unreachable_url, md5=md5)
    assert leftovers(data_dir) == sorted([ARCHIVE, BATCHES])  # no temporary directory left


def test_unreadable_archive_is_an_error(data_dir, unreachable_url):
    (data_dir / ARCHIVE).mkdir(parents=True)  # a directory where the archive should be
    with pytest.raises(cu.CIFAR10Error, match=ARCHIVE):
        cu.get_cifar10(data_dir, validation_size=VAL, url=unreachable_url, md5="0" * 32)


def _archive_without_batches_dir(src, path):
    return make_archive(path, src.batches_dir, arcname="some-other-dir")


def _archive_with_corrupt_batch(src, path):
    batch = src.batches_dir / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:1000])
    return make_archive(path, src.batches_dir)


def _archive_without_test_batch(src, path):
    (src.batches_dir / "test_batch").unlink()
    return make_archive(path, src.batches_dir)


def _not_a_tar_gz(src, path):
    path.write_bytes(b"<html>this is a login page, not an archive</html>\n" * 100)
    return md5_of(path)


def _plain_tar(src, path):
    with tarfile.open(path, "w") as tar:
        tar.add(src.batches_dir, arcname=BATCHES)
    return md5_of(path)


BAD_ARCHIVES = {
    "no cifar-10-batches-py": _archive_without_batches_dir,
    "corrupt batch": _archive_with_corrupt_batch,
    "missing test_batch": _archive_without_test_batch,
    "not a tar.gz": _not_a_tar_gz,
    "uncompressed tar": _plain_tar,
}


@pytest.mark.parametrize("build", BAD_ARCHIVES.values(), ids=BAD_ARCHIVES.keys())
def test_bad_archive_leaves_no_batches_directory(source, data_dir, unreachable_url, build):
    data_dir.mkdir(parents=True)
    md5 = build(source, data_dir / ARCHIVE)
    with pytest.raises(cu.CIFAR10Error):
        cu.get_cifar10(data_dir, validation_size=VAL, url=unreachable_url, md5=md5)
    assert not (data_dir / BATCHES).exists()
    assert leftovers(data_dir) == [ARCHIVE]


# ---------------------------------------------------------------- extraction with and without tar filters


@pytest.fixture(params=["tarfile with filter", "tarfile without filter"])
def tar_python(request, monkeypatch):
    """Both kinds of Python: with tarfile's extraction filters (3.11.4+) and without (3.11.2's
    extractall() has no ``filter`` argument and passing one is a TypeError). Returns a namespace:
    ``has_filter``, and ``calls``, the keyword arguments of every extractall() call."""
    calls = []
    original = tarfile.TarFile.extractall
    has_filter = request.param == "tarfile with filter"
    if not has_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)

    def extractall(self, path=".", members=None, **kwargs):
        calls.append(dict(kwargs))
        if not has_filter:
            if "filter" in kwargs:
                raise TypeError("extractall() got an unexpected keyword argument 'filter'")
            if "filter" in inspect.signature(original).parameters:  # what an old Python does: no filter
                kwargs["filter"] = "fully_trusted"
        return original(self, path, members, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)
    return types.SimpleNamespace(has_filter=has_filter, calls=calls)


def test_extraction_with_and_without_tarfile_filter(tar_python, source, data_dir, unreachable_url):
    data_dir.mkdir(parents=True)

    def loose_modes(info):  # set-id bits and world-writable files: neither way may keep them
        info.mode |= 0o6002
        return info

    with tarfile.open(data_dir / ARCHIVE, "w:gz") as tar:
        tar.add(source.batches_dir, arcname=BATCHES, filter=loose_modes)
    md5 = md5_of(data_dir / ARCHIVE)
    assert_loaded(cu.get_cifar10(data_dir, validation_size=VAL, url=unreachable_url, md5=md5), source)
    expected = [{"filter": "data"}] if tar_python.has_filter else [{}]
    assert [{k: v for k, v in c.items() if k == "filter"} for c in tar_python.calls] == expected
    for path in [data_dir / BATCHES, *(data_dir / BATCHES).iterdir()]:
        assert path.stat().st_mode & 0o6002 == 0, (path, oct(path.stat().st_mode))
    assert leftovers(data_dir) == sorted([ARCHIVE, BATCHES])


# ---------------------------------------------------------------- where the data is


@pytest.mark.parametrize("trailing_slash", [False, True])
def test_the_batches_folder_itself_is_accepted_as_data_dir(fake_cifar, unreachable_url, trailing_slash):
    batches = str(fake_cifar.batches_dir) + (os.sep if trailing_slash else "")
    data = cu.get_cifar10(batches, validation_size=VAL, url=unreachable_url, md5="0" * 32)
    assert_loaded(data, fake_cifar)
    assert not (fake_cifar.batches_dir / BATCHES).exists()  # nothing fetched or made inside it


def test_a_renamed_batches_folder_is_accepted_as_data_dir(fake_cifar, tmp_path, unreachable_url):
    renamed = tmp_path / "my-cifar"
    fake_cifar.batches_dir.rename(renamed)
    assert_loaded(cu.get_cifar10(renamed, validation_size=VAL, url=unreachable_url, md5="0" * 32), fake_cifar)


def test_a_missing_batches_folder_is_fetched_into_its_parent(http_server, source, data_dir):
    md5 = make_archive(http_server.root / ARCHIVE, source.batches_dir)
    data = cu.get_cifar10(
        data_dir / BATCHES, validation_size=VAL, url=f"{http_server.url}/{ARCHIVE}", md5=md5
    )
    assert_loaded(data, source)
    assert leftovers(data_dir) == sorted([ARCHIVE, BATCHES])  # not cifar-10-batches-py/cifar-10-batches-py
    assert not (data_dir / BATCHES / BATCHES).exists()


def test_download_error_names_every_way_to_point_at_data(data_dir, unreachable_url):
    with pytest.raises(cu.CIFAR10Error) as excinfo:
        cu.get_cifar10(str(data_dir), url=unreachable_url, md5="0" * 32)
    message = str(excinfo.value)
    assert "\n" not in message
    for way in ("--data_dir", "CIFAR10_DATA_DIR", os.path.join(str(data_dir), ARCHIVE), BATCHES):
        assert way in message, way

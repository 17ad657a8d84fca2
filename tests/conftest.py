"""Shared fixtures: small made-up CIFAR-10 data sets in the official "python version" format.

The official batches are Python 2 pickles (protocol 2, ``str`` written as
SHORT_BINSTRING/BINSTRING, arrays rebuilt by ``numpy.core.multiarray._reconstruct``).
``dump_py2_pickle`` writes that same byte format, so the code under test reads
exactly the kind of file the real archive holds, only smaller.

    fake = write_fake_cifar(tmp_path / "data", n_per_batch=60, seed=0)
    data = get_cifar10(fake.data_dir)     # fake.train_images etc. hold what was written
"""

import json
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

# One BLAS and OpenMP thread for the whole session, the setting of every trainer subprocess the
# tests start (test_cli.cli_env): float32 products give other last bits for other thread counts on
# some CPUs, so two runs compared bit for bit are made under one setting, whatever OMP_NUM_THREADS
# the caller exported. It must be set before NumPy loads OpenBLAS, which reads it once.
if "numpy" in sys.modules:
    raise RuntimeError("tests/conftest.py must run before NumPy is imported: it fixes the thread count")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# the repository root (cifar10_utils.py, modules.py, ...) importable from any test file
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

LABEL_NAMES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


# ---------------------------------------------------------------- Python 2 pickles


def _py2_int(n):
    if 0 <= n < 256:
        return b"K" + struct.pack("<B", n)  # BININT1
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)  # BININT2
    return b"J" + struct.pack("<i", n)  # BININT


def _py2_str(s):
    if isinstance(s, str):
        s = s.encode("latin1")
    if len(s) < 256:
        return b"U" + struct.pack("<B", len(s)) + s  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(s)) + s  # BINSTRING


def _py2_dtype(dtype):
    order, code = dtype.str[0], dtype.str[1:]
    return (
        b"cnumpy\ndtype\n"
        + _py2_str(code)
        + _py2_int(0)
        + _py2_int(1)
        + b"\x87R"  # TUPLE3, REDUCE
        + b"("
        + _py2_int(3)
        + _py2_str(order)
        + b"NNN"
        + _py2_int(-1)
        + _py2_int(-1)
        + _py2_int(0)
        + b"tb"  # TUPLE, BUILD
    )


def _py2_obj(obj):
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, (int, np.integer)):
        return _py2_int(int(obj))
    if isinstance(obj, (bytes, str)):
        return _py2_str(obj)
    if obj is None:
        return b"N"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_obj(x) for x in obj) + b"e"  # EMPTY_LIST, MARK, ..., APPENDS
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2_obj(k) + _py2_obj(v) for k, v in obj.items()) + b"u"  # ..., SETITEMS
    if isinstance(obj, np.ndarray):
        dims = b"".join(_py2_int(n) for n in obj.shape)
        shape = dims + b"\x85\x86\x87"[obj.ndim - 1 : obj.ndim] if 1 <= obj.ndim <= 3 else b"(" + dims + b"t"
        return (
            b"cnumpy.core.multiarray\n_reconstruct\n"
            + b"cnumpy\nndarray\n"
            + _py2_int(0)
            + b"\x85"  # TUPLE1
            + _py2_str(b"b")
            + b"\x87R"  # TUPLE3, REDUCE
            + b"("
            + _py2_int(1)
            + shape
            + _py2_dtype(obj.dtype)
            + b"\x89"  # not Fortran order
            + _py2_str(np.ascontiguousarray(obj).tobytes())
            + b"tb"
        )
    raise TypeError(f"cannot write {type(obj).__name__} as a Python 2 pickle")


def dump_py2_pickle(obj, path):
    """Write ``obj`` (dict/list/int/bytes/str/None/ndarray) as Python 2's cPickle protocol 2 would."""
    Path(path).write_bytes(b"\x80\x02" + _py2_obj(obj) + b".")


def write_batch(path, data, labels, batch_label=b"batch"):
    """One batch file as in the official archive: bytes keys, labels a list of ints."""
    if isinstance(labels, (list, np.ndarray)):
        labels = [int(y) if isinstance(y, np.integer) else y for y in labels]
    names = [b"fake_%05d.png" % i for i in range(len(data))]
    dump_py2_pickle(
        {b"batch_label": batch_label, b"labels": labels, b"data": data, b"filenames": names}, path
    )


def write_meta(path, label_names=LABEL_NAMES):
    dump_py2_pickle(
        {b"num_cases_per_batch": 10000, b"label_names": list(label_names), b"num_vis": 3072}, path
    )


# ---------------------------------------------------------------- fake data sets


@dataclass
class FakeCifar:
    """What ``write_fake_cifar`` wrote: pixels (N, 3072) uint8 in file order, labels (N,) int64."""

    data_dir: Path  # holds cifar-10-batches-py/
    batches_dir: Path
    n_per_batch: int
    train_images: np.ndarray  # data_batch_1..5 concatenated
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def make_images_labels(n, rng):
    """n random images covering the full 0..255 range, and labels covering 0..9 when n >= 10."""
    images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    if n:
        images[0, 0], images[-1, -1] = 0, 255
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    return images, labels


def write_learnable_cifar(root, n_per_batch, n_test, seed=0):
    """Noise images whose label is written into them: pixels [100 c, 100 c + 100) of class c are 255."""
    rng = np.random.default_rng(seed)
    batches = root / "cifar-10-batches-py"
    batches.mkdir(parents=True)

    def images_labels(n):
        labels = rng.permutation(np.arange(n) % 10)
        images = rng.integers(0, 128, size=(n, 3072), dtype=np.uint8)
        for c in range(10):
            images[np.ix_(labels == c, np.arange(100 * c, 100 * c + 100))] = 255
        return images, labels

    for k in range(1, 6):
        write_batch(batches / f"data_batch_{k}", *images_labels(n_per_batch))
    write_batch(batches / "test_batch", *images_labels(n_test))
    write_meta(batches / "batches.meta")
    return root


def write_fake_cifar(root, n_per_batch=60, seed=0, n_test=None):
    """Write ``root/cifar-10-batches-py/`` with 5 training batches, the test batch and batches.meta.

    Every batch holds ``n_per_batch`` images (the test batch ``n_test``, default the same), each
    with every class when it holds at least 10. Returns a FakeCifar with the arrays written.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    batches_dir = root / "cifar-10-batches-py"
    batches_dir.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = [], []
    for k, name in enumerate(TRAIN_FILES):
        images, labels = make_images_labels(n_per_batch, rng)
        write_batch(batches_dir / name, images, labels, b"training batch %d of 5" % (k + 1))
        train_images.append(images)
        train_labels.append(labels)
    test_images, test_labels = make_images_labels(n_per_batch if n_test is None else n_test, rng)
    write_batch(batches_dir / "test_batch", test_images, test_labels, b"testing batch 1 of 1")
    write_meta(batches_dir / "batches.meta")
    return FakeCifar(
        data_dir=root,
        batches_dir=batches_dir,
        n_per_batch=n_per_batch,
        train_images=np.concatenate(train_images),
        train_labels=np.concatenate(train_labels),
        test_images=test_images,
        test_labels=test_labels,
    )


@pytest.fixture
def fake_cifar_writer():
    """The ``write_fake_cifar(root, n_per_batch=60, seed=0)`` helper, for tests needing other sizes."""
    return write_fake_cifar


@pytest.fixture
def fake_cifar(tmp_path):
    """A FakeCifar of 5 x 60 training and 60 test images under ``tmp_path/data``."""
    return write_fake_cifar(tmp_path / "data")


@pytest.fixture
def fake_cifar_dir(fake_cifar):
    """``data_dir`` (a str, as users pass it) holding a fake ``cifar-10-batches-py/``."""
    return os.fspath(fake_cifar.data_dir)


# The trainers' tests: train() uses get_cifar10's default validation_size of 5000, so
# 5 x 1100 training images leave 500 to train on; 100 test images.
N_PER_BATCH, N_TEST = 1100, 100
N_TRAIN = 5 * N_PER_BATCH - 5000  # 500
PNG = b"\x89PNG\r\n\x1a\n"  # the signature every PNG file starts with

# Bad settings both trainers refuse through the support package's shared parser and checks:
# name -> (extra arguments, a fragment of the one-line error).
COMMON_BAD_INPUTS = {
    "lr_zero": (["--lr", "0"], "lr"),
    "lr_negative": (["--lr", "-1"], "lr"),
    "epochs_zero": (["--epochs", "0"], "epochs"),
    "batch_size_zero": (["--batch_size", "0"], "batch_size"),
    "batch_size_above_training_split": (["--batch_size", str(N_TRAIN + 1)], "batch_size"),
    "hidden_dims_zero": (["--hidden_dims", "0"], "hidden"),
    "seed_negative": (["--seed", "-5"], "seed must be an integer in [0, 2**32)"),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Random labels, 500 training / 5000 validation / 100 test images."""
    root = tmp_path_factory.mktemp("random") / "data"
    write_fake_cifar(root, n_per_batch=N_PER_BATCH, seed=0, n_test=N_TEST)
    return os.fspath(root)


@pytest.fixture(scope="module")
def learnable_dir(tmp_path_factory):
    return os.fspath(
        write_learnable_cifar(tmp_path_factory.mktemp("learnable") / "data", N_PER_BATCH, N_TEST)
    )


def check_train_results(val_accuracies, test_accuracy, info, epochs, batches_per_epoch, n_test=N_TEST):
    """What both trainers' train() promise to return, model aside."""
    assert len(val_accuracies) == epochs and all(0.0 <= a <= 1.0 for a in val_accuracies)
    assert list(val_accuracies) == info["val_accuracy"]
    assert isinstance(test_accuracy, float) and 0.0 <= test_accuracy <= 1.0
    assert test_accuracy * n_test == pytest.approx(round(test_accuracy * n_test))
    assert {"train_loss", "train_accuracy", "val_accuracy", "batch_loss", "epoch_time", "best_epoch"} <= set(
        info
    )
    for key in ("train_loss", "train_accuracy", "val_accuracy", "epoch_time"):
        assert len(info[key]) == epochs, key
    assert len(info["batch_loss"]) == epochs * batches_per_epoch
    assert all(isinstance(v, float) and np.isfinite(v) for v in info["batch_loss"])
    assert all(t > 0 for t in info["epoch_time"])
    for e in range(epochs):
        epoch_losses = info["batch_loss"][e * batches_per_epoch : (e + 1) * batches_per_epoch]
        assert info["train_loss"][e] == pytest.approx(np.mean(epoch_losses))
        assert 0.0 <= info["train_accuracy"][e] <= 1.0
    assert info["best_epoch"] == int(np.argmax(val_accuracies)) + 1
    json.dumps(info)  # the log must be writable as JSON

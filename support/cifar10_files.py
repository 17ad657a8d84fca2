"""The CIFAR-10 files: reading the official batches with a restricted unpickler, splitting them,
and fetching, checking and extracting the archive. ``cifar10_utils.get_cifar10`` calls
``read_splits`` and ``fetch_cifar10``; this module imports cifar10_utils for its constants and
CIFAR10Split (cifar10_utils imports this one only when it loads data, so there is no cycle).
"""

import hashlib
import http.client
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request

import numpy as np

from cifar10_utils import (
    ARCHIVE_MD5,
    ARCHIVE_NAME,
    BATCHES_DIR,
    META_FILE,
    N_CLASSES,
    N_FEATURES,
    SPLIT_SEED,
    TEST_FILE,
    TRAIN_FILES,
    URL,
    CIFAR10Error,
    CIFAR10Split,
)


def locate(data_dir):
    """(folder of the batch files, directory to fetch the archive into) for ``data_dir``.

    Passing the ``cifar-10-batches-py/`` folder itself is a common slip: it is used
    as it is (as is any folder that holds batches.meta), and a missing one named so
    is fetched into its parent, which makes exactly that folder.
    """
    inner = os.path.join(data_dir, BATCHES_DIR)
    if os.path.isdir(inner):
        return inner, data_dir
    named_so = os.path.basename(os.path.normpath(data_dir)) == BATCHES_DIR
    if named_so or os.path.isfile(os.path.join(data_dir, META_FILE)):
        return data_dir, os.path.dirname(os.path.normpath(data_dir)) or os.curdir
    return inner, data_dir


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a Python object the loader does not allow; ``name`` is its dotted name."""

    def __init__(self, name):
        super().__init__(f"refused {name}")
        self.name = name


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` restricted to Latin-1: how Python 3 writes bytes into a protocol-2 pickle."""
    if encoding not in ("latin1", "latin-1"):
        raise _RefusedGlobal(f"_codecs.encode with the {encoding!r} codec")
    return text.encode("latin1")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The batch files are pickles: allow what rebuilds NumPy arrays and scalars, nothing else.

    The official files name ``numpy.core.multiarray._reconstruct``; the same data
    re-pickled by current NumPy names ``numpy._core`` functions instead, and at
    protocol 5 ``_frombuffer``. All of these only build arrays from bytes; any other
    global (``os.system`` in a crafted file, say) could run code, and is refused by name.
    """

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) not in self.ALLOWED:
            raise _RefusedGlobal(f"{module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # NumPy 2: no deprecation warning
        return super().find_class(module, name)


def _redo_hint(path):
    return (
        f"delete {os.path.dirname(path)} and run again to download a fresh copy "
        f"(or extract {ARCHIVE_NAME} there by hand)"
    )


def _load_pickle(path):
    if not os.path.isfile(path):
        raise CIFAR10Error(f"missing CIFAR-10 file {path}: {_redo_hint(path)}")
    try:
        with open(path, "rb") as f:
            # "bytes" keeps the pixel strings of these Python 2 pickles as bytes: 4x faster than "latin1"
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise CIFAR10Error(f"cannot read {path} ({e.strerror}): check its permissions") from None
    except _RefusedGlobal as e:
        raise CIFAR10Error(
            f"untrusted CIFAR-10 file {path}: the loader refuses to load {e.name} (batch files hold only "
            f"NumPy arrays, lists and strings): {_redo_hint(path)}"
        ) from None
    except Exception as e:  # truncated or corrupt pickles raise many types
        raise CIFAR10Error(f"corrupt CIFAR-10 file {path} ({type(e).__name__}): {_redo_hint(path)}") from None
    if not isinstance(obj, dict):
        raise CIFAR10Error(f"corrupt CIFAR-10 file {path} (not a dict): {_redo_hint(path)}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _load_batch(path):
    batch = _load_pickle(path)

    def corrupt(why):
        return CIFAR10Error(f"corrupt CIFAR-10 file {path} ({why}): {_redo_hint(path)}")

    if "data" not in batch or "labels" not in batch:
        raise corrupt("no 'data'/'labels'")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise corrupt("'data' is not a uint8 matrix")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise corrupt("'labels' is not a list of integers")
    if data.shape != (len(labels), N_FEATURES) or len(labels) == 0:
        raise corrupt(f"'data' has shape {data.shape} for {len(labels)} labels, expected (N, {N_FEATURES})")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise corrupt("labels outside 0..9")
    return data, labels.astype(np.int64)


def read_splits(batches_dir, validation_size):
    meta_path = os.path.join(batches_dir, META_FILE)
    label_names = _load_pickle(meta_path).get("label_names")
    if (
        not isinstance(label_names, (list, tuple))
        or len(label_names) != N_CLASSES
        or not all(isinstance(c, (bytes, str)) for c in label_names)
    ):
        raise CIFAR10Error(f"corrupt CIFAR-10 file {meta_path} (no 10 label_names): {_redo_hint(meta_path)}")
    classes = [c.decode("latin1") if isinstance(c, bytes) else c for c in label_names]
    test_images, test_labels = _load_batch(os.path.join(batches_dir, TEST_FILE))
    # Each training batch is written straight to its row in [train | validation],
    # so the 150 MB of training pixels exist once, never as batches plus a copy.
    for k, name in enumerate(TRAIN_FILES):
        data, labels = _load_batch(os.path.join(batches_dir, name))
        if k == 0:
            per_batch = len(labels)
            n_train = per_batch * len(TRAIN_FILES)
            if validation_size > n_train:
                raise ValueError(f"validation_size {validation_size} exceeds the {n_train} training images")
            row_of = _split_rows(n_train, validation_size)
            images = np.empty((n_train, N_FEATURES), dtype=np.uint8)
            targets = np.empty(n_train, dtype=np.int64)
        elif len(labels) != per_batch:
            raise CIFAR10Error(
                f"CIFAR-10 batch {name} in {batches_dir} holds {len(labels)} images, not {per_batch}"
            )
        rows = row_of[k * per_batch : (k + 1) * per_batch]
        images[rows], targets[rows] = data, labels
    cut = n_train - validation_size
    # The full sets the splits are cut from, as the skeleton's Subsets have them. The training
    # images stay in their stored order, [train | validation], so each split is a view of them.
    all_train = CIFAR10Split(images, targets, "all training images", classes)
    all_test = CIFAR10Split(test_images, test_labels, "all test images", classes)
    return {
        "train": _subset(all_train, 0, cut, "train"),
        "validation": _subset(all_train, cut, n_train, "validation"),
        "test": _subset(all_test, 0, len(test_labels), "test"),
    }


def _subset(full, start, stop, name):
    """Rows start..stop-1 of a full set, as a view that knows where it came from."""
    indices = np.arange(start, stop, dtype=np.int64)
    return CIFAR10Split(full.images[start:stop], full.labels[start:stop], name, full.classes, full, indices)


def _split_rows(n_train, validation_size):
    """Row of each original training image: training images first, then validation, each in file order.

    The validation images are drawn by NumPy with SPLIT_SEED, not by the course
    skeleton's ``random_split`` with a torch generator seeded 42, so the two pick
    different images: loading needs no torch, and no training seed moves the split.
    """
    is_val = np.zeros(n_train, dtype=bool)
    is_val[np.random.default_rng(SPLIT_SEED).permutation(n_train)[:validation_size]] = True
    order = np.concatenate([np.flatnonzero(~is_val), np.flatnonzero(is_val)])
    return np.argsort(order)


# ---------------------------------------------------------------- fetching


def fetch_cifar10(data_dir, url=None, md5=None):
    """Make ``data_dir/cifar-10-batches-py`` from the archive, downloading it if absent.

    Every step writes to a temporary name first, so an interrupted run leaves
    nothing a later run could take for complete data.
    """
    url = url or os.environ.get("CIFAR10_URL") or URL
    md5 = md5 or os.environ.get("CIFAR10_MD5") or ARCHIVE_MD5
    created = _missing_directories(data_dir)
    try:
        _fetch(data_dir, url, md5)
    except BaseException:
        for directory in created:  # a failed first run leaves no empty data_dir behind
            try:
                os.rmdir(directory)
            except OSError:  # not empty (an archive the user may keep), or not made
                break
        raise


def _missing_directories(path):
    """The directories os.makedirs(path) would create, deepest first."""
    missing, path = [], os.path.realpath(path)  # realpath: "link/../x" is made beside link's target
    while not os.path.lexists(path) and path != os.path.dirname(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _fetch(data_dir, url, md5):
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise CIFAR10Error(f"cannot use {data_dir} as the data directory ({e.strerror})") from None
    archive = os.path.join(data_dir, ARCHIVE_NAME)
    if os.path.exists(archive):
        try:
            digest = _md5(archive)
        except OSError as e:
            raise CIFAR10Error(f"cannot read {archive} ({e.strerror}): delete it and run again") from None
        if digest != md5:
            raise CIFAR10Error(
                f"{archive} is not the CIFAR-10 archive (MD5 differs from {md5}): delete it and run again"
            )
    else:
        _download(url, archive, md5)
    _extract(archive, data_dir)


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url, archive, md5):
    from tqdm import tqdm

    part = archive + ".part"
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(part, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {ARCHIVE_NAME}") as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
        if _md5(part) != md5:
            raise CIFAR10Error(f"download from {url} is corrupt (MD5 is not {md5}): run again")
        os.replace(part, archive)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise CIFAR10Error(
            f"cannot download {url} ({reason}): fetch it by hand and put it at {archive}, or point at "
            f"a directory holding {BATCHES_DIR}/ with --data_dir DIR or the environment variable "
            f"CIFAR10_DATA_DIR=DIR"
        ) from None
    finally:
        if os.path.exists(part):
            os.remove(part)


def _extract(archive, data_dir):
    tmp = tempfile.mkdtemp(prefix=".cifar10-extract-", dir=data_dir)
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = tar.getmembers()
                for m in members:
                    _check_member(m, tmp)
                if hasattr(tarfile, "data_filter"):  # Python 3.12, 3.11.4 and later: a second line of defence
                    tar.extractall(tmp, members=members, filter="data")
                else:  # older: extractall() has no filter argument; _check_member above is the defence
                    for m in members:  # and modes as the filter leaves them: no set-id bits, owner may read
                        m.mode = (m.mode & 0o755) | (0o700 if m.isdir() else 0o600)
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise CIFAR10Error(f"cannot extract {archive} ({e}): delete it and run again") from None
        extracted = os.path.join(tmp, BATCHES_DIR)
        if not os.path.isdir(extracted):
            raise CIFAR10Error(f"{archive} holds no {BATCHES_DIR}/: delete it and run again")
        try:
            read_splits(extracted, 0)  # only verified data takes the final name
        except CIFAR10Error as e:
            raise CIFAR10Error(f"{archive} holds corrupt data ({e}): delete it and run again") from None
        target = os.path.join(data_dir, BATCHES_DIR)
        try:
            os.replace(extracted, target)
        except OSError as e:
            raise CIFAR10Error(f"cannot create {target} ({e.strerror}): delete what is there") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_member(member, root):
    target = os.path.realpath(os.path.join(root, member.name))
    inside = os.path.commonpath([target, os.path.realpath(root)]) == os.path.realpath(root)
    if not inside or os.path.isabs(member.name) or not (member.isfile() or member.isdir()):
        raise CIFAR10Error(f"unsafe archive member {member.name!r}: refusing to extract")

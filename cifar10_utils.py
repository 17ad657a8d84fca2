"""CIFAR-10: find or fetch the official "python version" batches, split, and batch.

    data = get_cifar10('data/')                       # {'train', 'validation', 'test'}
    loaders = get_dataloader(data, batch_size=128, return_numpy=True)
    for images, labels in loaders['train']:           # (B, 3, 32, 32) float32, (B,) int64
        ...

Images stay in memory as the uint8 pixels of the files (184 MB for all 60,000);
each batch is cut with one fancy-indexing gather and normalized on the fly, so
no float copy of a whole split ever exists. NumPy only: torch is imported when
torch loaders are asked for and not before.

The validation images are drawn from the 50,000 training images with a fixed
seed of their own (SPLIT_SEED), so the split is the same for every training
seed and every run. Shuffling of the training loader is seeded separately
(`get_dataloader(..., seed=...)`, by default drawn from NumPy's global RNG).
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

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
META_FILE = "batches.meta"

MEAN = (0.491, 0.482, 0.447)
STD = (0.247, 0.243, 0.262)
N_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
N_FEATURES = 3 * 32 * 32
SPLIT_SEED = 20211108  # fixed: the validation split never depends on the training seed


class CIFAR10Error(RuntimeError):
    """Data that cannot be found, fetched or trusted; the message says what to do."""


# ---------------------------------------------------------------- data sets


class CIFAR10Split:
    """One split held as uint8 pixels, a map-style data set.

    Attributes:
        images: (N, 3072) uint8, rows in the official channel-major order.
        labels: (N,) int64 in 0..9.

    Shape:
        ``split[i]`` -> (image (3, 32, 32) float32 normalized, int label).
    """

    def __init__(self, images, labels, name):
        self.images, self.labels, self.name = images, labels, name

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return normalize(self.images[i][None])[0], int(self.labels[i])

    def __repr__(self):
        return f"CIFAR10Split({self.name!r}, n={len(self)})"


# x_norm = (u / 255 - mean) / std = u * scale + shift, per feature of the flat image
_SCALE = np.repeat(1.0 / (255.0 * np.array(STD)), 1024).astype(np.float32)
_SHIFT = np.repeat(-np.array(MEAN) / np.array(STD), 1024).astype(np.float32)


def normalize(pixels):
    """uint8 (B, 3072) -> float32 (B, 3, 32, 32), per-channel mean 0 and std 1."""
    out = np.multiply(pixels, _SCALE, dtype=np.float32)
    out += _SHIFT
    return out.reshape(len(pixels), *IMAGE_SHAPE)


def _is_integer(value):
    """A Python or NumPy integer, but not a bool (which Python counts as an int)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def get_cifar10(data_dir="data/", validation_size=5000, url=None, md5=None):
    """Load CIFAR-10 from ``data_dir/cifar-10-batches-py``, downloading it if missing.

    Args:
        data_dir: directory holding ``cifar-10-batches-py/`` (or where it goes).
        validation_size: training images set aside for validation, in [0, 50000].
        url, md5: archive to fetch when the batches are missing; default to the
            environment variables CIFAR10_URL / CIFAR10_MD5, then the official ones.

    Returns:
        {'train', 'validation', 'test'}: CIFAR10Split data sets.
    """
    n_max = 50_000
    if not _is_integer(validation_size) or not 0 <= validation_size <= n_max:
        raise ValueError(f"validation_size must be an integer in [0, {n_max}], got {validation_size!r}")
    batches_dir = os.path.join(data_dir, BATCHES_DIR)
    if not os.path.isdir(batches_dir):
        fetch_cifar10(data_dir, url, md5)
    return _read_splits(batches_dir, validation_size)


# ---------------------------------------------------------------- loaders


class DataLoader:
    """Batches of a CIFAR10Split, cut by vectorised indexing.

    Shape:
        yields (images (B, 3, 32, 32) float32, labels (B,) int64), as NumPy
        arrays or torch tensors.
    """

    def __init__(self, dataset, batch_size, shuffle=False, drop_last=False, return_numpy=False, seed=None):
        if not _is_integer(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last, self.return_numpy = shuffle, drop_last, return_numpy
        if seed is None:
            seed = np.random.randint(2**31)  # noqa: NPY002 (follows np.random.seed, as torch loaders follow torch)
        self.rng = np.random.default_rng(seed)
        if not return_numpy:
            import torch

            self._torch = torch
            self._scale, self._shift = torch.from_numpy(_SCALE), torch.from_numpy(_SHIFT)

    def __len__(self):
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        images, labels = self.dataset.images, self.dataset.labels
        order = self.rng.permutation(len(labels)) if self.shuffle else None
        for i in range(len(self)):
            rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
            if order is not None:
                rows = order[rows]
            if self.return_numpy:
                yield normalize(images[rows]), labels[rows]
            else:
                yield self._normalize_torch(images[rows]), self._torch.from_numpy(labels[rows])

    def _normalize_torch(self, pixels):
        """normalize() in torch, bit for bit: torch spreads the element-wise work over all
        cores, which halves its cost (NumPy's uses one)."""
        x = self._torch.from_numpy(pixels).to(self._torch.float32, copy=True)  # never the data set's
        return x.mul_(self._scale).add_(self._shift).reshape(len(pixels), *IMAGE_SHAPE)

    def __repr__(self):
        return (
            f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, return_numpy={self.return_numpy})"
        )


def get_dataloader(dataset, batch_size, return_numpy=False, seed=None):
    """Loaders over the dict of ``get_cifar10``.

    Train is shuffled each epoch and drops its last partial batch; validation
    and test run in order and keep every image. ``seed`` fixes the shuffling
    (default: drawn from NumPy's global RNG, so ``np.random.seed`` governs it).
    """
    return {
        name: DataLoader(
            split,
            batch_size,
            shuffle=name == "train",
            drop_last=name == "train",
            return_numpy=return_numpy,
            seed=seed,
        )
        for name, split in dataset.items()
    }


# ---------------------------------------------------------------- reading


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The batch files are pickles: allow the NumPy array classes they use, nothing else."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
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


def _read_splits(batches_dir, validation_size):
    meta_path = os.path.join(batches_dir, META_FILE)
    label_names = _load_pickle(meta_path).get("label_names")
    if not isinstance(label_names, (list, tuple)) or len(label_names) != N_CLASSES:
        raise CIFAR10Error(f"corrupt CIFAR-10 file {meta_path} (no 10 label_names): {_redo_hint(meta_path)}")
    test = CIFAR10Split(*_load_batch(os.path.join(batches_dir, TEST_FILE)), "test")
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
    return {
        "train": CIFAR10Split(images[:cut], targets[:cut], "train"),
        "validation": CIFAR10Split(images[cut:], targets[cut:], "validation"),
        "test": test,
    }


def _split_rows(n_train, validation_size):
    """Row of each original training image: training images first, then validation, each in file order."""
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
            f"cannot download {url} ({reason}): fetch it by hand and put it at {archive}"
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
                tar.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise CIFAR10Error(f"cannot extract {archive} ({e}): delete it and run again") from None
        extracted = os.path.join(tmp, BATCHES_DIR)
        if not os.path.isdir(extracted):
            raise CIFAR10Error(f"{archive} holds no {BATCHES_DIR}/: delete it and run again")
        try:
            _read_splits(extracted, 0)  # only verified data takes the final name
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

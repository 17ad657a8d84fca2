"""CIFAR-10: find or fetch the official "python version" batches, split, and batch.

    data = get_cifar10()                              # {'train', 'validation', 'test'}; data_dir below
    loaders = get_dataloader(data, batch_size=128, return_numpy=True)
    for images, labels in loaders['train']:           # (B, 3, 32, 32) float32, (B,) int64
        ...

    loaders = get_device_loaders(data, 128, device="cuda", seed=42)   # the same batches, kept on a GPU

The data directory is the argument, else $CIFAR10_DATA_DIR, else ``data/``
(``default_data_dir()``); it holds ``cifar-10-batches-py/`` or is that folder.

Images stay in memory as the uint8 pixels of the files (184 MB for all 60,000);
each batch is cut with one fancy-indexing gather and normalized on the fly in
float32, so no float copy of a whole split ever exists. ``get_device_loaders``
does the same on a torch device: each split's uint8 pixels are copied there once
and every batch is cut and normalized there, with no copy from host memory per
batch. NumPy only: torch is imported when torch loaders are asked for and not
before.

The validation images are drawn from the 50,000 training images with NumPy and
a fixed seed of their own (SPLIT_SEED). So the split differs from the course
skeleton's (``random_split`` with a torch generator seeded 42): loading the data
needs no torch, and the split is the same for every training seed and every
run. Shuffling of the training loader is seeded separately
(``get_dataloader(..., seed=...)``, by default drawn from NumPy's global RNG).

The skeleton's names work too: ``read_data_sets`` (= ``get_cifar10``),
``numpy_collate_fn``, ``split.classes`` and ``split.dataset.classes``, and the
items of every split go through ``torch.utils.data.DataLoader`` unchanged.
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

    Its items also go through ``torch.utils.data.DataLoader`` and its default
    collate, which stacks them into float32 and int64 tensors.

    Like the ``torch.utils.data.Subset`` of the course skeleton, a split knows
    the full set it was cut from: ``split[i]`` is ``split.dataset[split.indices[i]]``.

    Attributes:
        images: (N, 3072) uint8, rows in the official channel-major order.
        labels: (N,) int64 in 0..9.
        name: 'train', 'validation', 'test', or what the full sets are called.
        classes: the 10 class names of batches.meta ('airplane', ..., 'truck'), label k is classes[k].
        dataset: the full set (a CIFAR10Split): for 'train' and 'validation' all 50,000
            training images, the training split's rows first, then the validation
            split's (the order they are stored in, so no copy is made); for 'test'
            the whole test batch. None for a full set itself.
        indices: (N,) int64 rows of this split in ``dataset``, or None.

    Shape:
        ``split[i]`` -> (image (3, 32, 32) float32 normalized, int label).
    """

    def __init__(self, images, labels, name, classes=None, dataset=None, indices=None):
        self.images, self.labels, self.name = images, labels, name
        self.classes, self.dataset, self.indices = classes, dataset, indices

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


def _normalize_tensor(pixels, scale, shift):
    """normalize() in torch on the pixels' device: the same two float32 operations, so the same bits."""
    x = pixels.to(scale.dtype, copy=True)  # a new tensor: the data set's pixels are never written
    return x.mul_(scale).add_(shift).view(len(pixels), *IMAGE_SHAPE)


def _is_integer(value):
    """A Python or NumPy integer, but not a bool (which Python counts as an int)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def default_data_dir():
    """$CIFAR10_DATA_DIR when set (so every script finds data kept elsewhere), else ``data/``."""
    return os.environ.get("CIFAR10_DATA_DIR") or "data/"


def get_cifar10(data_dir=None, validation_size=5000, url=None, md5=None):
    """Load CIFAR-10 from ``data_dir/cifar-10-batches-py``, downloading it if missing.

    Args:
        data_dir: directory holding ``cifar-10-batches-py/`` (or where it goes), or
            that folder itself; None: ``default_data_dir()``.
        validation_size: training images set aside for validation, in [0, 50000].
        url, md5: archive to fetch when the batches are missing; default to the
            environment variables CIFAR10_URL / CIFAR10_MD5, then the official ones.

    Returns:
        {'train', 'validation', 'test'}: CIFAR10Split data sets.
    """
    n_max = 50_000
    if not _is_integer(validation_size) or not 0 <= validation_size <= n_max:
        raise ValueError(f"validation_size must be an integer in [0, {n_max}], got {validation_size!r}")
    batches_dir, fetch_dir = _locate(default_data_dir() if data_dir is None else os.fspath(data_dir))
    if not os.path.isdir(batches_dir):
        fetch_cifar10(fetch_dir, url, md5)
    return _read_splits(batches_dir, validation_size)


def read_data_sets(data_dir, validation_size=5000):
    """The course skeleton's name for ``get_cifar10``: the same splits."""
    return get_cifar10(data_dir, validation_size)


def _locate(data_dir):
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


def numpy_collate_fn(batch):
    """Collate for ``torch.utils.data.DataLoader(..., collate_fn=numpy_collate_fn)``, as in the skeleton.

    Args:
        batch: list of (image, label) items; images NumPy arrays or CPU tensors of
            3072 values ((3, 32, 32) or flat), labels ints, NumPy integers or 0-d tensors.

    Returns:
        (images (B, 3, 32, 32) float32, labels (B,) int64) NumPy arrays.
    """
    if len(batch) == 0:
        raise ValueError("numpy_collate_fn got an empty batch")
    # np.asarray reads a CPU tensor without a copy; the list is what DataLoader hands a collate function
    images = np.stack([np.asarray(image, dtype=np.float32) for image, _ in batch])
    labels = np.array([int(label) for _, label in batch], dtype=np.int64)
    return images.reshape(len(batch), *IMAGE_SHAPE), labels


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
                # in torch, not normalize(): torch spreads the element-wise work over all cores,
                # which halves its cost (NumPy's uses one)
                x = _normalize_tensor(self._torch.from_numpy(images[rows]), self._scale, self._shift)
                yield x, self._torch.from_numpy(labels[rows])

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


# ---------------------------------------------------------------- loaders on a torch device


class DeviceLoader:
    """Batches of a CIFAR10Split whose pixels live on a torch device (the CPU or a GPU).

    The split's uint8 pixels and labels are copied to ``device`` once, here (on the
    CPU they are shared with the NumPy arrays, not copied). Each batch is then cut
    on the device by index and normalized there in float32, bit for bit as
    ``normalize()`` does it, so nothing crosses from host memory per batch and no
    worker processes are needed.

    With ``shuffle``, each pass draws a new ``torch.randperm`` from a
    ``torch.Generator`` on the device seeded from ``seed``: two loaders with the
    same seed give the same batches, epoch after epoch.

    Shape:
        yields (images (B, 3, 32, 32) float32, labels (B,) int64), both on ``device``.
    """

    def __init__(self, dataset, batch_size, device, shuffle=False, drop_last=False, seed=None):
        import torch

        if not _is_integer(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if shuffle and not _is_integer(seed):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self._torch = torch
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.images = torch.as_tensor(dataset.images).to(device)
        self.labels = torch.as_tensor(dataset.labels).to(device)
        self.device = self.images.device  # 'cuda' resolved to 'cuda:0', where the generator must live too
        self._scale = torch.from_numpy(_SCALE).to(self.device)
        self._shift = torch.from_numpy(_SHIFT).to(self.device)
        self.generator = None
        if shuffle:
            self.generator = torch.Generator(device=self.device)
            self.generator.manual_seed(shuffle_seed(seed))

    def __len__(self):
        n, b = len(self.labels), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        torch, b = self._torch, self.batch_size
        order = None
        if self.shuffle:
            order = torch.randperm(len(self.labels), generator=self.generator, device=self.device)
        for i in range(len(self)):
            if order is None:
                images, labels = self.images[i * b : (i + 1) * b], self.labels[i * b : (i + 1) * b]
            else:
                # index_select, not images[rows]: the same gather, 2.4x faster on the CPU
                rows = order[i * b : (i + 1) * b]
                images, labels = self.images.index_select(0, rows), self.labels.index_select(0, rows)
            yield _normalize_tensor(images, self._scale, self._shift), labels

    def __repr__(self):
        return (
            f"DeviceLoader({self.dataset!r}, batch_size={self.batch_size}, device={str(self.device)!r}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last})"
        )


def shuffle_seed(seed):
    """The seed of the shuffling generator, derived from the run's ``seed``.

    A trainer seeds its weights with ``torch.manual_seed(seed)``; a shuffling
    generator seeded with the same number would start from the same state, so
    the two streams would not be independent. SeedSequence turns ``seed`` into
    another, unrelated 64-bit number (negative seeds included: they are taken
    modulo 2**64, which keeps distinct seeds distinct).
    """
    sequence = np.random.SeedSequence(int(seed) % 2**64, spawn_key=(1,))
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def get_device_loaders(dataset, batch_size, device, seed, eval_batch_size=None):
    """Loaders over the dict of ``get_cifar10`` whose batches are made on ``device``.

    Train is shuffled each epoch (seeded by ``seed``) and drops its last partial
    batch; validation and test run in order with ``eval_batch_size`` (default
    ``batch_size``) and keep every image. See DeviceLoader.

    Returns:
        {'train', 'validation', 'test'}: DeviceLoader, each with ``len()`` batches and ``.dataset``.
    """
    if eval_batch_size is None:
        eval_batch_size = batch_size
    return {
        name: DeviceLoader(
            split,
            batch_size if name == "train" else eval_batch_size,
            device,
            shuffle=name == "train",
            drop_last=name == "train",
            seed=seed,
        )
        for name, split in dataset.items()
    }


# ---------------------------------------------------------------- reading


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


def _read_splits(batches_dir, validation_size):
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

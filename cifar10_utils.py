"""CIFAR-10: find or fetch the official "python version" batches, split, and batch.

    data = get_cifar10()                              # {'train', 'validation', 'test'}; data_dir below
    loaders = get_dataloader(data, batch_size=128, return_numpy=True)
    for images, labels in loaders['train']:           # (B, 3, 32, 32) float32, (B,) int64
        ...

The data directory is the argument, else $CIFAR10_DATA_DIR, else ``data/``; it holds
``cifar-10-batches-py/`` or is that folder. Images stay in memory as the files' uint8 pixels; each
batch is cut by one gather and normalized on the fly in float32. The 5,000 validation images are
drawn with NumPy and a seed of their own (SPLIT_SEED), not the skeleton's ``random_split``: loading
needs no torch, and no training seed moves the split. The skeleton's names work too
(``read_data_sets``, ``numpy_collate_fn``, ``split.dataset.classes``). Reading and fetching the
files: support/cifar10_files.py; the same batches made on a GPU: support/device_loader.py.
"""

import os

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
    from support import cifar10_files  # the files' plumbing, which imports this module's names

    n_max = 50_000
    if not _is_integer(validation_size) or not 0 <= validation_size <= n_max:
        raise ValueError(f"validation_size must be an integer in [0, {n_max}], got {validation_size!r}")
    batches_dir, fetch_dir = cifar10_files.locate(
        default_data_dir() if data_dir is None else os.fspath(data_dir)
    )
    if not os.path.isdir(batches_dir):
        cifar10_files.fetch_cifar10(fetch_dir, url, md5)
    return cifar10_files.read_splits(batches_dir, validation_size)


def read_data_sets(data_dir, validation_size=5000):
    """The course skeleton's name for ``get_cifar10``: the same splits."""
    return get_cifar10(data_dir, validation_size)


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


def shuffle_seed(seed, bits=64):
    """The seed of the shuffling generator: a ``bits``-bit word (64 for torch's generator, 32 for the
    NumPy trainer's) of child 1 of ``SeedSequence(seed)``; child 0 (``spawn_key=(0,)``) draws the
    NumPy MLP's weights.

    A trainer seeds its weights with ``torch.manual_seed(seed)``; a shuffling
    generator seeded with the same number would start from the same state, so
    the two streams would not be independent. SeedSequence turns ``seed`` into
    another, unrelated number (negative seeds included: they are taken
    modulo 2**64, which keeps distinct seeds distinct).
    """
    words = {64: np.uint64, 32: np.uint32}
    if bits not in words:
        raise ValueError(f"bits must be 32 or 64, got {bits!r}")
    sequence = np.random.SeedSequence(int(seed) % 2**64, spawn_key=(1,))
    return int(sequence.generate_state(1, dtype=words[bits])[0])

"""cifar10_utils: splits, normalization, the host loaders, the skeleton's names and the shuffling seed.

Everything runs on small made-up batches (tests/conftest.py); only the tests marked needs_real_data read
the real CIFAR-10 files, when CIFAR10_DATA_DIR names them. Reading and fetching the files:
test_cifar10_files.py; the device loaders: test_device_loader.py.
"""

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
from cifar10_helpers import (
    BATCHES,
    CLASS_NAMES,
    MEAN,
    N_PER_BATCH,
    N_TEST,
    N_TRAIN,
    REAL_DATA_DIR,
    STD,
    VAL,
    assert_loaded,
    needs_real_data,
    no_archive_env,  # noqa: F401 (autouse: no test may fetch the official archive)
    split_rows,
    to_pixels,
)
from conftest import REPO_ROOT

import cifar10_utils as cu


def reference_normalize(pixels):
    """(N, 3072) uint8 in channel-major order -> (N, 3, 32, 32) float64, computed the plain way."""
    images = pixels.reshape(len(pixels), 3, 32, 32).astype(np.float64) / 255.0
    return (images - MEAN[:, None, None]) / STD[:, None, None]


def source_indices(fake, pixels):
    """Index in the training files (data_batch_1..5 concatenated) of each row of ``pixels``."""
    index = {row.tobytes(): i for i, row in enumerate(fake.train_images)}
    assert len(index) == len(fake.train_images), "fake images are not unique"
    return np.array([index[row.tobytes()] for row in pixels], dtype=np.int64)


def epoch(loader):
    """All batches of one pass, as a list of (x, y) NumPy arrays."""
    return [(np.asarray(x), np.asarray(y)) for x, y in loader]


# ---------------------------------------------------------------- splits


@pytest.mark.parametrize("validation_size", [0, 1, VAL, N_TRAIN - 1, N_TRAIN])
def test_split_sizes_and_types(fake_cifar_dir, validation_size):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=validation_size)
    assert set(data) == {"train", "validation", "test"}
    expected = {"train": N_TRAIN - validation_size, "validation": validation_size, "test": N_TEST}
    for name, split in data.items():
        assert len(split) == expected[name]
        assert split.images.shape == (expected[name], 3072) and split.images.dtype == np.uint8
        assert split.labels.shape == (expected[name],) and split.labels.dtype == np.int64


def test_default_validation_size_is_5000(fake_cifar_writer, tmp_path):
    fake = fake_cifar_writer(tmp_path / "big", n_per_batch=1000, seed=1)
    data = cu.get_cifar10(fake.data_dir)
    assert [len(data[k]) for k in ("train", "validation", "test")] == [0, 5000, 1000]


def test_train_and_validation_are_exactly_the_training_images(fake_cifar):
    data = cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)
    train_idx = source_indices(fake_cifar, data["train"].images)
    val_idx = source_indices(fake_cifar, data["validation"].images)
    # disjoint, and together every training image exactly once
    assert np.array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(N_TRAIN))
    assert np.array_equal(data["train"].labels, fake_cifar.train_labels[train_idx])
    assert np.array_equal(data["validation"].labels, fake_cifar.train_labels[val_idx])
    # each split keeps the order of the files
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)
    # drawn at random, not the tail of the last file
    assert len(np.unique(val_idx // N_PER_BATCH)) >= 3
    # the test split is test_batch as written, in order
    assert np.array_equal(data["test"].images, fake_cifar.test_images)
    assert np.array_equal(data["test"].labels, fake_cifar.test_labels)


def test_split_is_fixed_and_ignores_global_numpy_seed(fake_cifar_dir):
    np.random.seed(0)  # noqa: NPY002 (the global RNG is under test)
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    first = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)["validation"]
    assert np.array_equal(np.random.get_state()[1], state), "consumed the global RNG"  # noqa: NPY002
    np.random.seed(12345)  # noqa: NPY002 (the global RNG is under test)
    second = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)["validation"]
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.labels, second.labels)


@pytest.mark.parametrize("bad", [-1, 50_001, N_TRAIN + 1, 5000.0, 30.5, "30", None, True])
def test_invalid_validation_size_raises_value_error(fake_cifar_dir, bad):
    with pytest.raises(ValueError, match="validation_size"):
        cu.get_cifar10(fake_cifar_dir, validation_size=bad)


def test_numpy_integer_validation_size_is_accepted(fake_cifar_dir):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=np.int64(VAL))
    assert len(data["validation"]) == VAL


def test_map_style_indexing(fake_cifar_dir):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    for split in data.values():
        n = len(split)
        for i in (0, 7, n - 1, -1, -n):
            image, label = split[i]
            assert isinstance(image, np.ndarray) and image.shape == (3, 32, 32)
            assert image.dtype == np.float32
            assert type(label) is int and label == split.labels[i]
            np.testing.assert_allclose(image, reference_normalize(split.images[i][None])[0], atol=1e-5)
        assert np.array_equal(split[-1][0], split[n - 1][0])
        with pytest.raises(IndexError):
            split[n]


# ---------------------------------------------------------------- normalization


def test_normalization_is_per_channel_and_channel_major():
    # channel c of every pixel holds (40 * c + position) % 256: layout errors cannot cancel out
    pixels = ((np.arange(3)[:, None] * 40 + np.arange(1024)[None, :]) % 256).astype(np.uint8).reshape(1, 3072)
    split = cu.CIFAR10Split(pixels, np.zeros(1, dtype=np.int64), "probe")
    image, _ = split[0]
    for c in range(3):
        for r, col in [(0, 0), (0, 31), (5, 17), (31, 31)]:
            u = (40 * c + 32 * r + col) % 256
            assert image[c, r, col] == pytest.approx((u / 255 - MEAN[c]) / STD[c], abs=1e-5)
    # extremes of the uint8 range
    flat = np.stack([np.zeros(3072, np.uint8), np.full(3072, 255, np.uint8)])
    out = cu.normalize(flat)
    assert out.dtype == np.float32 and out.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(out[0, :, 0, 0], -MEAN / STD, atol=1e-5)
    np.testing.assert_allclose(out[1, :, 0, 0], (1 - MEAN) / STD, atol=1e-5)


# ---------------------------------------------------------------- loaders


@pytest.mark.parametrize("batch_size", [1, 7, 30, 32, 270, 500])
def test_loader_lengths_and_batch_sizes(fake_cifar_dir, batch_size):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    loaders = cu.get_dataloader(data, batch_size, return_numpy=True, seed=0)
    assert set(loaders) == {"train", "validation", "test"}
    n = {"train": N_TRAIN - VAL, "validation": VAL, "test": N_TEST}
    for name, loader in loaders.items():
        assert len(loader.dataset) == n[name]
        sizes = [len(y) for _, y in loader]
        if name == "train":  # last partial batch dropped
            assert len(loader) == n[name] // batch_size
            assert sizes == [batch_size] * (n[name] // batch_size)
        else:  # everything kept
            assert len(loader) == -(-n[name] // batch_size)
            assert sum(sizes) == n[name] and all(s == batch_size for s in sizes[:-1])
        assert len(sizes) == len(loader)


def test_eval_loaders_cover_every_image_in_order(fake_cifar):
    data = cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)
    loaders = cu.get_dataloader(data, 16, return_numpy=True)
    for name in ("validation", "test"):
        for _ in range(2):  # same order every epoch
            batches = epoch(loaders[name])
            x = np.concatenate([b[0] for b in batches])
            y = np.concatenate([b[1] for b in batches])
            np.testing.assert_allclose(x, reference_normalize(data[name].images), atol=1e-5)
            assert np.array_equal(y, data[name].labels)
    x = np.concatenate([b[0] for b in epoch(loaders["test"])])
    assert np.array_equal(to_pixels(x), fake_cifar.test_images)


def test_numpy_batches_types_shapes_and_values(fake_cifar_dir):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    for name, loader in cu.get_dataloader(data, 32, return_numpy=True, seed=3).items():
        rows = {r.tobytes(): i for i, r in enumerate(data[name].images)}
        for x, y in loader:
            assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
            assert x.dtype == np.float32 and x.shape == (len(y), 3, 32, 32)
            assert y.dtype == np.int64 and y.ndim == 1
            assert y.min() >= 0 and y.max() <= 9
            # each image is a normalized image of this split with its own label
            idx = [rows[r.tobytes()] for r in to_pixels(x)]
            np.testing.assert_allclose(x, reference_normalize(data[name].images[idx]), atol=1e-5)
            assert np.array_equal(y, data[name].labels[idx])


def test_train_loader_shuffles_every_epoch_without_repeats(fake_cifar):
    data = cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)
    loader = cu.get_dataloader(data, 32, return_numpy=True, seed=0)["train"]
    train_idx = set(source_indices(fake_cifar, data["train"].images).tolist())
    orders = []
    for _ in range(3):
        idx = np.concatenate([source_indices(fake_cifar, to_pixels(x)) for x, _ in loader])
        assert len(idx) == 8 * 32 and len(set(idx.tolist())) == len(idx)
        assert set(idx.tolist()) <= train_idx
        orders.append(idx)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], np.sort(orders[0])), "not shuffled"
    # which 14 images are dropped changes too (with overwhelming probability)
    assert len({frozenset(train_idx - set(o.tolist())) for o in orders}) > 1


def _train_epochs(data, n_epochs=2, **kwargs):
    loader = cu.get_dataloader(data, 32, return_numpy=True, **kwargs)["train"]
    return np.concatenate([y for _ in range(n_epochs) for _, y in loader])


def test_shuffling_reproducible_with_seed_argument(fake_cifar_dir):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    a = _train_epochs(data, seed=5)
    b = _train_epochs(data, seed=5)
    c = _train_epochs(data, seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    xa = np.concatenate([x for x, _ in cu.get_dataloader(data, 32, return_numpy=True, seed=5)["train"]])
    xb = np.concatenate([x for x, _ in cu.get_dataloader(data, 32, return_numpy=True, seed=5)["train"]])
    assert np.array_equal(xa, xb)


def test_shuffling_reproducible_with_global_numpy_seed(fake_cifar_dir):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    np.random.seed(42)  # noqa: NPY002 (the global RNG is under test)
    a = _train_epochs(data)
    np.random.seed(42)  # noqa: NPY002 (the global RNG is under test)
    b = _train_epochs(data)
    np.random.seed(43)  # noqa: NPY002 (the global RNG is under test)
    c = _train_epochs(data)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_validation_size_zero_gives_empty_validation_loader(fake_cifar_dir):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=0)
    loaders = cu.get_dataloader(data, 32, return_numpy=True, seed=0)
    assert len(loaders["validation"]) == 0 and list(loaders["validation"]) == []
    assert len(loaders["train"]) == N_TRAIN // 32
    assert sum(len(y) for _, y in loaders["train"]) == N_TRAIN // 32 * 32


@pytest.mark.parametrize("bad", [0, -1, 2.5, "32", None, True])
def test_invalid_batch_size_raises(fake_cifar_dir, bad):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    with pytest.raises(ValueError, match="batch_size"):
        cu.get_dataloader(data, bad, return_numpy=True)


def test_torch_loaders_yield_float32_and_int64_tensors(fake_cifar_dir):
    torch = pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    torch_loaders = cu.get_dataloader(data, 32, seed=9)  # return_numpy defaults to False
    numpy_loaders = cu.get_dataloader(data, 32, return_numpy=True, seed=9)
    for name in ("train", "validation", "test"):
        assert len(torch_loaders[name]) == len(numpy_loaders[name])
        for (x, y), (xn, yn) in zip(torch_loaders[name], numpy_loaders[name], strict=True):
            assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
            assert x.dtype == torch.float32 and tuple(x.shape) == (len(yn), 3, 32, 32)
            assert y.dtype == torch.int64 and tuple(y.shape) == (len(yn),)
            assert np.array_equal(x.numpy(), xn) and np.array_equal(y.numpy(), yn)


# ---------------------------------------------------------------- the skeleton's names


def test_read_data_sets_is_get_cifar10(fake_cifar_dir):
    a = cu.read_data_sets(fake_cifar_dir, validation_size=VAL)
    b = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    assert set(a) == set(b) == {"train", "validation", "test"}
    for name in a:
        assert np.array_equal(a[name].images, b[name].images)
        assert np.array_equal(a[name].labels, b[name].labels)
    assert inspect.signature(cu.read_data_sets).parameters["validation_size"].default == 5000
    with pytest.raises(ValueError, match="validation_size"):
        cu.read_data_sets(fake_cifar_dir, validation_size=N_TRAIN + 1)


def test_every_split_has_classes_and_a_full_dataset_like_a_subset(fake_cifar):
    data = cu.get_cifar10(fake_cifar.data_dir, validation_size=VAL)
    full_train = data["train"].dataset
    assert data["validation"].dataset is full_train and len(full_train) == N_TRAIN
    assert len(data["test"].dataset) == N_TEST
    for split in data.values():
        assert split.classes == CLASS_NAMES and all(type(c) is str for c in split.classes)
        assert split.dataset.classes == CLASS_NAMES  # the skeleton's cifar10['train'].dataset.classes
        assert split.indices.dtype == np.int64 and split.indices.shape == (len(split),)
        # Subset's contract: split[i] is dataset[indices[i]]
        for i in (0, len(split) // 2, len(split) - 1):
            image, label = split[i]
            full_image, full_label = split.dataset[split.indices[i]]
            assert np.array_equal(image, full_image) and label == full_label
        assert np.array_equal(split.dataset.images[split.indices], split.images)
        assert np.array_equal(split.dataset.labels[split.indices], split.labels)
    # the full training set is every training image once, the two splits' rows disjoint
    assert np.array_equal(np.sort(source_indices(fake_cifar, full_train.images)), np.arange(N_TRAIN))
    assert not set(data["train"].indices.tolist()) & set(data["validation"].indices.tolist())
    # views, not copies: the splits cost no memory of their own
    assert np.shares_memory(data["train"].images, full_train.images)
    assert np.shares_memory(data["validation"].images, full_train.images)


def _items(split, rows):
    return [split[i] for i in rows]


def test_numpy_collate_fn_with_numpy_items(fake_cifar_dir):
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    images, labels = cu.numpy_collate_fn(_items(data["test"], range(5)))
    assert isinstance(images, np.ndarray) and images.dtype == np.float32 and images.shape == (5, 3, 32, 32)
    assert isinstance(labels, np.ndarray) and labels.dtype.kind == "i" and labels.shape == (5,)
    assert np.array_equal(images, cu.normalize(data["test"].images[:5]))
    assert np.array_equal(labels, data["test"].labels[:5])
    with pytest.raises(ValueError, match="empty"):
        cu.numpy_collate_fn([])


def test_numpy_collate_fn_with_tensor_items(fake_cifar_dir):
    torch = pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    items = [(torch.from_numpy(x), torch.tensor(y)) for x, y in _items(data["test"], range(3, 9))]
    images, labels = cu.numpy_collate_fn(items)
    assert isinstance(images, np.ndarray) and images.dtype == np.float32 and images.shape == (6, 3, 32, 32)
    assert isinstance(labels, np.ndarray) and labels.dtype.kind == "i"
    assert np.array_equal(images, cu.normalize(data["test"].images[3:9]))
    assert np.array_equal(labels, data["test"].labels[3:9])


def test_items_work_with_torch_dataloader_and_its_default_collate(fake_cifar_dir):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader as TorchDataLoader

    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    image, label = data["train"][0]
    assert image.dtype == np.float32 and image.shape == (3, 32, 32) and type(label) is int
    batches = list(TorchDataLoader(data["test"], batch_size=16, shuffle=False))
    assert [len(y) for _, y in batches] == [16, 16, 16, N_TEST - 48]
    x = torch.cat([x for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    assert x.dtype == torch.float32 and tuple(x.shape) == (N_TEST, 3, 32, 32) and y.dtype == torch.int64
    assert np.array_equal(x.numpy(), cu.normalize(data["test"].images))
    assert np.array_equal(y.numpy(), data["test"].labels)
    # the skeleton's NumPy path: torch's DataLoader with numpy_collate_fn, shuffled, last batch dropped
    generator = torch.Generator().manual_seed(0)
    loader = TorchDataLoader(
        data["train"],
        batch_size=32,
        shuffle=True,
        drop_last=True,
        collate_fn=cu.numpy_collate_fn,
        generator=generator,
    )
    seen = []
    for x, y in loader:
        assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (32, 3, 32, 32)
        assert isinstance(y, np.ndarray) and y.shape == (32,)
        rows = split_rows(data["train"], x)
        assert np.array_equal(y, data["train"].labels[rows])
        seen.extend(rows.tolist())
    assert len(seen) == (N_TRAIN - VAL) // 32 * 32 and len(set(seen)) == len(seen)


_NO_TORCH_SCRIPT = r"""
import sys

class BlockTorch:
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            BlockTorch.attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

assert "torch" not in sys.modules
sys.meta_path.insert(0, BlockTorch())
sys.path.insert(0, sys.argv[1])
import cifar10_utils as cu

data = cu.get_cifar10(sys.argv[2], validation_size=30)
loaders = cu.get_dataloader(data, 32, return_numpy=True)
seen = 0
for loader in loaders.values():
    for _ in range(2):
        for x, y in loader:
            assert type(x).__module__ == "numpy" and x.dtype.name == "float32", type(x)
            assert type(y).__module__ == "numpy" and y.dtype.name == "int64", type(y)
            seen += len(y)
assert seen == 2 * (256 + 30 + 60), seen
assert BlockTorch.attempts == [] and "torch" not in sys.modules, BlockTorch.attempts
try:
    cu.get_dataloader(data, 32)
except ImportError as e:
    print("torch loaders:", type(e).__name__)
else:
    raise SystemExit("torch loaders were built without torch")
try:
    from support.device_loader import get_device_loaders

    get_device_loaders(data, 32, "cpu", seed=0)
except ImportError as e:
    print("device loaders:", type(e).__name__)
else:
    raise SystemExit("device loaders were built without torch")
assert BlockTorch.attempts, "ImportError without trying torch"
print("NUMPY PATH OK")
"""


def test_numpy_path_works_without_torch(fake_cifar_dir):
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH_SCRIPT, str(REPO_ROOT), fake_cifar_dir],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch loaders: ModuleNotFoundError" in proc.stdout
    assert "device loaders: ModuleNotFoundError" in proc.stdout
    assert "NUMPY PATH OK" in proc.stdout


# ---------------------------------------------------------------- where the data is


def test_default_data_dir_reads_cifar10_data_dir(monkeypatch):
    monkeypatch.delenv("CIFAR10_DATA_DIR", raising=False)
    assert cu.default_data_dir() == "data/"
    monkeypatch.setenv("CIFAR10_DATA_DIR", "")  # set but empty counts as unset
    assert cu.default_data_dir() == "data/"
    monkeypatch.setenv("CIFAR10_DATA_DIR", "/somewhere/else")
    assert cu.default_data_dir() == "/somewhere/else"


def test_get_cifar10_without_data_dir_uses_the_default(fake_cifar, monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR10_DATA_DIR", str(fake_cifar.data_dir))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where data/ would be looked for otherwise: there is none
    assert_loaded(cu.get_cifar10(validation_size=VAL), fake_cifar)
    assert_loaded(cu.get_cifar10(None, validation_size=VAL), fake_cifar)
    monkeypatch.delenv("CIFAR10_DATA_DIR")
    (elsewhere / "data").symlink_to(fake_cifar.data_dir)
    assert_loaded(cu.get_cifar10(validation_size=VAL), fake_cifar)


# ---------------------------------------------------------------- the real data


@needs_real_data
def test_real_data():
    assert os.path.isdir(os.path.join(REAL_DATA_DIR, BATCHES)), f"no {BATCHES}/ in CIFAR10_DATA_DIR"
    data = cu.get_cifar10(REAL_DATA_DIR)
    assert [len(data[k]) for k in ("train", "validation", "test")] == [45_000, 5_000, 10_000]
    for name, split in data.items():
        counts = np.bincount(split.labels, minlength=10)
        assert len(counts) == 10 and counts.min() > 0, (name, counts)
    assert np.array_equal(np.bincount(data["test"].labels), [1000] * 10)
    assert np.array_equal(
        np.bincount(np.concatenate([data["train"].labels, data["validation"].labels])), [5000] * 10
    )
    # per-channel statistics of the normalized training split, accumulated batch by batch
    total, total_sq, n = np.zeros(3), np.zeros(3), 0
    for x, _ in cu.DataLoader(data["train"], 5000, return_numpy=True):
        x = x.astype(np.float64)
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x**2).sum(axis=(0, 2, 3))
        n += x.shape[0] * 32 * 32
    mean = total / n
    std = np.sqrt(total_sq / n - mean**2)
    np.testing.assert_allclose(mean, 0.0, atol=0.05)
    np.testing.assert_allclose(std, 1.0, atol=0.05)


# ---------------------------------------------------------------- the shuffling seed


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31, 2**32 - 1])
def test_the_numpy_trainers_32_bit_shuffling_seed_is_the_same_sequence_child(seed):
    # the word the NumPy trainer drew before shuffle_seed served both trainers: its numbers stay
    assert cu.shuffle_seed(seed, bits=32) == int(
        np.random.SeedSequence(seed).spawn(2)[1].generate_state(1)[0]
    )
    bits64 = np.random.SeedSequence(seed).spawn(2)[1].generate_state(1, dtype=np.uint64)[0]
    assert cu.shuffle_seed(seed) == int(bits64)


@pytest.mark.parametrize("bits", [16, 128, "64", None])
def test_shuffle_seed_refuses_other_word_sizes(bits):
    with pytest.raises(ValueError, match="bits must be 32 or 64"):
        cu.shuffle_seed(42, bits=bits)

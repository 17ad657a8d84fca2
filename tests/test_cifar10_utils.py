"""cifar10_utils: splits, loaders, normalization, corrupt files, and fetching the archive.

Everything runs on small made-up batches (tests/conftest.py) and a local HTTP server;
only test_real_data reads the real CIFAR-10 files, when CIFAR10_DATA_DIR names them.
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
import subprocess
import sys
import tarfile
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import LABEL_NAMES, REPO_ROOT, dump_py2_pickle, write_batch, write_fake_cifar, write_meta

import cifar10_utils as cu
from support.device_loader import get_device_loaders

# The constants of SPEC.md, written out here rather than taken from the module under test.
MEAN = np.array([0.491, 0.482, 0.447])
STD = np.array([0.247, 0.243, 0.262])
BATCHES = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
N_PER_BATCH = 60  # the conftest default: 300 training and 60 test images
N_TRAIN, N_TEST = 5 * N_PER_BATCH, N_PER_BATCH
VAL = 30


@pytest.fixture(autouse=True)
def _no_archive_env(monkeypatch):
    """No test may fall back to the official URL, whatever the developer's environment holds."""
    monkeypatch.delenv("CIFAR10_URL", raising=False)
    monkeypatch.delenv("CIFAR10_MD5", raising=False)


def reference_normalize(pixels):
    """(N, 3072) uint8 in channel-major order -> (N, 3, 32, 32) float64, computed the plain way."""
    images = pixels.reshape(len(pixels), 3, 32, 32).astype(np.float64) / 255.0
    return (images - MEAN[:, None, None]) / STD[:, None, None]


def to_pixels(x):
    """Undo the normalization of a batch: (B, 3, 32, 32) -> (B, 3072) uint8."""
    x = np.asarray(x, dtype=np.float64)
    u = (x * STD[:, None, None] + MEAN[:, None, None]) * 255.0
    assert np.abs(u - np.rint(u)).max() < 1e-3, "not a normalized uint8 image"
    return np.rint(u).astype(np.uint8).reshape(len(x), -1)


def source_indices(fake, pixels):
    """Index in the training files (data_batch_1..5 concatenated) of each row of ``pixels``."""
    index = {row.tobytes(): i for i, row in enumerate(fake.train_images)}
    assert len(index) == len(fake.train_images), "fake images are not unique"
    return np.array([index[row.tobytes()] for row in pixels], dtype=np.int64)


def epoch(loader):
    """All batches of one pass, as a list of (x, y) NumPy arrays."""
    return [(np.asarray(x), np.asarray(y)) for x, y in loader]


def md5_of(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


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


# ---------------------------------------------------------------- loaders on a torch device


def split_rows(split, x):
    """Row in ``split.images`` of each image of a normalized batch (the fake images are unique)."""
    index = {row.tobytes(): i for i, row in enumerate(split.images)}
    return np.array([index[row.tobytes()] for row in to_pixels(np.asarray(x))], dtype=np.int64)


def device_epochs(loader, n_epochs):
    """n_epochs passes over a device loader: a list of per-epoch lists of (x, y) CPU tensors."""
    return [[(x.cpu(), y.cpu()) for x, y in loader] for _ in range(n_epochs)]


def test_device_loaders_shapes_dtypes_devices_and_lengths(fake_cifar_dir):
    torch = pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    n = {"train": N_TRAIN - VAL, "validation": VAL, "test": N_TEST}
    loaders = get_device_loaders(data, 32, "cpu", seed=0, eval_batch_size=7)
    assert set(loaders) == {"train", "validation", "test"}
    for name, loader in loaders.items():
        assert loader.dataset is data[name] and len(loader.dataset) == n[name]
        sizes = []
        for x, y in loader:
            assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
            assert x.dtype == torch.float32 and tuple(x.shape) == (len(y), 3, 32, 32)
            assert y.dtype == torch.int64 and y.ndim == 1
            assert x.device.type == "cpu" and y.device.type == "cpu"
            sizes.append(len(y))
        assert len(sizes) == len(loader)
        if name == "train":  # batch_size, last partial batch dropped
            assert sizes == [32] * (n[name] // 32)
        else:  # eval_batch_size, everything kept
            assert len(loader) == -(-n[name] // 7)
            assert sum(sizes) == n[name] and all(s == 7 for s in sizes[:-1])
    # eval_batch_size defaults to batch_size
    default = get_device_loaders(data, 32, "cpu", seed=0)
    assert [len(y) for _, y in default["test"]] == [32, N_TEST - 32]


def test_device_loader_holds_its_own_copy_and_never_reads_the_host_arrays(fake_cifar_dir):
    torch = pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    expected = {name: (split.images.copy(), split.labels.copy()) for name, split in data.items()}
    loaders = get_device_loaders(data, 32, "cpu", seed=0)
    for name, loader in loaders.items():
        assert loader.images.dtype == torch.uint8 and loader.labels.dtype == torch.int64
        # what the loader needs is on the device: the host arrays can go, batches still come
        data[name].images = data[name].labels = None
        images, labels = expected[name]
        for _ in range(2):
            for x, y in loader:
                rows = split_rows(cu.CIFAR10Split(images, labels, name), x)
                assert np.array_equal(y.numpy(), labels[rows])
        # normalizing never wrote into the stored pixels
        assert np.array_equal(loader.images.numpy(), images)


def test_device_train_batches_same_seed_same_batches(fake_cifar_dir):
    torch = pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)

    def run(seed):
        return device_epochs(get_device_loaders(data, 32, "cpu", seed=seed)["train"], 3)

    a, b = run(5), run(np.int64(5))
    for epoch_a, epoch_b in zip(a, b, strict=True):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    labels = {seed: torch.cat([y for e in run(seed) for _, y in e]) for seed in (5, 6, -5)}
    assert not torch.equal(labels[5], labels[6])
    assert not torch.equal(labels[5], labels[-5])


def test_device_train_loader_new_permutation_each_epoch_covering_every_image_once(fake_cifar_dir):
    pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    n = N_TRAIN - VAL  # 270 = 10 x 27: nothing dropped, so every epoch is a whole permutation
    orders = []
    for batches in device_epochs(get_device_loaders(data, 27, "cpu", seed=1)["train"], 3):
        order = np.concatenate([split_rows(data["train"], x) for x, _ in batches])
        assert np.array_equal(np.sort(order), np.arange(n))
        assert np.array_equal(np.concatenate([y.numpy() for _, y in batches]), data["train"].labels[order])
        orders.append(order)
    assert not np.array_equal(orders[0], np.arange(n)), "not shuffled"
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    # with a batch size that does not divide the split: no repeats, the last partial batch dropped
    for batches in device_epochs(get_device_loaders(data, 32, "cpu", seed=1)["train"], 2):
        order = np.concatenate([split_rows(data["train"], x) for x, _ in batches])
        assert len(order) == 8 * 32 and len(np.unique(order)) == len(order)


def test_device_batches_equal_the_host_normalization_bit_for_bit(fake_cifar_dir):
    pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    for name, loader in get_device_loaders(data, 32, "cpu", seed=3, eval_batch_size=16).items():
        for x, y in loader:
            rows = split_rows(data[name], x)
            assert np.array_equal(x.numpy(), cu.normalize(data[name].images[rows]))  # exactly, not approx
            assert np.array_equal(y.numpy(), data[name].labels[rows])


def test_device_eval_loaders_in_order_and_complete(fake_cifar_dir):
    pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    loaders = get_device_loaders(data, 32, "cpu", seed=0, eval_batch_size=16)
    for name in ("validation", "test"):
        for batches in device_epochs(loaders[name], 2):  # the same order every pass
            x = np.concatenate([x.numpy() for x, _ in batches])
            y = np.concatenate([y.numpy() for _, y in batches])
            assert np.array_equal(x, cu.normalize(data[name].images))
            assert np.array_equal(y, data[name].labels)


def test_device_shuffling_is_independent_of_torch_manual_seed(fake_cifar_dir):
    """The trainer seeds its weights with torch.manual_seed(seed): shuffling must not replay that stream."""
    torch = pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    assert cu.shuffle_seed(42) != 42 and cu.shuffle_seed(42) == cu.shuffle_seed(np.int64(42))
    assert len({cu.shuffle_seed(s) for s in (-1, 0, 1, 2**64 - 1)}) == 3  # -1 is 2**64 - 1 modulo 2**64
    loader = get_device_loaders(data, N_TRAIN - VAL, "cpu", seed=42)["train"]
    ((_, y),) = list(loader)
    same_stream = torch.randperm(N_TRAIN - VAL, generator=torch.Generator().manual_seed(42))
    assert not torch.equal(y, torch.as_tensor(data["train"].labels)[same_stream])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": True},
        {"batch_size": 2.5},
        {"eval_batch_size": 0},
        {"eval_batch_size": "16"},
        {"seed": None},
        {"seed": 1.5},
        {"seed": "1"},
    ],
    ids=lambda kwargs: repr(kwargs),
)
def test_device_loaders_refuse_bad_settings(fake_cifar_dir, kwargs):
    pytest.importorskip("torch")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    settings = {"batch_size": 32, "device": "cpu", "seed": 0, **kwargs}
    with pytest.raises(ValueError, match="seed" if "seed" in kwargs else "batch_size"):
        get_device_loaders(data, **settings)


def test_device_loaders_on_cuda(fake_cifar_dir):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    data = cu.get_cifar10(fake_cifar_dir, validation_size=VAL)
    a = get_device_loaders(data, 32, "cuda", seed=7, eval_batch_size=16)
    b = get_device_loaders(data, 32, "cuda", seed=7, eval_batch_size=16)
    assert a["train"].images.device.type == "cuda" and a["train"].generator.device.type == "cuda"
    for epoch_a, epoch_b in zip(device_epochs(a["train"], 2), device_epochs(b["train"], 2), strict=True):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for name, loader in a.items():
        for x, y in loader:
            assert x.device.type == "cuda" and y.device.type == "cuda"
            assert x.dtype == torch.float32 and y.dtype == torch.int64
            rows = split_rows(data[name], x.cpu())
            assert np.array_equal(x.cpu().numpy(), cu.normalize(data[name].images[rows]))
            assert np.array_equal(y.cpu().numpy(), data[name].labels[rows])
        if name != "train":
            assert np.array_equal(np.concatenate([y.cpu().numpy() for _, y in loader]), data[name].labels)


# ---------------------------------------------------------------- the skeleton's names


CLASS_NAMES = [c.decode() for c in LABEL_NAMES]


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


def assert_loaded(data, fake):
    assert [len(data[k]) for k in ("train", "validation", "test")] == [N_TRAIN - VAL, VAL, N_TEST]
    assert np.array_equal(data["test"].images, fake.test_images)
    assert np.array_equal(data["test"].labels, fake.test_labels)


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


# ---------------------------------------------------------------- the real data

REAL_DATA_DIR = os.environ.get("CIFAR10_DATA_DIR")


@pytest.mark.skipif(
    not REAL_DATA_DIR, reason="CIFAR10_DATA_DIR is not set (a directory holding cifar-10-batches-py/)"
)
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


@pytest.mark.skipif(
    not REAL_DATA_DIR, reason="CIFAR10_DATA_DIR is not set (a directory holding cifar-10-batches-py/)"
)
def test_real_data_skeleton_names_and_device_loaders():
    pytest.importorskip("torch")
    data = cu.read_data_sets(os.path.join(REAL_DATA_DIR, BATCHES))  # the folder itself works too
    assert data["train"].dataset.classes == CLASS_NAMES  # the official names, in label order
    loaders = get_device_loaders(data, 128, "cpu", seed=42, eval_batch_size=1000)
    assert [len(loaders[k]) for k in ("train", "validation", "test")] == [45_000 // 128, 5, 10]
    start = 0
    for x, y in loaders["test"]:
        stop = start + len(y)
        assert np.array_equal(x.numpy(), cu.normalize(data["test"].images[start:stop]))
        assert np.array_equal(y.numpy(), data["test"].labels[start:stop])
        start = stop
    assert start == 10_000
    x, y = next(iter(loaders["train"]))
    assert tuple(x.shape) == (128, 3, 32, 32) and len(np.unique(y.numpy())) > 5  # shuffled


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31, 2**32 - 1])
def test_the_numpy_trainers_32_bit_shuffling_seed_is_the_same_sequence_child(seed):
    # the word the NumPy trainer drew before shuffle_seed served both trainers: its numbers stay
    assert cu.shuffle_seed(seed, bits=32) == int(
        np.random.SeedSequence(seed).spawn(2)[1].generate_state(1)[0]
    )
    bits64 = np.random.SeedSequence(seed).spawn(2)[1].generate_state(1, dtype=np.uint64)[0]
    assert cu.shuffle_seed(seed) == int(bits64)

"""support/device_loader: batches cut and normalized on a torch device (the CPU here, CUDA when there is
one), bit for bit the host normalization, shuffled by a generator of their own."""

import os

import numpy as np
import pytest
from cifar10_helpers import (
    BATCHES,
    CLASS_NAMES,
    N_TEST,
    N_TRAIN,
    REAL_DATA_DIR,
    VAL,
    needs_real_data,
    no_archive_env,  # noqa: F401 (autouse: no test may fetch the official archive)
    split_rows,
)

import cifar10_utils as cu
from support.device_loader import get_device_loaders


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


@needs_real_data
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

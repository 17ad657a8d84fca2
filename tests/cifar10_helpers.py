"""What the CIFAR-10 tests share: the constants written out, the fake data's sizes, and helpers that
read normalized batches back into pixel rows."""

import os

import numpy as np
import pytest
from conftest import LABEL_NAMES

# The constants the interface promises, written out here rather than taken from the module under test.
MEAN = np.array([0.491, 0.482, 0.447])
STD = np.array([0.247, 0.243, 0.262])
BATCHES = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
N_PER_BATCH = 60  # the conftest default: 300 training and 60 test images
N_TRAIN, N_TEST = 5 * N_PER_BATCH, N_PER_BATCH
VAL = 30
CLASS_NAMES = [c.decode() for c in LABEL_NAMES]

REAL_DATA_DIR = os.environ.get("CIFAR10_DATA_DIR")
needs_real_data = pytest.mark.skipif(
    not REAL_DATA_DIR, reason="CIFAR10_DATA_DIR is not set (a directory holding cifar-10-batches-py/)"
)


@pytest.fixture(autouse=True)
def no_archive_env(monkeypatch):
    """No test may fall back to the official URL, whatever the developer's environment holds.

    Autouse in every test file that imports it."""
    monkeypatch.delenv("CIFAR10_URL", raising=False)
    monkeypatch.delenv("CIFAR10_MD5", raising=False)


def to_pixels(x):
    """Undo the normalization of a batch: (B, 3, 32, 32) -> (B, 3072) uint8."""
    x = np.asarray(x, dtype=np.float64)
    u = (x * STD[:, None, None] + MEAN[:, None, None]) * 255.0
    assert np.abs(u - np.rint(u)).max() < 1e-3, "not a normalized uint8 image"
    return np.rint(u).astype(np.uint8).reshape(len(x), -1)


def split_rows(split, x):
    """Row in ``split.images`` of each image of a normalized batch (the fake images are unique)."""
    index = {row.tobytes(): i for i, row in enumerate(split.images)}
    return np.array([index[row.tobytes()] for row in to_pixels(np.asarray(x))], dtype=np.int64)


def assert_loaded(data, fake):
    assert [len(data[k]) for k in ("train", "validation", "test")] == [N_TRAIN - VAL, VAL, N_TEST]
    assert np.array_equal(data["test"].images, fake.test_images)
    assert np.array_equal(data["test"].labels, fake.test_labels)

"""CIFAR-10 batches made on a torch device: each split's uint8 pixels are copied there once, and
every batch is cut and normalised there, bit for bit as ``cifar10_utils.normalize`` does it.

    loaders = get_device_loaders(get_cifar10(), 128, device="cuda", seed=42)
"""

from cifar10_utils import _SCALE, _SHIFT, _is_integer, _normalize_tensor, shuffle_seed


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

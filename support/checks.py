"""Checks made before any data is read or any weight allocated: settings, memory, output paths."""

import math
import numbers
import os

ACTIVATIONS = ("relu", "elu", "leaky_relu")
# --optimizer: the update rule's class name, in optim.py and torch.optim alike, and whether it
# takes --momentum (plain "sgd" is 2021's update, p <- p - lr g)
OPTIMIZERS = {
    "sgd": ("SGD", False),
    "momentum": ("SGD", True),
    "rmsprop": ("RMSprop", False),
    "adam": ("Adam", False),
}


def split_options(optimizer="sgd", momentum=0.9, weight_decay=0.0, **model_options):
    """A trainer's options beyond 2021 -> (the MLP's keywords, the update rule's class name in
    optim.py and torch.optim alike, its keywords)."""
    class_name, takes_momentum = OPTIMIZERS[optimizer]
    rule_options = {"weight_decay": weight_decay} if weight_decay else {}
    if takes_momentum:
        rule_options["momentum"] = momentum
    return model_options, class_name, rule_options


def check_hyperparameters(
    hidden_dims, lr, batch_size, epochs, n_inputs=3072, n_classes=10, seed=0, **options
):
    """ValueError for settings no training run can use (checked before any data is read or
    any weight is allocated), including networks too large for the memory available.

    options: the trainers' keywords beyond 2021 (activation, dropout, optimizer, momentum,
    weight_decay, use_batch_norm, use_layer_norm), checked where given."""
    # the range np.random.seed takes, so both trainers take the same seeds; bool is no seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    _check_options(**options)
    if not 0 < lr < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(h <= 0 for h in hidden_dims):
        raise ValueError(f"hidden sizes must be > 0, got {list(hidden_dims)}")
    needed, available = training_bytes(hidden_dims, batch_size, n_inputs, n_classes), available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"hidden_dims {list(hidden_dims)} need at least {_gigabytes(needed)} of memory for weights, "
            f"gradients and activations, but {_gigabytes(available)} is available; use smaller layers"
        )


# The largest batch any run can draw (CIFAR-10's 50,000 training images): a larger batch_size
# is refused by check_batch_size once the data is read, with a clearer message than this one.
MAX_BATCH = 50_000


def training_bytes(hidden_dims, batch_size, n_inputs=3072, n_classes=10, bytes_per_value=4):
    """A lower bound on the memory a training run needs: the weights and their gradients
    (one value each per parameter) and one activation per unit and sample of a batch, at
    float32's 4 bytes a value. The real peak is higher (a copy of the best model, the
    caches of the backward pass); a lower bound refuses only what surely cannot run."""
    sizes = [n_inputs, *hidden_dims, n_classes]
    n_params = sum((m + 1) * n for m, n in zip(sizes[:-1], sizes[1:], strict=True))
    n_activations = min(batch_size, MAX_BATCH) * sum(sizes)
    return bytes_per_value * (2 * n_params + n_activations)


def available_memory():
    """Bytes this process could still allocate (None where the system does not say): Linux's
    MemAvailable, else free physical pages, lowered to what a cgroup (container) limit leaves."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            pass
    try:  # cgroup v2: memory.max is "max" when unlimited
        with open("/sys/fs/cgroup/memory.max") as f_max, open("/sys/fs/cgroup/memory.current") as f_cur:
            limit, current = f_max.read().strip(), f_cur.read().strip()
        if limit != "max":
            left = int(limit) - int(current)
            available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    return available


def _gigabytes(n_bytes):
    return f"{n_bytes / 1e9:,.1f} GB"


def check_output_dir(path, filenames=()):
    """ValueError, before any training, when results could not be written to `path`: a file in
    place of the directory, no permission to write there, or a directory standing where one
    of `filenames` (e.g. run_filenames("model.npz")) goes."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"output directory {path} is an existing file")
    for name in filenames:
        target = os.path.join(path, name)
        if os.path.isdir(target):
            raise ValueError(f"cannot write {target}: a directory stands there; move it away")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to output directory {path} ({existing} is not a writable directory)")


def check_batch_size(batch_size, n_train):
    if batch_size > n_train:
        raise ValueError(f"batch_size {batch_size} exceeds the {n_train} training images")


def _check_options(
    activation="relu",
    dropout=0.0,
    optimizer="sgd",
    momentum=0.0,
    weight_decay=0.0,
    use_batch_norm=False,
    use_layer_norm=False,
    **_,
):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if not 0 <= momentum < math.inf or not 0 <= weight_decay < math.inf:
        raise ValueError(f"momentum and weight_decay must be finite and >= 0, got {momentum}, {weight_decay}")
    if use_batch_norm and use_layer_norm:
        raise ValueError("batch norm and layer norm exclude each other: choose one")

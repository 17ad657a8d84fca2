"""What the NumPy and PyTorch trainers share: command line, checks, atomic output, plots."""

import argparse
import contextlib
import gc
import json
import math
import os
import sys
import tempfile
import textwrap

from cifar10_utils import CIFAR10Error, default_data_dir

# What save_run writes beside the model, and the exit code of a run whose loss stopped being finite.
RUN_FILES = ("log.json", "loss_curve.png", "first_layer_weights.png")
EXIT_DIVERGED = 3


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage block) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(description, run_name):
    """The flags both trainers share; parse with parse_run_args. run_name ('mlp_numpy' or
    'mlp_pytorch') names the default output directory, results/<run_name>[_batch_norm]."""
    parser = OneLineParser(description=description)
    parser.set_defaults(run_name=run_name)
    parser.add_argument(
        "--hidden_dims",
        default=[128],
        type=int,
        nargs="*",
        help='hidden layer sizes, e.g. "256 128"; none for a linear model',
    )
    parser.add_argument("--lr", default=0.1, type=float, help="learning rate")
    parser.add_argument("--batch_size", default=128, type=int, help="minibatch size")
    parser.add_argument("--epochs", default=10, type=int, help="max number of epochs")
    parser.add_argument(
        "--seed", default=42, type=int, help="seed for weights, shuffling and everything else"
    )
    parser.add_argument(
        "--use_batch_norm",
        action="store_true",
        help="batch normalization between each hidden Linear and its ReLU",
    )
    parser.add_argument(
        "--data_dir",
        default=default_data_dir(),
        type=str,
        help="directory holding (or to receive) cifar-10-batches-py/ "
        "(default: $CIFAR10_DATA_DIR if set, else data/)",
    )
    parser.add_argument(
        "--output_dir",
        default=None,
        type=str,
        help="where log.json, loss_curve.png, first_layer_weights.png and the best model go "
        f"(default: results/{run_name}, or results/{run_name}_batch_norm with --use_batch_norm)",
    )
    parser.add_argument(
        "--no_progress", action="store_true", help="hide the progress bars (the line per epoch stays)"
    )
    return parser


def parse_run_args(parser, model_name):
    """Parse the command line, fill in the default output directory, and check everything that
    can be checked before any data is read: ValueError (exit code 2 in run_cli) otherwise."""
    args = parser.parse_args()
    if args.output_dir is None:
        suffix = "_batch_norm" if args.use_batch_norm else ""
        args.output_dir = os.path.join("results", args.run_name + suffix)
    del args.run_name
    check_hyperparameters(args.hidden_dims, args.lr, args.batch_size, args.epochs, seed=args.seed)
    check_output_dir(args.output_dir, run_filenames(model_name))
    return args


def check_hyperparameters(hidden_dims, lr, batch_size, epochs, n_inputs=3072, n_classes=10, seed=0):
    """ValueError for settings no training run can use (checked before any data is read or
    any weight is allocated), including networks too large for the memory available."""
    if not 0 <= seed < 2**32:  # the range np.random.seed takes, so both trainers take the same seeds
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed}")
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


def run_filenames(model_name):
    """Every file save_run writes for a run whose model file is `model_name`."""
    return (*RUN_FILES, model_name)


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


def new_logging_info():
    """Per-epoch lists (train_loss, train_accuracy, val_accuracy, epoch_time), every batch's loss,
    and whether the run diverged (see mark_diverged)."""
    return {
        "train_loss": [],
        "train_accuracy": [],
        "val_accuracy": [],
        "batch_loss": [],
        "epoch_time": [],
        "diverged": False,
    }


def log_epoch(logging_info, batch_losses, n_correct, n_seen, val_accuracy, seconds):
    logging_info["batch_loss"] += batch_losses
    logging_info["train_loss"].append(sum(batch_losses) / len(batch_losses))
    logging_info["train_accuracy"].append(n_correct / n_seen)
    logging_info["val_accuracy"].append(val_accuracy)
    logging_info["epoch_time"].append(seconds)


def epoch_line(logging_info, epochs):
    """The one line printed after each epoch (with or without progress bars)."""
    epoch = len(logging_info["val_accuracy"])
    return (
        f"epoch {epoch:2d}/{epochs}: loss {logging_info['train_loss'][-1]:.4f}, "
        f"train acc {logging_info['train_accuracy'][-1]:.4f}, val acc {logging_info['val_accuracy'][-1]:.4f}"
    )


# ---------------------------------------------------------------- divergence


class Diverged(Exception):
    """Raised by a trainer's main() after saving a diverged run: run_cli prints its message as
    one line and exits with EXIT_DIVERGED (3)."""


def mark_diverged(logging_info, epoch, step, batch_losses=()):
    """Record that the loss of batch `step` of epoch `epoch` (both 1-based) was not finite.

    batch_losses: the unfinished epoch's losses up to that batch, kept in batch_loss (the
    per-epoch lists hold finished epochs only)."""
    logging_info["batch_loss"] += list(batch_losses)
    logging_info["diverged"] = True
    logging_info["diverged_at"] = {"epoch": epoch, "step": step}


def divergence_message(logging_info):
    at = logging_info["diverged_at"]
    return f"diverged at epoch {at['epoch']}, step {at['step']} (loss is not finite): try a smaller --lr"


def raise_if_diverged(logging_info):
    """For a CLI's main(), after saving: Diverged(divergence_message) when the run diverged."""
    if logging_info.get("diverged"):
        raise Diverged(divergence_message(logging_info))


def result_line(test_accuracy, logging_info):
    """What a CLI prints before saving: the best model's test accuracy, or why there is none."""
    if test_accuracy is None:
        return "no test accuracy (no epoch finished)"
    return f"test accuracy {test_accuracy:.4f} (best epoch {logging_info['best_epoch']})"


# ---------------------------------------------------------------- atomic output


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it into place.

    A crash or Ctrl-C before the rename leaves the old file (or none), never half of one.
    """
    atomic_write_all({path: write})


class SaveError(ValueError):
    """An OSError (disk full, no permission, ...) while writing results, as one line naming the
    file and the reason. A ValueError, so run_cli ends with exit code 2."""


def atomic_write_all(writers):
    """atomic_write for a set of files {path: write}: every file is written to its
    temporary name before the first rename, so an interrupt or a failing writer never
    leaves a new file beside an old one from an earlier run (the renames take
    microseconds; the writing and plotting before them, seconds). A rename that the
    system refuses midway is the one failure that can still split the set.

    Raises SaveError for any OSError, after removing every temporary file."""
    for path in writers:
        if os.path.isdir(path):
            raise SaveError(f"cannot write {path}: a directory stands there")
    temporaries = {}  # path -> its temporary file, from the moment the file exists
    path = None
    try:
        for path, write in writers.items():
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            prefix = f".{os.path.basename(path)}."
            fd, temporaries[path] = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results should read like any file
                write(f)
        for path in list(temporaries):
            os.replace(temporaries[path], path)
            del temporaries[path]
    except OSError as e:
        raise SaveError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        for tmp in temporaries.values():  # left only when something failed
            with contextlib.suppress(OSError):
                os.remove(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj):
    atomic_write(path, json_writer(obj))


def json_writer(obj):
    """write(file) of indented, strict JSON: a diverged run's NaN or inf losses become null."""
    data = (json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n").encode()
    return lambda f: f.write(data)


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def loss_curve_figure(logging_info, title):
    """Per-batch loss with its per-epoch mean, and train/validation accuracy per epoch.

    Every curve has markers, so a run of one epoch (one point per curve) still shows its
    values, and the epoch axis has integer ticks. A diverged run's unfinished epoch shows
    its batches up to the first non-finite loss (drawn as a gap), marked by a dashed line.
    """
    import numpy as np

    batch_loss = np.array(logging_info["batch_loss"], dtype=float)
    batch_loss[~np.isfinite(batch_loss)] = np.nan  # nan is a gap; inf would break the axis limits
    epochs = len(logging_info["train_loss"])
    per_epoch = logging_info.get("batches_per_epoch") or len(batch_loss) / max(epochs, 1)
    epoch_axis = np.arange(1, epochs + 1)
    fig = new_figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    few = len(batch_loss) <= 100  # a line through few points needs markers to be seen
    ax_loss.plot(
        np.arange(1, len(batch_loss) + 1) / per_epoch,
        batch_loss,
        marker="." if few else None,
        lw=0.5,
        alpha=0.5,
        label="per batch",
    )
    ax_loss.plot(epoch_axis, logging_info["train_loss"], "o-", label="epoch mean")
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="Training loss")
    ax_acc.plot(epoch_axis, logging_info["train_accuracy"], "o-", label="training (mean over batches)")
    ax_acc.plot(epoch_axis, logging_info["val_accuracy"], "s-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    if logging_info.get("diverged"):
        at = logging_info["diverged_at"]
        x = at["epoch"] - 1 + at["step"] / per_epoch
        for ax in (ax_loss, ax_acc):
            ax.axvline(x, color="tab:red", ls="--", lw=1, label="loss not finite")
    last = max(epochs, math.ceil(len(batch_loss) / per_epoch), 1)
    for ax in (ax_loss, ax_acc):
        ax.set_xlim(0, last + 0.2)
        _integer_ticks(ax.xaxis, last)
        ax.legend()
    fig.suptitle(title)
    # fixed margins: tight_layout would draw the figure twice, a tenth of a second per run
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.85, wspace=0.25)
    return fig


def _integer_ticks(axis, last):
    """Ticks at whole epochs 0..last: every one for short runs, a few round ones for long runs."""
    from matplotlib.ticker import MaxNLocator, MultipleLocator

    axis.set_major_locator(MultipleLocator(1) if last <= 12 else MaxNLocator(integer=True))


def weights_figure(weight, title=None):
    """The first layer's units as pictures: row i of `weight` (n_units, 3072), the weights unit i
    gives each pixel, drawn as a 32x32 colour image, in a grid.

    The rows hold the pixels channel-major, like the data (3, 32, 32): reshaped and moved to
    (32, 32, 3) for display. Each unit is rescaled to its own range (its smallest weight to 0,
    its largest to 1, one scale for all three channels), so a unit with small weights is as
    visible as one with large ones.
    """
    import numpy as np

    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2 or weight.shape[1] != 3 * 32 * 32:
        raise ValueError(f"first-layer weight must have shape (n_units, 3072), got {weight.shape}")
    n_units = len(weight)
    images = weight.reshape(n_units, 3, 32, 32).transpose(0, 2, 3, 1)  # (n, 32, 32, 3) for imshow
    finite = np.isfinite(images)
    low = np.where(finite, images, np.inf).min(axis=(1, 2, 3), keepdims=True)
    high = np.where(finite, images, -np.inf).max(axis=(1, 2, 3), keepdims=True)
    span = high - low
    # a constant unit, or one without a finite weight, is drawn mid-grey
    scaled = np.where(span > 0, (images - low) / np.where(span > 0, span, 1.0), 0.5)
    scaled = np.where(finite, scaled, 0.5).clip(0.0, 1.0)

    n_cols = math.ceil(math.sqrt(n_units))
    n_rows = math.ceil(n_units / n_cols)
    gap = 2  # white pixels between units
    cell = 32 + gap
    mosaic = np.ones((n_rows * cell + gap, n_cols * cell + gap, 3))
    for i in range(n_units):  # one copy per unit (at most a few hundred), not per sample
        row, col = divmod(i, n_cols)
        mosaic[gap + row * cell : gap + row * cell + 32, gap + col * cell : gap + col * cell + 32] = scaled[i]

    width = min(max(0.5 * n_cols, 6.0), 14.0)  # inches: units stay visible, large grids printable
    title = title or f"First layer: {n_units} units, each rescaled to its own range"
    lines = textwrap.wrap(title, width=int(width * 13))  # about 13 characters of 8-point text an inch
    head = 0.2 + 0.16 * len(lines)  # inches above the grid for the title
    grid_height = width * mosaic.shape[0] / mosaic.shape[1]
    fig = new_figure(figsize=(width, grid_height + head))
    ax = fig.add_axes((0.0, 0.0, 1.0, grid_height / (grid_height + head)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle("\n".join(lines), fontsize=8, y=1 - 0.1 / (grid_height + head), va="top")
    return fig


def png_writer(fig, dpi=100):
    """write(file) of the figure as PNG, drawn by Agg."""
    return lambda f: fig.savefig(f, format="png", dpi=dpi)


def new_figure(**kwargs):
    """A matplotlib Figure that is drawn with Agg when saved: headless, and no pyplot
    (whose import and global figure list this code does not need)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def run_title(args, test_accuracy, logging_info=None):
    batch_norm = " with batch norm" if args.get("use_batch_norm") else ""
    result = "no epoch finished" if test_accuracy is None else f"test accuracy {test_accuracy:.4f}"
    if logging_info and logging_info.get("diverged"):
        at = logging_info["diverged_at"]
        result += f", diverged at epoch {at['epoch']}, step {at['step']}"
    return (
        f"{args.get('framework', '')} MLP {args['hidden_dims']}{batch_norm}, lr {args['lr']:g}, "
        f"batch {args['batch_size']}, seed {args['seed']}: {result}"
    )


def save_run(output_dir, args, logging_info, test_accuracy, write_model, model_name, first_layer_weight=None):
    """Write log.json, loss_curve.png, the model (write_model(file)) and, given the first Linear
    layer's weight as a NumPy array (n_units, 3072), first_layer_weights.png, as one set
    (atomic_write_all). Returns the output directory.

    Raises SaveError (one line: the file and the reason) when the system refuses a write;
    no file of the set is then left half-written.
    """
    title = run_title(args, test_accuracy, logging_info)
    log = {
        "args": args,
        "test_accuracy": test_accuracy,
        "diverged": bool(logging_info.get("diverged", False)),
        "logging_info": logging_info,
    }
    writers = {
        os.path.join(output_dir, model_name): write_model,
        os.path.join(output_dir, "loss_curve.png"): png_writer(loss_curve_figure(logging_info, title)),
    }
    if first_layer_weight is not None:
        which = "the model when the run diverged" if test_accuracy is None else "the best model"
        heading = f"First layer of {which}, each unit rescaled to its own range. {title}"
        figure = weights_figure(first_layer_weight, heading)
        writers[os.path.join(output_dir, "first_layer_weights.png")] = png_writer(figure)
    writers[os.path.join(output_dir, "log.json")] = json_writer(log)
    atomic_write_all(writers)
    return output_dir


def run_cli(main, freeze_gc=True):
    """Run main(); bad input or an interrupt is one line on stderr and a non-zero exit.

    Exit codes: 0 done; 2 bad input, unusable data, a failed save (ValueError, including
    SaveError, and CIFAR10Error) or memory that ran out (MemoryError, CUDA's too); 3 the run
    diverged (main() raises Diverged after saving, see raise_if_diverged); 130 interrupted.

    freeze_gc: the script owns the process (see below); False where main() runs inside
    another program, such as the tests.
    """
    prog = os.path.basename(sys.argv[0])
    if freeze_gc:
        # Imports leave many objects that live as long as the process. Frozen, they are no
        # longer walked by the garbage collector: about 0.3 s less when torch.optim imports
        # torch._dynamo in a PyTorch run.
        gc.freeze()
    try:
        main()
    except (ValueError, CIFAR10Error) as e:
        _fail(prog, e, 2)
    except _out_of_memory_errors() as e:
        _fail(prog, out_of_memory_message(e), 2)
    except Diverged as e:
        _fail(prog, e, EXIT_DIVERGED)
    except KeyboardInterrupt:
        exit_interrupted()
    if freeze_gc:
        # Every file is written and closed. Python's last collection at exit would walk every
        # object again (0.7 to 1 s with torch); frozen ones are skipped, and the memory goes
        # back to the system with the process.
        gc.freeze()


def _out_of_memory_errors():
    """MemoryError, and torch's CUDA out-of-memory error once torch is imported (a RuntimeError,
    not a MemoryError). Looked up when an exception is being matched, so train_common itself
    never imports torch."""
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)  # None without torch
    return (MemoryError,) if oom is None else (MemoryError, oom)


def out_of_memory_message(error):
    """One line for an allocation that failed although check_hyperparameters let the sizes pass
    (its bound is a lower one, and a limit such as `ulimit -v` or the GPU's memory is not in
    it). NumPy's message is one sentence; torch's CUDA message goes on for several, of which
    the first two say what failed."""
    reason = ". ".join(" ".join(str(error).split()).split(". ")[:2])
    return f"out of memory ({reason or type(error).__name__}): use smaller --hidden_dims or --batch_size"


def exit_interrupted():
    """The one line and exit code 130 of every Ctrl-C (run_cli's, and the torch import's)."""
    _fail(os.path.basename(sys.argv[0]), "interrupted (no file is left half-written)", 130)


def _fail(prog, message, code):
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)

"""What the NumPy and PyTorch trainers share: command line, checks, atomic output, plots."""

import argparse
import contextlib
import gc
import json
import math
import os
import sys
import tempfile

from cifar10_utils import CIFAR10Error


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage block) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(description, default_output_dir):
    parser = OneLineParser(description=description)
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
        "--data_dir", default="data/", type=str, help="directory holding (or to receive) cifar-10-batches-py/"
    )
    parser.add_argument(
        "--output_dir",
        default=default_output_dir,
        type=str,
        help="where the log (JSON), loss curve (PNG) and best model go",
    )
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bars")
    return parser


def check_hyperparameters(hidden_dims, lr, batch_size, epochs):
    """ValueError for settings no training run can use (checked before any data is read)."""
    if not 0 < lr < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(h <= 0 for h in hidden_dims):
        raise ValueError(f"hidden sizes must be > 0, got {list(hidden_dims)}")


def check_output_dir(path):
    """ValueError, before any training, when results could not be written to `path`."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"output directory {path} is an existing file")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to output directory {path} ({existing} is not a writable directory)")


def check_batch_size(batch_size, n_train):
    if batch_size > n_train:
        raise ValueError(f"batch_size {batch_size} exceeds the {n_train} training images")


def new_logging_info():
    """Per-epoch lists (train_loss, train_accuracy, val_accuracy, epoch_time) and every batch's loss."""
    return {"train_loss": [], "train_accuracy": [], "val_accuracy": [], "batch_loss": [], "epoch_time": []}


def log_epoch(logging_info, batch_losses, n_correct, n_seen, val_accuracy, seconds):
    logging_info["batch_loss"] += batch_losses
    logging_info["train_loss"].append(sum(batch_losses) / len(batch_losses))
    logging_info["train_accuracy"].append(n_correct / n_seen)
    logging_info["val_accuracy"].append(val_accuracy)
    logging_info["epoch_time"].append(seconds)


# ---------------------------------------------------------------- atomic output


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it into place.

    A crash or Ctrl-C before the rename leaves the old file (or none), never half of one.
    """
    atomic_write_all({path: write})


def atomic_write_all(writers):
    """atomic_write for a set of files {path: write}: every file is written to its
    temporary name before the first rename, so an interrupt or a failing writer never
    leaves a new file beside an old one from an earlier run (the renames take
    microseconds; the writing and plotting before them, seconds). A rename that the
    system refuses midway is the one failure that can still split the set."""
    for path in writers:
        if os.path.isdir(path):
            raise ValueError(f"cannot write {path}: a directory stands there")
    temporaries = {}  # path -> its temporary file, from the moment the file exists
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
    """Per-batch loss with its per-epoch mean, and train/validation accuracy per epoch."""
    from matplotlib.ticker import MaxNLocator

    batch_loss, epochs = logging_info["batch_loss"], len(logging_info["train_loss"])
    epoch_axis = range(1, epochs + 1)
    fig = new_figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    per_epoch = len(batch_loss) / epochs
    ax_loss.plot(
        [(i + 1) / per_epoch for i in range(len(batch_loss))],
        batch_loss,
        lw=0.5,
        alpha=0.5,
        label="per batch",
    )
    ax_loss.plot(epoch_axis, logging_info["train_loss"], "o-", label="epoch mean")
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="Training loss")
    ax_loss.legend()
    ax_acc.plot(epoch_axis, logging_info["train_accuracy"], "o-", label="training (mean over batches)")
    ax_acc.plot(epoch_axis, logging_info["val_accuracy"], "s-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    # fixed margins: tight_layout would draw the figure twice, a tenth of a second per run
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.85, wspace=0.25)
    return fig


def png_writer(fig, dpi=100):
    """write(file) of the figure as PNG, drawn by Agg."""
    return lambda f: fig.savefig(f, format="png", dpi=dpi)


def new_figure(**kwargs):
    """A matplotlib Figure that is drawn with Agg when saved: headless, and no pyplot
    (whose import and global figure list this code does not need)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def run_title(args, test_accuracy):
    batch_norm = " with batch norm" if args.get("use_batch_norm") else ""
    return (
        f"{args.get('framework', '')} MLP {args['hidden_dims']}{batch_norm}, lr {args['lr']}, "
        f"batch {args['batch_size']}, seed {args['seed']}: test accuracy {test_accuracy:.4f}"
    )


def save_run(output_dir, args, logging_info, test_accuracy, write_model, model_name):
    """Write log.json, loss_curve.png and the model (write_model(file)) as one set; returns
    the output directory."""
    figure = loss_curve_figure(logging_info, run_title(args, test_accuracy))
    log = {"args": args, "test_accuracy": test_accuracy, "logging_info": logging_info}
    atomic_write_all(
        {
            os.path.join(output_dir, model_name): write_model,
            os.path.join(output_dir, "loss_curve.png"): png_writer(figure),
            os.path.join(output_dir, "log.json"): json_writer(log),
        }
    )
    return output_dir


def run_cli(main, freeze_gc=True):
    """Run main(); bad input or an interrupt is one line on stderr and a non-zero exit.

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
    except KeyboardInterrupt:
        exit_interrupted()
    if freeze_gc:
        # Every file is written and closed. Python's last collection at exit would walk every
        # object again (0.7 to 1 s with torch); frozen ones are skipped, and the memory goes
        # back to the system with the process.
        gc.freeze()


def exit_interrupted():
    """The one line and exit code 130 of every Ctrl-C (run_cli's, and the torch import's)."""
    _fail(os.path.basename(sys.argv[0]), "interrupted (no file is left half-written)", 130)


def _fail(prog, message, code):
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)

"""The trainers' command line: shared flags, one-line errors and exit codes.

Exit codes: 0 done; 2 bad input, unusable data, a failed save or memory that ran out; 3 the run
diverged (saved first); 130 interrupted.
"""

import argparse
import contextlib
import gc
import os
import sys

import numpy as np

from cifar10_utils import CIFAR10Error, default_data_dir
from support.checks import ACTIVATIONS, OPTIMIZERS, check_output_dir
from support.output import run_filenames
from support.runlog import divergence_message

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
        f"(default: results/{run_name}, results/{run_name}_batch_norm with --use_batch_norm, and so on)",
    )
    parser.add_argument(
        "--no_progress", action="store_true", help="hide the progress bars (the line per epoch stays)"
    )
    if run_name == "mlp_numpy":
        dtypes = ["float32", "float64"]
        parser.add_argument(
            "--dtype", default="float32", choices=dtypes, help="float64 is exact but 2x slower"
        )
    else:
        parser.add_argument(
            "--batch_norm",
            default="torch",
            choices=["torch", "manual"],
            help="with --use_batch_norm: torch's nn.BatchNorm1d, or the hand-written one in norm_torch.py",
        )
        parser.add_argument(
            "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA if any"
        )
    editions = parser.add_argument_group("beyond 2021 (the other editions and CS231n; defaults are 2021's)")
    editions.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="hidden activation")
    editions.add_argument("--alpha", default=1.0, type=float, help="ELU's alpha (with --activation elu)")
    editions.add_argument(
        "--neg_slope",
        default=0.01,
        type=float,
        help="LeakyReLU's slope for x < 0 (with --activation leaky_relu)",
    )
    editions.add_argument(
        "--use_layer_norm", action="store_true", help="layer normalization after each hidden Linear"
    )
    editions.add_argument(
        "--dropout", default=0.0, type=float, help="inverted dropout after each hidden activation"
    )
    editions.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZERS), help="update rule")
    editions.add_argument("--momentum", default=0.9, type=float, help="momentum of --optimizer momentum")
    editions.add_argument("--weight_decay", default=0.0, type=float, help="L2 penalty added to the gradient")
    return parser


# the keywords train() takes beyond 2021's arguments, named as the flags
OPTIONS = (
    "activation",
    "alpha",
    "neg_slope",
    "use_layer_norm",
    "dropout",
    "optimizer",
    "momentum",
    "weight_decay",
)


def train_arguments(args):
    """Every train() argument, as keywords, from the parsed flags (both trainers name them alike)."""
    names = ("hidden_dims", "lr", "batch_size", "epochs", "seed", "data_dir", "use_batch_norm", *OPTIONS)
    kwargs = {name: getattr(args, name) for name in names}
    kwargs["progress"] = not args.no_progress
    kwargs.update({name: getattr(args, name) for name in ("device", "batch_norm") if hasattr(args, name)})
    if hasattr(args, "dtype"):
        kwargs["dtype"] = np.dtype(args.dtype)
    return kwargs


def _run_suffix(args):
    """'_batch_norm', '_elu_adam', ...: what sets the run apart from 2021's default, for its folder name."""
    parts = [
        "batch_norm" if args.use_batch_norm else "",
        "layer_norm" if args.use_layer_norm else "",
        args.activation if args.activation != "relu" else "",
        f"dropout{args.dropout:g}" if args.dropout else "",
        args.optimizer if args.optimizer != "sgd" else "",
    ]
    return "".join(f"_{part}" for part in parts if part)


def parse_run_args(parser, model_name):
    """Parse the command line, fill in the default output directory and check that it can be
    written: ValueError (exit code 2 in run_cli) otherwise. The training settings are checked by
    train() itself, before it reads any data."""
    args = parser.parse_args()
    if args.output_dir is None:
        args.output_dir = os.path.join("results", args.run_name + _run_suffix(args))
    del args.run_name
    check_output_dir(args.output_dir, run_filenames(model_name))
    return args


class Diverged(Exception):
    """Raised by a trainer's main() after saving a diverged run: run_cli prints its message as
    one line and exits with EXIT_DIVERGED (3)."""


def raise_if_diverged(logging_info):
    """For a CLI's main(), after saving: Diverged(divergence_message) when the run diverged."""
    if logging_info.get("diverged"):
        raise Diverged(divergence_message(logging_info))


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
    not a MemoryError). Looked up when an exception is being matched, so this module
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


@contextlib.contextmanager
def one_line_interrupt(module_name):
    """For a script's slow imports (`with one_line_interrupt(__name__):`): Ctrl-C there ends as in
    run_cli, one line and exit code 130, when the script runs as the program; imported by another
    program, the interrupt is that program's to handle."""
    try:
        yield
    except KeyboardInterrupt:
        if module_name != "__main__":
            raise
        exit_interrupted()


def exit_interrupted():
    """The one line and exit code 130 of every Ctrl-C (run_cli's, and the torch import's)."""
    _fail(os.path.basename(sys.argv[0]), "interrupted (no file is left half-written)", 130)


def _fail(prog, message, code):
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)

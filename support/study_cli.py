"""The batch-norm study's command line: its flags, and which of them go together.

Three ways to run a study: in one process (the default: train what is missing, then draw), or
as a job array, each task training its share (--task K --tasks N) and one job gathering them
(--merge). --list prints the runs, numbered as the tasks number them.
"""

import argparse

import cifar10_utils
from support.cli import OneLineParser
from support.study_config import DEFAULT_RESULTS, STUDIES

# Flags of the one-process study that each other way refuses: they would mean nothing there.
REFUSED = {"--list": ("fresh", "plot_only", "wait"), "--task": ("fresh", "plot_only", "wait"),
           "--merge": ("fresh", "plot_only")}  # fmt: skip


def build_parser(description, epilog):
    parser = OneLineParser(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--study",
        default="default",
        choices=list(STUDIES),
        help="which study to train and draw (default: %(default)s)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds per configuration (default: the study's)")
    parser.add_argument("--lrs", type=float, nargs="+", help="learning rates (default: the study's)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: the study's)")
    parser.add_argument(
        "--hidden_dims",
        type=int,
        nargs="+",
        help='one architecture for every run, e.g. "256 128" (default: the study\'s architectures)',
    )
    parser.add_argument(
        "--data_dir",
        default=cifar10_utils.default_data_dir(),
        help="directory holding cifar-10-batches-py/ (default: $CIFAR10_DATA_DIR if set, else data/)",
    )
    parser.add_argument(
        "--results",
        default=None,
        help=f"results JSON, read then extended (default: {DEFAULT_RESULTS['default']}, "
        f"extended {DEFAULT_RESULTS['extended']}); the run files of --task go to the folder beside it, "
        f"RESULTS.runs/ (results.json -> results.runs/)",
    )
    parser.add_argument(
        "--figure_dir", default=None, help="where figures and tables go (default: beside --results)"
    )
    parser.add_argument("--fresh", action="store_true", help="retrain everything, replacing --results")
    parser.add_argument("--plot_only", action="store_true", help="only redraw the figures from --results")
    parser.add_argument(
        "--wait", action="store_true", help="wait while another process trains into --results"
    )
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when available"
    )
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--list", action="store_true", help="print the study's runs, 'K<TAB>label', and exit")
    parser.add_argument(
        "--task", type=int, help="train only runs K, K+N, ... (with --tasks N), one file each"
    )
    parser.add_argument("--tasks", type=int, help="the number N of tasks the study is split into")
    parser.add_argument(
        "--merge", action="store_true", help="gather the run files into --results, then draw the figures"
    )
    return parser


def parse_args(parser):
    """The flags, with the combinations that mean nothing refused (one line, exit code 2)."""
    args = parser.parse_args()
    if args.plot_only and args.fresh:
        parser.error("--plot_only and --fresh exclude each other")
    if (args.task is None) != (args.tasks is None):
        parser.error("--task K and --tasks N go together")
    modes = [flag for flag, on in (("--list", args.list), ("--task", args.task is not None),
                                   ("--merge", args.merge)) if on]  # fmt: skip
    if len(modes) > 1:
        parser.error(f"{' and '.join(modes)} exclude each other")
    refused = [f"--{name}" for name in REFUSED[modes[0]] if getattr(args, name)] if modes else []
    if refused:
        parser.error(f"{', '.join(refused)} cannot go with {modes[0]}")
    return args


def overrides(args):
    """The study settings the flags override (None: the study's own)."""
    return {
        "seeds": args.seeds,
        "lrs": args.lrs,
        "epochs": args.epochs,
        "architectures": None if args.hidden_dims is None else [args.hidden_dims],
    }

"""The batch-norm study: three architectures, with and without batch normalization.

    python compare_batch_norm.py [--data_dir data/] [--seeds 42] [--epochs 20]
                                 [--results results/batch_norm/results.json]
                                 [--figure_dir DIR] [--fresh | --plot_only]

Trains every (architecture, batch norm, seed) run missing from the results
file, rewriting it after each finished run (so an interrupted study resumes
where it stopped), then draws the figures from the file alone.
"""

import json
import os
import time

import numpy as np
from tqdm import tqdm

import train_common

ARCHITECTURES = [[128], [256, 128], [512, 256, 128]]
EPOCHS, LR, BATCH_SIZE, SEEDS = 20, 0.1, 128, [42]
DEFAULT_RESULTS = os.path.join("results", "batch_norm", "results.json")
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]


def study_settings(epochs=EPOCHS, lr=LR, batch_size=BATCH_SIZE, seeds=SEEDS, architectures=ARCHITECTURES):
    """What a results file must have been made with for its runs to be reused."""
    return {
        "architectures": [list(a) for a in architectures],
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seeds": list(seeds),
    }


def planned_runs(settings):
    return [
        {"hidden_dims": dims, "use_batch_norm": bn, "seed": seed}
        for dims in settings["architectures"]
        for bn in (False, True)
        for seed in settings["seeds"]
    ]


def run_key(run):
    return (tuple(run["hidden_dims"]), run["use_batch_norm"], run["seed"])


RUN_FIELDS = {
    "hidden_dims",
    "use_batch_norm",
    "seed",
    "train_accuracy",
    "train_loss",
    "val_accuracy",
    "best_epoch",
    "test_accuracy",
    "wall_time",
}


def load_results(results_filename):
    """The parsed results file; ValueError naming the file when it is not a results file."""
    try:
        with open(results_filename) as f:
            results = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read results file {results_filename}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(
            f"results file {results_filename} is not valid JSON ({e}); move it away or use --fresh"
        ) from None
    if not (
        isinstance(results, dict)
        and isinstance(results.get("settings"), dict)
        and isinstance(results.get("runs"), list)
        and all(isinstance(run, dict) and RUN_FIELDS <= run.keys() for run in results["runs"])
    ):
        raise ValueError(f"{results_filename} is not a batch-norm results file; move it away or use --fresh")
    return results


def check_results_path(results_filename):
    """ValueError, before any training, when the results file could not be written."""
    if os.path.isdir(results_filename):
        raise ValueError(f"results file {results_filename} is a directory")
    train_common.check_output_dir(os.path.dirname(os.path.abspath(results_filename)))


def train_models(results_filename, data_dir="data/", fresh=False, progress=True, device="auto", **settings):
    """Train every run of the study missing from `results_filename`, saving after each.

    Args:
        results_filename: JSON file read first (unless fresh) and rewritten atomically after each run.
        data_dir: CIFAR-10 directory.
        fresh: ignore (and replace) an existing results file.
        settings: epochs, lr, batch_size, seeds, architectures (defaults: the assignment's study).

    Returns:
        The results dict: {'settings', 'runs': [...]}.
    """
    from train_mlp_pytorch import train  # torch is needed to train, not to plot

    settings = study_settings(**settings)
    if len(set(settings["seeds"])) != len(settings["seeds"]):
        raise ValueError(f"seeds must differ from each other, got {settings['seeds']}")
    results = {"settings": settings, "runs": []}
    if os.path.exists(results_filename) and not fresh:
        results = load_results(results_filename)
        if results["settings"] != settings:
            raise ValueError(
                f"{results_filename} was made with other settings ({results['settings']}); "
                f"use another --results path or --fresh to replace it"
            )
    check_results_path(results_filename)
    done = {run_key(run) for run in results["runs"]}
    todo = [run for run in planned_runs(settings) if run_key(run) not in done]
    train_common.check_hyperparameters(
        [h for dims in settings["architectures"] for h in dims],
        settings["lr"],
        settings["batch_size"],
        settings["epochs"],
    )
    for run in tqdm(todo, desc="batch-norm study", disable=not progress):
        start = time.perf_counter()
        _, _, test_accuracy, info = train(
            run["hidden_dims"],
            settings["lr"],
            run["use_batch_norm"],
            settings["batch_size"],
            settings["epochs"],
            run["seed"],
            data_dir,
            device=device,
            progress=progress,
            log_epochs=False,
        )
        results["runs"].append(
            {
                **run,
                "train_accuracy": info["train_accuracy"],
                "train_loss": info["train_loss"],
                "val_accuracy": info["val_accuracy"],
                "best_epoch": info["best_epoch"],
                "test_accuracy": test_accuracy,
                "wall_time": time.perf_counter() - start,
                "device": info["device"],
            }
        )
        train_common.write_json(results_filename, results)
        if progress:
            tqdm.write(
                f"{_label(run['hidden_dims'], run['use_batch_norm'])}, seed {run['seed']}: "
                f"test accuracy {test_accuracy:.4f}"
            )
    return results


# ---------------------------------------------------------------- figures


def _label(hidden_dims, use_batch_norm):
    return f"[{', '.join(map(str, hidden_dims))}] {'with' if use_batch_norm else 'without'} batch norm"


def _groups(results):
    """{(architecture, batch norm): [runs over seeds]} in the study's order."""
    groups = {}
    for run in results["runs"]:
        groups.setdefault((tuple(run["hidden_dims"]), run["use_batch_norm"]), []).append(run)
    return groups


def plot_results(results_filename, figure_dir=None):
    """Draw the study from the results file alone; returns the paths written.

    Writes train_accuracy.png, val_accuracy.png, test_accuracy.png and
    test_accuracy.md into figure_dir (default: beside the results file), as one set.
    """
    from matplotlib.ticker import MaxNLocator

    results = load_results(results_filename)
    if not results["runs"]:
        raise ValueError(f"{results_filename} holds no finished run yet")
    figure_dir = figure_dir or os.path.dirname(os.path.abspath(results_filename))
    groups = _groups(results)
    architectures = list(dict.fromkeys(dims for dims, _ in groups))
    n_seeds = max(len(runs) for runs in groups.values())
    seeds_note = f"mean ± std over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    writers = {}
    for key, ylabel in (
        ("train_accuracy", "training accuracy (mean over the epoch's batches)"),
        ("val_accuracy", "validation accuracy"),
    ):
        fig = train_common.new_figure(figsize=(8, 5))
        ax = fig.subplots()
        for (dims, bn), runs in groups.items():
            curves = np.array([run[key] for run in runs])
            mean, std = curves.mean(axis=0), curves.std(axis=0)
            epochs = np.arange(1, curves.shape[1] + 1)
            color = COLORS[architectures.index(dims) % len(COLORS)]
            ax.plot(epochs, mean, color=color, ls="-" if bn else "--", label=_label(dims, bn))
            if len(runs) > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        ax.set(xlabel="epoch", ylabel=ylabel, title=f"{ylabel.split(' (')[0].capitalize()} ({seeds_note})")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        fig.tight_layout()
        writers[os.path.join(figure_dir, f"{key}.png")] = train_common.png_writer(fig, dpi=90)

    rows = _test_table(groups)
    fig = train_common.new_figure(figsize=(8, 4))
    ax = fig.subplots()
    width = 0.38
    for j, bn in enumerate((False, True)):
        # an interrupted study may lack some bars: they stay empty
        empty = {"mean": np.nan, "std": np.nan}
        stats = [
            next((r for r in rows if r["dims"] == dims and r["bn"] == bn), empty) for dims in architectures
        ]
        ax.bar(
            np.arange(len(architectures)) + (j - 0.5) * width,
            [s["mean"] for s in stats],
            width,
            yerr=[s["std"] for s in stats] if n_seeds > 1 else None,
            capsize=4,
            color="tab:gray" if not bn else "tab:blue",
            label="with batch norm" if bn else "without batch norm",
        )
    ax.set_xticks(np.arange(len(architectures)), [str(list(d)) for d in architectures])
    low = min(r["mean"] for r in rows)
    ax.set_ylim(max(0.0, low - 0.1), min(1.0, max(r["mean"] for r in rows) + 0.05))
    ax.set(
        xlabel="hidden layers",
        ylabel="test accuracy (best epoch by validation)",
        title=f"Test accuracy ({seeds_note})",
    )
    ax.legend()
    fig.tight_layout()
    writers[os.path.join(figure_dir, "test_accuracy.png")] = train_common.png_writer(fig, dpi=90)

    table = markdown_table(rows).encode()
    writers[os.path.join(figure_dir, "test_accuracy.md")] = lambda f: f.write(table)
    train_common.atomic_write_all(writers)
    return list(writers)


def _test_table(groups):
    rows = []
    for (dims, bn), runs in groups.items():
        test = np.array([run["test_accuracy"] for run in runs])
        val = np.array([max(run["val_accuracy"]) for run in runs])
        rows.append(
            {
                "dims": dims,
                "bn": bn,
                "n": len(runs),
                "mean": test.mean(),
                "std": test.std(),
                "val": val.mean(),
                "train": np.mean([run["train_accuracy"][-1] for run in runs]),
                "time": np.mean([run["wall_time"] for run in runs]),
            }
        )
    return rows


def markdown_table(rows):
    lines = [
        "| hidden layers | batch norm | seeds | test accuracy | best val. accuracy | "
        "last-epoch train accuracy | wall time per run (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        spread = f" ± {r['std']:.4f}" if r["n"] > 1 else ""
        lines.append(
            f"| {list(r['dims'])} | {'yes' if r['bn'] else 'no'} | {r['n']} | {r['mean']:.4f}{spread} | "
            f"{r['val']:.4f} | {r['train']:.4f} | {r['time']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = train_common.OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data/", help="directory holding cifar-10-batches-py/")
    parser.add_argument("--seeds", default=SEEDS, type=int, nargs="+", help="seeds per configuration")
    parser.add_argument("--epochs", default=EPOCHS, type=int, help="epochs per run")
    parser.add_argument("--results", default=DEFAULT_RESULTS, help="results JSON (read, then extended)")
    parser.add_argument("--figure_dir", default=None, help="where figures go (default: beside --results)")
    parser.add_argument("--fresh", action="store_true", help="retrain everything, replacing --results")
    parser.add_argument("--plot_only", action="store_true", help="only redraw the figures from --results")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args()
    if args.plot_only and args.fresh:
        parser.error("--plot_only and --fresh exclude each other")
    # checked now, not when the first figure is written after the whole study
    train_common.check_output_dir(args.figure_dir or os.path.dirname(os.path.abspath(args.results)))
    if not args.plot_only:
        train_models(
            args.results,
            data_dir=args.data_dir,
            fresh=args.fresh,
            progress=not args.no_progress,
            device=args.device,
            seeds=args.seeds,
            epochs=args.epochs,
        )
    paths = plot_results(args.results, args.figure_dir)
    print(f"results in {args.results}; figures: {', '.join(paths)}")


if __name__ == "__main__":
    train_common.run_cli(main)

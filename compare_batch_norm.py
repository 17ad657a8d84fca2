"""The batch-norm study: MLPs trained in pairs, with and without batch normalization.

    python compare_batch_norm.py [--study default|extended] [--seeds 42 43 44] [--lrs 0.1 0.3]
                                 [--epochs N] [--hidden_dims 256 128] [--data_dir DIR] [--results PATH]
                                 [--figure_dir DIR] [--fresh | --plot_only] [--wait] [--device auto|cpu|cuda]
    python compare_batch_norm.py --study S --list                           # the runs, numbered
    python compare_batch_norm.py --study S --task K --tasks N --results R   # a job array's task K
    python compare_batch_norm.py --study S --merge --results R              # its tasks' runs, drawn

default:  the assignment's six runs: [128], [256, 128], [512, 256, 128], each with and
          without batch norm, 20 epochs at lr 0.1, batch 128, seed 42 (--seeds 42 43 44 for
          more seeds: finished runs are reused). Results: results/batch_norm/results.json.
extended: a learning-rate sweep, lr 0.01, 0.03, 0.1, 0.3 and 1.0, with and without batch
          norm, for [128] and [512, 256, 128], seeds 42 43 44, 8 epochs each (60 runs; on a
          2-core CPU about 17 to 20 minutes). Results: results/batch_norm_extended/results.json.

Every run is stored under its own key (architecture, normalisation, lr, seed, epochs, batch
size, batch-norm implementation, statistics batch), so a rerun trains only the runs the
results file (and the run files of a job array, RESULTS.runs/) lack: adding seeds or learning
rates reuses every finished run, and an interrupted study resumes where it stopped. Runs
whose loss stops being finite are recorded as diverged, and the study goes on. The figures
and tables are then drawn from the results file alone.

For each seed the two arms of a pair (with and without batch norm) start from the same Linear
weights and see the same batches, so BN - no BN is a paired difference. Each run also records
per-layer statistics on a fixed batch (support/study_layers.py) and its first 50 steps' losses.
"""

import os

from tqdm import tqdm

import cifar10_utils
from support import checks, cli, output, study_cli, study_figures, study_sweeps, study_tables
from support.study_config import (
    DEFAULT_RESULTS,
    STUDIES,
    SWEEP_STUDIES,
    check_runs,
    estimate_minutes,
    planned_runs,
    run_key,
    run_label,
    study_settings,
)
from support.study_figures import FIGURES
from support.study_layers import LayerStatistics
from support.study_runs import list_runs, merge_runs, outcome, train_run, train_share
from support.study_store import (
    check_results_path,
    gather,
    load_results,
    read_run_files,
    results_lock,
    study_runs,
)

# The assignment's six configurations: these three architectures, each without and with batch
# norm, lr 0.1, batch 128, 20 epochs, seed 42 (STUDIES["default"]); the other studies beside them.
ARCHITECTURES = STUDIES["default"]["architectures"]


def train_models(
    results_filename,
    data_dir=None,
    fresh=False,
    progress=True,
    device="auto",
    study="default",
    wait=False,
    **settings,
):
    """Train every run of the study missing from `results_filename`, saving after each.

    Args:
        results_filename: JSON file read first (unless fresh) and rewritten atomically
            after each run; the runs it already holds are reused, whatever study made them,
            and so are those of the run files beside it (RESULTS.runs/, from --task).
        data_dir: CIFAR-10 directory (default: $CIFAR10_DATA_DIR if set, else data/).
        fresh: ignore (and replace) an existing results file and the run files.
        study: a name of STUDIES ("default", "extended").
        wait: when another process trains into this file, wait for it instead of refusing.
        settings: overrides of the study's settings (architectures, lrs, seeds, norms, epochs,
            batch_size, batch_norm, stats_images).

    Returns:
        The results dict: {'settings', 'runs': [...]}, the runs of the file (this study's
        and any others it held).
    """
    if data_dir is None:
        data_dir = cifar10_utils.default_data_dir()
    settings = study_settings(study, **settings)
    check_runs(planned_runs(settings))
    check_results_path(results_filename)
    # The results file is rewritten whole after each run (atomically: Ctrl-C or a kill loses only
    # the run in training). Two processes doing so would train the same runs and overwrite each
    # other's file: the lock lets one in. A job array's tasks write only run files of their own,
    # and need none.
    with results_lock(results_filename, wait):
        results = {"settings": settings, "runs": []}
        changed = False
        if os.path.exists(results_filename) and not fresh:
            earlier = load_results(results_filename)
            results["runs"] = earlier["runs"]
            changed = earlier["settings"] != settings  # the file says which study its figures show
        if not fresh:
            changed |= gather(results, read_run_files(results_filename)) > 0
        if changed:
            output.write_json(results_filename, results)
        done = {run_key(run) for run in results["runs"]}
        todo = [run for run in planned_runs(settings) if run_key(run) not in done]
        if progress and todo:
            tqdm.write(
                f"{len(todo)} runs to train, {len(planned_runs(settings)) - len(todo)} found in "
                f"{results_filename} (about {estimate_minutes(todo):.0f} min on 2 CPU cores)"
            )
        statistics = LayerStatistics(data_dir, settings["stats_images"])
        for run in tqdm(todo, desc="batch-norm study", disable=not progress):
            results["runs"].append(train_run(run, data_dir, device, progress, statistics))
            output.write_json(results_filename, results)
            if progress:
                tqdm.write(f"{run_label(run)}: {outcome(results['runs'][-1])}")
    return results


def plot_results(results_filename, figure_dir=None):
    """Draw the study from the results file alone; returns the paths written.

    Writes the study's FIGURES (PNG figures and Markdown tables) into figure_dir (default:
    beside the results file), as one set. Each table starts with the command that made it.
    """
    results = load_results(results_filename)
    runs = study_runs(results)
    if not runs:
        raise ValueError(f"{results_filename} holds no finished run of its study yet")
    settings = results["settings"]
    figure_dir = figure_dir or os.path.dirname(os.path.abspath(results_filename))
    study = settings["study"]
    if study in SWEEP_STUDIES:  # one setting swept across the normalisations
        figures = {f"{study}.png": study_sweeps.sweep_figure(runs, settings)}
        tables = {
            f"{study}.md": study_sweeps.sweep_table(results, study_tables.made_by(results, results_filename))
        }
        return _write(figures, tables, figure_dir, study)
    lr = study_figures.figure_lr(settings)
    figures = {"paired_differences.png": study_figures.paired_figure(runs, settings)}
    tables = {"paired_differences.md": study_tables.paired_table(results, results_filename)}
    if study == "default":
        figures["train_accuracy.png"] = study_figures.curves_figure(
            runs, settings, "train_accuracy", "training accuracy (mean over the epoch's batches)", lr
        )
        figures["val_accuracy.png"] = study_figures.curves_figure(
            runs, settings, "val_accuracy", "validation accuracy", lr
        )
        figures["test_accuracy.png"] = study_figures.accuracy_dot_figure(runs, settings, lr)
        tables["test_accuracy.md"] = study_tables.accuracy_table(results, results_filename)
    else:
        figures["lr_sweep.png"] = study_figures.lr_sweep_figure(runs, settings)
        figures["val_accuracy.png"] = study_figures.val_panels_figure(runs, settings)
        tables["lr_sweep.md"] = study_tables.sweep_table(results, results_filename)
    figures["layer_stats.png"] = study_figures.layer_stats_figure(runs, settings, lr)
    figures["first_steps_loss.png"] = study_figures.first_steps_figure(runs, settings, lr)
    return _write(figures, tables, figure_dir, study)


def _write(figures, tables, figure_dir, study):
    """Figures and tables into figure_dir, in the order FIGURES lists them, as one set."""
    writers = {
        os.path.join(figure_dir, name): output.png_writer(fig, dpi=100) for name, fig in figures.items()
    }
    for name, text in tables.items():
        writers[os.path.join(figure_dir, name)] = _bytes_writer(text.encode())
    writers = {path: writers[path] for path in (os.path.join(figure_dir, n) for n in FIGURES[study])}
    output.atomic_write_all(writers)
    return list(writers)


def _bytes_writer(data):
    return lambda f: f.write(data)


def main():
    paragraphs = __doc__.split("\n\n")  # title, usage, the two studies, how runs are kept, ...
    args = study_cli.parse_args(study_cli.build_parser(f"{paragraphs[0]}\n\n{paragraphs[2]}", paragraphs[3]))
    results = args.results or DEFAULT_RESULTS[args.study]
    settings = study_cli.overrides(args)
    if args.list:
        return list_runs(study_settings(args.study, **settings))
    if args.task is not None:
        settings = study_settings(args.study, **settings)
        return train_share(results, args.task, args.tasks, settings, args.data_dir, args.device,
                           progress=not args.no_progress)  # fmt: skip
    figure_dir = args.figure_dir or os.path.dirname(os.path.abspath(results))
    # checked now, not when the first figure is written after the whole study
    checks.check_output_dir(figure_dir, sorted({name for names in FIGURES.values() for name in names}))
    if args.merge:
        merge_runs(results, study_settings(args.study, **settings), wait=args.wait)
    elif not args.plot_only:
        train_models(results, data_dir=args.data_dir, fresh=args.fresh, progress=not args.no_progress,
                     device=args.device, study=args.study, wait=args.wait, **settings)  # fmt: skip
    paths = plot_results(results, figure_dir)
    where = args.figure_dir or os.path.dirname(results) or os.curdir
    print(f"results in {results}; figures and tables in {where}: {', '.join(map(os.path.basename, paths))}")


if __name__ == "__main__":
    cli.run_cli(main)

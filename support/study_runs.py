"""Training a study's runs: one run and its record, a job-array task's share, --list and --merge.

Run K of a study is planned_runs(settings)[K]. Task K of N trains runs K, K + N, K + 2N, ... and
writes each to its own file (study_store.write_run), skipping those already finished (in a run
file or in the results file), so a rerun of a killed task trains only what it had not finished.
"""

import json
import os
import time

from support.output import write_json
from support.study_config import FIRST_STEPS, check_runs, planned_runs, run_key, run_label, train_arguments
from support.study_layers import LayerStatistics
from support.study_store import (
    check_results_path,
    gather,
    load_results,
    missing_runs,
    read_run_files,
    results_lock,
    write_run,
)


def train_run(run, data_dir, device, progress, statistics):
    """Train one planned run with train_mlp_pytorch.train; returns its record as the results file
    holds it (the run's key fields, its curves, test accuracy, timing and layer statistics)."""
    import train_mlp_pytorch  # torch is needed to train, not to plot; looked up here, so tests can fake it

    statistics.new_run()
    start = time.perf_counter()
    _, _, test_accuracy, info = train_mlp_pytorch.train(
        **train_arguments(run),
        data_dir=data_dir,
        device=device,
        progress=progress,
        log_epochs=False,
        epoch_callback=statistics,
    )
    record = {
        **run,
        "train_accuracy": info["train_accuracy"],
        "train_loss": info["train_loss"],
        "val_accuracy": info["val_accuracy"],
        "best_epoch": info.get("best_epoch"),
        "test_accuracy": test_accuracy,
        "wall_time": time.perf_counter() - start,
        "epoch_time": info["epoch_time"],
        "device": info["device"],
        "diverged": bool(info["diverged"]),
        "diverged_at": info.get("diverged_at") if info["diverged"] else None,
        "first_steps_loss": info["batch_loss"][:FIRST_STEPS],
        **statistics.record(),
    }
    # as the file will hold it: a diverged run's NaN or infinite losses become null
    return json.loads(json.dumps(record), parse_constant=lambda _: None)


def outcome(run):
    if run["diverged"]:
        at = run["diverged_at"]
        return f"diverged at epoch {at['epoch']}, step {at['step']} (loss not finite), recorded as such"
    return f"test accuracy {run['test_accuracy']:.4f}"


def list_runs(settings):
    """--list: one line per run, 'K<TAB>label', after the same checks as training makes."""
    runs = planned_runs(settings)
    check_runs(runs)
    for k, run in enumerate(runs):
        print(f"{k}\t{run_label(run)}")


def train_share(results_filename, task, tasks, settings, data_dir, device="auto", progress=True):
    """Task `task` of `tasks`: train runs task, task + tasks, ... of the study that no run file and
    not the results file holds, each written to its run file as soon as it is trained.

    Prints a line per run trained ("run K (label): outcome"), with or without progress bars: a
    job's log then says what it did. Returns the indices trained.
    """
    if tasks < 1:
        raise ValueError(f"--tasks must be >= 1, got {tasks}")
    if not 0 <= task < tasks:
        raise ValueError(f"--task must be in 0..{tasks - 1} for --tasks {tasks}, got {task}")
    runs = planned_runs(settings)
    share = list(range(task, len(runs), tasks))
    check_runs([runs[k] for k in share])
    check_results_path(results_filename)
    finished = read_run_files(results_filename)
    if os.path.exists(results_filename):
        finished += load_results(results_filename)["runs"]
    done = {run_key(run) for run in finished}
    todo = [k for k in share if run_key(runs[k]) not in done]
    print(
        f"task {task} of {tasks}: {len(todo)} of its {len(share)} runs to train "
        f"({len(share) - len(todo)} finished before)",
        flush=True,
    )
    statistics = LayerStatistics(data_dir, settings["stats_images"])
    for k in todo:
        record = train_run(runs[k], data_dir, device, progress, statistics)
        write_run(results_filename, record)
        print(f"run {k} ({run_label(runs[k])}): {outcome(record)}", flush=True)
    return todo


def merge_runs(results_filename, settings, wait=False):
    """--merge: the run files' runs into the results file (which keeps the runs it held), once
    every run of the study is there; ValueError naming the missing ones otherwise, and the file
    is left as it was. Returns the results dict."""
    check_results_path(results_filename)
    with results_lock(results_filename, wait):
        results = {"settings": settings, "runs": []}
        earlier = load_results(results_filename) if os.path.exists(results_filename) else None
        if earlier is not None:
            results["runs"] = earlier["runs"]
        added = gather(results, read_run_files(results_filename))
        missing = missing_runs(results)
        if missing:
            n_runs = len(planned_runs(settings))
            raise ValueError(
                f"{len(missing)} of the study's {n_runs} runs are missing (runs "
                f"{', '.join(map(str, missing))}); train them with --task K --tasks N, then merge again"
            )
        if added or earlier is None or earlier["settings"] != settings:
            write_json(results_filename, results)
    return results

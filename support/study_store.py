"""Where a study's runs are kept: the results file, one file per run beside it, and the lock.

The results file (JSON) holds {"settings": the study's, "runs": [every finished run]}; figures
and tables read it alone. A task of a job array (--task K --tasks N) writes each run it trains
to a file of its own in the folder beside it, RESULTS.runs/ (results.json -> results.runs/),
named by run_id. Each is written atomically by rename, and a run belongs to one task's share,
so tasks on different nodes share no file and need no lock: a killed task loses only the run
it was training. gather() puts the run files' runs into the results file.

Only the one-process study and --merge write the results file, both under results_lock.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import sys

from support import checks, output
from support.study_config import KEY_FIELDS, RUN_FIELDS, planned_runs, run_key, study_settings

# Settings and run fields that files written before them lack, and the value those files trained.
LATER_SETTINGS = ("norms",)
LATER_RUN_FIELDS = {
    "norm": lambda run: "batch" if run.get("use_batch_norm") else "none",
    "init_scale": lambda run: 1.0,
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
    settings = _full_settings(results.get("settings")) if isinstance(results, dict) else None
    if not (
        settings is not None
        and isinstance(results.get("runs"), list)
        and all(_is_run(run) for run in results["runs"])
    ):
        raise ValueError(
            f"{results_filename} is not a results file of this version of the batch-norm study "
            f"(files from before runs were keyed by lr and recorded layer_stats are not read); "
            f"move it away or use --fresh"
        )
    results["settings"] = settings
    return results


def _full_settings(settings):
    """What study_settings() makes of `settings`, or None when they are not its settings (or
    lack more than LATER_SETTINGS)."""
    try:
        full = study_settings(**settings)
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    missing = full.keys() - settings.keys()
    same = all(full[k] == v for k, v in settings.items())
    return full if same and missing <= set(LATER_SETTINGS) else None


def _is_run(run):
    """Whether `run` is a finished run's record; it gains the LATER_RUN_FIELDS it lacks."""
    if not isinstance(run, dict):
        return False
    for field, value in LATER_RUN_FIELDS.items():
        run.setdefault(field, value(run))
    return RUN_FIELDS <= run.keys()


def check_results_path(results_filename):
    """ValueError, before any training, when the results file or its run files could not be written."""
    if os.path.isdir(results_filename):
        raise ValueError(f"results file {results_filename} is a directory")
    folder = runs_dir(results_filename)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{folder}, the folder of the run files, is an existing file")
    checks.check_output_dir(os.path.dirname(os.path.abspath(results_filename)))


def study_runs(results):
    """The finished runs that belong to the file's study (its settings), in the study's order.

    A results file can hold more runs (other seeds or learning rates asked for earlier):
    they are kept for reuse but not drawn.
    """
    by_key = {run_key(run): run for run in results["runs"]}
    return [by_key[k] for k in map(run_key, planned_runs(results["settings"])) if k in by_key]


# ---------------------------------------------------------------- one file per run


def runs_dir(results_filename):
    """The folder of the run files: results.json -> results.runs."""
    root, extension = os.path.splitext(results_filename)
    return (root if extension == ".json" else results_filename) + ".runs"


def run_id(run):
    """A file name for the run, the same wherever and whenever it is computed: what it is, for a
    reader, and a digest of every key field, so that two different runs never share it."""
    key = json.dumps([run[field] for field in KEY_FIELDS])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    dims = "-".join(map(str, run["hidden_dims"])) or "linear"
    return f"{dims}_{run['norm']}_lr{run['lr']:g}_seed{run['seed']}_{digest}"


def run_path(results_filename, run):
    return os.path.join(runs_dir(results_filename), f"{run_id(run)}.json")


def write_run(results_filename, record):
    """The run's file, written atomically (a temporary file renamed into place)."""
    output.write_json(run_path(results_filename, record), record)


def read_run_files(results_filename):
    """Every finished run in the run files, in the order of their names; ValueError naming a
    file that is not a run (the temporary files of writes that were cut short are skipped)."""
    folder = runs_dir(results_filename)
    if not os.path.isdir(folder):
        return []
    runs = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or not name.endswith(".json"):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path) as f:
                run = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read run file {path} ({e}); move it away") from None
        if not _is_run(run):
            raise ValueError(f"{path} is not a run of this version of the batch-norm study; move it away")
        runs.append(run)
    return runs


def gather(results, runs):
    """Add to results["runs"] those of `runs` it lacks: first the study's, in its order, then the
    others (kept for reuse, as the file keeps earlier studies' runs). Returns how many it added."""
    known = {run_key(run) for run in results["runs"]}
    new = {run_key(run): run for run in runs if run_key(run) not in known}
    planned = [k for k in map(run_key, planned_runs(results["settings"])) if k in new]
    order = planned + [k for k in new if k not in set(planned)]
    results["runs"] += [new[k] for k in order]
    return len(order)


def missing_runs(results):
    """The indices (in planned_runs) of the study's runs that results["runs"] lacks."""
    known = {run_key(run) for run in results["runs"]}
    return [i for i, run in enumerate(planned_runs(results["settings"])) if run_key(run) not in known]


# ---------------------------------------------------------------- the lock


@contextlib.contextmanager
def results_lock(results_filename, wait=False):
    """Hold an exclusive fcntl.flock on RESULTS.lock (holding our pid) while writing the results file.

    A second process is refused with a ValueError naming the holder, or, with wait=True,
    says whom it waits for and blocks until the lock is free. The lock file is removed on
    release; a waiter that locked the removed file tries again on the new one.
    """
    path = f"{results_filename}.lock"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            message = f"{results_filename} is being trained by process {holder} (it holds {path})"
            if not wait:
                os.close(fd)
                raise ValueError(f"{message}; wait for it to finish or pass --wait") from None
            print(f"{message}; waiting for it to finish", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file we waited on: lock the current one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)  # still holding the lock, so no other process holds this file
        os.close(fd)

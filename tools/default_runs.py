"""The four default runs of README's results table, over seeds, as the commands a user types.

    python tools/default_runs.py [--seeds 42 43 44 45 46] [--results docs/results/default_runs.json]
    python tools/default_runs.py --table            # README's table from the results file

Each run is `python train_mlp_numpy.py` or `python train_mlp_pytorch.py` (with and without
--use_batch_norm), in a subprocess with this process's environment, so OMP_NUM_THREADS set
here is the run's thread count. Records are kept by (framework, use_batch_norm, seed, threads):
a second call with another OMP_NUM_THREADS adds its runs beside the first.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from support.output import write_json  # noqa: E402

CONFIGS = [("numpy", False), ("numpy", True), ("pytorch", False), ("pytorch", True)]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def run_once(framework, use_batch_norm, seed, data_dir):
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, f"train_mlp_{framework}.py", "--seed", str(seed), "--output_dir", out]
        command += ["--no_progress"] + (["--use_batch_norm"] if use_batch_norm else [])
        command += ["--data_dir", data_dir] if data_dir else []
        done = subprocess.run(command, cwd=HERE, stdout=subprocess.DEVNULL)
        if done.returncode not in (0, 3):  # 3: the run diverged, and its log is saved
            sys.exit(f"{' '.join(command)} failed with exit code {done.returncode}")
        with open(os.path.join(out, "log.json")) as f:
            log = json.load(f)
    return {
        "framework": framework,
        "use_batch_norm": use_batch_norm,
        "seed": seed,
        "test_accuracy": log["test_accuracy"],
        "best_epoch": log["logging_info"].get("best_epoch"),
        "diverged": log["diverged"],
        "threads": os.environ.get("OMP_NUM_THREADS", f"unset ({os.cpu_count()} cores)"),
        "cpu": cpu_model(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }


def key(run):
    return run["framework"], run["use_batch_norm"], run["seed"], run["threads"]


def table(runs, threads):
    """README's table: per configuration, mean +- sample sd over the seeds, and seed 42's run."""
    lines = [
        "| command | test accuracy, mean ± sd over seeds (n) | seed 42 (best epoch) |",
        "| --- | --- | --- |",
    ]
    for framework, bn in CONFIGS:
        group = [
            r for r in runs if (r["framework"], r["use_batch_norm"], r["threads"]) == (framework, bn, threads)
        ]
        accuracies = [r["test_accuracy"] for r in group if not r["diverged"]]
        diverged = [r["seed"] for r in group if r["diverged"]]
        seed42 = next(r for r in group if r["seed"] == 42)
        command = f"`python train_mlp_{framework}.py{' --use_batch_norm' if bn else ''}`"
        spread = f"{statistics.mean(accuracies):.4f} ± {statistics.stdev(accuracies):.4f} ({len(accuracies)})"
        if diverged:
            spread += f"; seed {', '.join(map(str, diverged))} diverged"
        lines.append(f"| {command} | {spread} | {seed42['test_accuracy']:.4f} ({seed42['best_epoch']}) |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    parser.add_argument("--results", default=os.path.join(HERE, "docs", "results", "default_runs.json"))
    parser.add_argument(
        "--data_dir", default=None, help="default: the trainers' ($CIFAR10_DATA_DIR, else data/)"
    )
    parser.add_argument(
        "--table", action="store_true", help="print README's table and the thread-count effect"
    )
    args = parser.parse_args()
    runs = []
    if os.path.exists(args.results):
        with open(args.results) as f:
            runs = json.load(f)["runs"]
    if args.table:
        by_threads = sorted({r["threads"] for r in runs}, key=lambda t: -sum(r["threads"] == t for r in runs))
        print(table(runs, by_threads[0]))
        runs_by_key = {key(r)[:3]: {} for r in runs}
        for r in runs:
            runs_by_key[key(r)[:3]][r["threads"]] = r["test_accuracy"]
        for k, by_t in runs_by_key.items():
            if len(by_t) > 1:
                print(k, {t: f"{a:.4f}" for t, a in by_t.items()})
        return
    done = {key(r) for r in runs}
    for seed in args.seeds:
        for framework, bn in CONFIGS:
            threads = os.environ.get("OMP_NUM_THREADS", f"unset ({os.cpu_count()} cores)")
            if (framework, bn, seed, threads) in done:
                continue
            run = run_once(framework, bn, seed, args.data_dir)
            if key(run) not in done:
                runs.append(run)
                done.add(key(run))
                write_json(args.results, {"command": "python tools/default_runs.py", "runs": runs})
            print(
                f"{framework} bn={bn} seed={seed}: {run['test_accuracy']} ({run['best_epoch']})",
                flush=True,
            )


if __name__ == "__main__":
    main()

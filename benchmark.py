"""Speed, memory and accuracy figures of this project, as a table of medians.

    python benchmark.py --data_dir ../shared/data/cifar10-jpeg [--repeats 5] [--study]

Sections: data pipeline, NumPy training (throughput against a 2048x2048
float32 matmul measured in the same process, and the default run end to end),
PyTorch default runs, and with --study the full single-seed batch-norm study.
Whole runs are timed as separate processes, as a user runs them; peak RSS is
that process's own (os.wait4). The machine is noisy: compare figures of one run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import cifar10_utils

HERE = os.path.dirname(os.path.abspath(__file__))


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# Children are started from this small launcher, not from the benchmark process: a
# forked child's peak RSS counts the parent's memory at fork time, even after exec.
LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen([sys.executable, *sys.argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
out = proc.stdout.read()
_, status, usage = os.wait4(proc.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))
sys.stdout.write(out.decode())
"""


def run_timed(args, repeats):
    """Wall times, max peak RSS (MB) and the outputs of `repeats` runs of `python args...`."""
    walls, rss, outs = [], [], []
    for _ in range(repeats):
        result = subprocess.run(
            [sys.executable, "-c", LAUNCHER, *args], cwd=HERE, capture_output=True, text=True
        )
        head, _, out = result.stdout.partition("\n")
        wall, peak, code = head.split()
        if int(code):
            raise SystemExit(f"benchmark: python {' '.join(args)} failed")
        walls.append(float(wall))
        rss.append(float(peak))
        outs.append(out)
    return walls, max(rss), outs


def spread(walls):
    """Median and range: this machine's speed changes by up to 2x within seconds."""
    if len(walls) == 1:
        return f"{walls[0]:.1f} s"
    return f"{statistics.median(walls):.2f} s ({min(walls):.2f} to {max(walls):.2f})"


RSS_PROBE = """
import sys, resource
import cifar10_utils
data = cifar10_utils.get_cifar10(sys.argv[1])
for loader in cifar10_utils.get_dataloader(data, 128, return_numpy=True).values():
    for x, y in loader:
        pass
assert "torch" not in sys.modules
"""


def bench_data(data_dir, repeats, rows):
    t = median_time(lambda: cifar10_utils.get_cifar10(data_dir), repeats)
    rows.append(("get_cifar10 from extracted batches", f"{t:.3f} s", "<= 1.5 s"))
    data = cifar10_utils.get_cifar10(data_dir)
    for numpy in (True, False):
        loader = cifar10_utils.get_dataloader(data, 128, return_numpy=numpy, seed=0)["train"]
        t = median_time(lambda loader=loader: [None for _ in loader], repeats)
        target = "<= 0.3 s" if numpy else "<= 0.5 s"
        rows.append(
            (f"one pass over train, batch 128, {'NumPy' if numpy else 'torch'}", f"{t:.3f} s", target)
        )
    _, rss, _ = run_timed(["-c", RSS_PROBE, data_dir], 1)
    rows.append(("peak RSS: load all + one NumPy pass per loader, no torch", f"{rss:.0f} MB", "<= 500 MB"))


def bench_numpy_steps(data_dir, repeats, rows):
    """Forward, backward and SGD update over 45,000 images, against a big float32 matmul."""
    from mlp_numpy import MLP
    from modules import CrossEntropyModule
    from train_mlp_numpy import sgd_step

    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    a @ a
    t_ref = median_time(lambda: a @ a, 2 * repeats)
    ref = 2 * 2048**3 / t_ref / 1e9

    data = cifar10_utils.get_cifar10(data_dir)
    batches = list(cifar10_utils.get_dataloader(data, 128, return_numpy=True, seed=0)["train"])
    model = MLP(3072, [128], 10, dtype=np.float32, column_major=True)  # as train_mlp_numpy builds it
    loss = CrossEntropyModule()

    def epoch():
        for x, y in batches:
            probs = model.forward(x)
            loss.forward(probs, y)
            model.backward(loss.backward(probs, y))
            sgd_step(model, 0.1)

    epoch()
    t = median_time(epoch, repeats)
    # per step: forward x W1^T, W2; backward dW1 = d^T x (no dX for pixels), dW2 and dX for layer 2
    flops = len(batches) * 128 * 2 * (2 * 3072 * 128 + 3 * 128 * 10)
    rows.append(("float32 2048x2048 matmul", f"{ref:.1f} GFLOP/s", ""))
    rows.append(
        ("NumPy training steps, 1 epoch (default MLP)", f"{t:.3f} s, {flops / t / 1e9:.1f} GFLOP/s", "")
    )
    rows.append(("  ratio to the 2048 matmul", f"{flops / t / 1e9 / ref:.0%}", ">= 50%"))


def bench_runs(data_dir, repeats, rows, out_root):
    def accuracy(outs):
        accs = [float(o.split("test accuracy ")[1].split()[0]) for o in outs]
        return accs[0] if len(set(accs)) == 1 else f"{accs} (not reproducible!)"

    common = ["--data_dir", data_dir, "--no_progress", "--output_dir"]
    walls, rss, outs = run_timed(["train_mlp_numpy.py", *common, f"{out_root}/np"], repeats)
    rows.append(("NumPy default run, end to end", spread(walls), "<= 8 s"))
    rows.append(("  peak RSS", f"{rss:.0f} MB", "<= 1 GB"))
    rows.append(("  test accuracy", f"{accuracy(outs)}", "0.47-0.53"))
    walls, rss, outs = run_timed(
        ["train_mlp_pytorch.py", "--device", "cpu", *common, f"{out_root}/pt"], repeats
    )
    rows.append(("PyTorch default run, end to end (CPU)", spread(walls), "<= 8 s"))
    rows.append(("  peak RSS", f"{rss:.0f} MB", ""))
    rows.append(("  test accuracy", f"{accuracy(outs)}", "0.47-0.54"))
    walls, _, outs = run_timed(
        ["train_mlp_pytorch.py", "--device", "cpu", "--use_batch_norm", *common, f"{out_root}/bn"], 1
    )
    rows.append(("PyTorch default run with batch norm (CPU)", spread(walls), ""))
    rows.append(("  test accuracy", f"{accuracy(outs)}", ""))


def bench_study(data_dir, rows, out_root):
    results = f"{out_root}/study/results.json"
    walls, _, _ = run_timed(
        ["compare_batch_norm.py", "--data_dir", data_dir, "--results", results, "--no_progress", "--fresh"], 1
    )
    rows.append(("batch-norm study, 6 runs x 20 epochs, one seed (one run)", spread(walls), "<= 240 s"))
    with open(results) as f:
        for run in json.load(f)["runs"]:
            name = f"  {run['hidden_dims']} {'BN' if run['use_batch_norm'] else 'no BN'}"
            rows.append((name, f"test {run['test_accuracy']:.4f}, {run['wall_time']:.0f} s", ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data/")
    parser.add_argument("--repeats", default=5, type=int, help="repetitions behind each median")
    parser.add_argument("--study", action="store_true", help="also time the full batch-norm study (~4 min)")
    parser.add_argument("--only", choices=["data", "steps", "runs", "study"], help="run one section")
    args = parser.parse_args()
    data_dir = os.path.abspath(args.data_dir)
    rows = []
    with tempfile.TemporaryDirectory() as out_root:
        sections = {
            "data": lambda: bench_data(data_dir, args.repeats, rows),
            "steps": lambda: bench_numpy_steps(data_dir, args.repeats, rows),
            "runs": lambda: bench_runs(data_dir, args.repeats, rows, out_root),
            "study": lambda: bench_study(data_dir, rows, out_root),
        }
        chosen = [args.only] if args.only else ["data", "steps", "runs"] + (["study"] if args.study else [])
        for name in chosen:
            sections[name]()
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'measured (median of ' + str(args.repeats) + ')':<34}  target")
    for what, value, target in rows:
        print(f"{what:<{width}}  {value:<34}  {target}")


if __name__ == "__main__":
    main()

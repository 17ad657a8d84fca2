"""The batch-norm study: MLPs trained in pairs, with and without batch normalization.

    python compare_batch_norm.py [--study default|extended] [--seeds 42 43 44] [--lrs 0.1 0.3]
                                 [--epochs N] [--data_dir DIR] [--results PATH] [--figure_dir DIR]
                                 [--fresh | --plot_only] [--wait] [--device auto|cpu|cuda]

default:  the assignment's six runs: [128], [256, 128], [512, 256, 128], each with and
          without batch norm, 20 epochs at lr 0.1, batch 128, seed 42 (--seeds 42 43 44 for
          more seeds: finished runs are reused).
          Results: results/batch_norm/results.json.
extended: a learning-rate sweep, lr 0.01, 0.03, 0.1, 0.3 and 1.0, with and without batch
          norm, for [128] and [512, 256, 128], seeds 42 43 44, 8 epochs each (60 runs; on a
          2-core CPU a seed took 313 to 394 s when nothing else ran, so about 17 to 20 minutes,
          and the whole study 33 minutes beside other jobs).
          Results: results/batch_norm_extended/results.json.

Every run is stored under its own key (architecture, batch norm, lr, seed, epochs, batch
size, batch-norm implementation, statistics batch), so a rerun trains only the runs the
results file lacks: adding seeds or learning rates reuses every finished run, and an
interrupted study resumes where it stopped (the file is rewritten atomically after each
run). A lock beside the results file (RESULTS.lock) keeps a second process from training
the same runs. Runs whose loss stops being finite are recorded as diverged, and the study
goes on. The figures and tables are then drawn from the results file alone.

For each seed the two arms of a pair (with and without batch norm) start from the same
Linear weights and see the same batches, so BN - no BN is a paired difference.

Per-layer statistics, after initialisation (epoch 0) and after each epoch, on one fixed
batch (the first 500 validation images), for each hidden layer: mean and standard
deviation of the pre-activations (the ReLU's input, after batch norm where there is one),
standard deviation of the Linear output (before batch norm), the fractions of ReLUs dead
on the batch (output zero for every image) and of zero activations, and the norms of each
Linear's weight and of its gradient on that batch. They are computed in train mode, as
the training steps see the network: batch norm normalises with the batch's own
statistics, and its running statistics are restored afterwards, so the run is unchanged.
(Eval mode would show batch norm as the identity at epoch 0, where its running
statistics are still 0 and 1.) The loss of the first 50 steps is kept step by step.
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import sys
import time
import warnings

import numpy as np
from tqdm import tqdm

import cifar10_utils
import train_common

ARCHITECTURES = [[128], [256, 128], [512, 256, 128]]
# What each study trains unless told otherwise. "batch_norm" is the trainer's implementation
# (nn.BatchNorm1d); "stats_images" the size of the fixed batch the layer statistics use.
STUDIES = {
    "default": {
        "architectures": ARCHITECTURES,
        "lrs": [0.1],
        "seeds": [42],
        "epochs": 20,
        "batch_size": 128,
        "batch_norm": "torch",
        "stats_images": 500,
    },
    "extended": {
        "architectures": [[128], [512, 256, 128]],
        "lrs": [0.01, 0.03, 0.1, 0.3, 1.0],
        "seeds": [42, 43, 44],
        # 8 epochs keep the 60 runs near 18 minutes on 2 CPU cores (estimate_minutes), and in the
        # 20-epoch study at lr 0.1 validation accuracy after epoch 8 was 0.4 to 2.2 points (mean
        # 1.3) below each run's best.
        "epochs": 8,
        "batch_size": 128,
        "batch_norm": "torch",
        "stats_images": 500,
    },
}
DEFAULT_RESULTS = {
    "default": os.path.join("results", "batch_norm", "results.json"),
    "extended": os.path.join("results", "batch_norm_extended", "results.json"),
}
# The settings a run is keyed by: two runs that agree on all of them are the same run.
KEY_FIELDS = (
    "hidden_dims",
    "use_batch_norm",
    "lr",
    "seed",
    "epochs",
    "batch_size",
    "batch_norm",
    "stats_images",
)
RUN_FIELDS = {
    *KEY_FIELDS,
    "train_accuracy",
    "train_loss",
    "val_accuracy",
    "best_epoch",
    "test_accuracy",
    "wall_time",
    "diverged",
    "diverged_at",
    "first_steps_loss",
    "layer_stats",
}
FIRST_STEPS = 50  # the steps whose loss is kept one by one (the early jump happens there)
FIGURE_LR = 0.1  # the learning rate of the layer-statistics and first-steps figures
FIGURES = {
    "default": [
        "train_accuracy.png",
        "val_accuracy.png",
        "test_accuracy.png",
        "test_accuracy.md",
        "paired_differences.md",
        "layer_stats.png",
        "first_steps_loss.png",
    ],
    "extended": [
        "lr_sweep.png",
        "lr_sweep.md",
        "val_accuracy.png",
        "paired_differences.md",
        "layer_stats.png",
        "first_steps_loss.png",
    ],
}
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
# Seconds per epoch (training and validation) of the PyTorch trainer on the 2-core development
# machine, from the README's speed section: [128] 0.75 s at the machine's fast speed,
# [512, 256, 128] 2.9 to 3.75 s (20-epoch runs of 58 to 75 s, mixing its two speeds). Per run,
# in one process (torch imported once): loading, the test set and the statistics, about 1.5 s.
SECONDS_PER_EPOCH = {(128,): 0.8, (512, 256, 128): 3.3}
SECONDS_PER_RUN = 1.5


# ---------------------------------------------------------------- settings and runs


def study_settings(study="default", **overrides):
    """The settings of `study` with `overrides` (None means: the study's default).

    Keys: study, architectures, lrs, seeds, epochs, batch_size, batch_norm, stats_images.
    """
    if study not in STUDIES:
        raise ValueError(f"study must be one of {', '.join(STUDIES)}, got {study!r}")
    unknown = set(overrides) - set(STUDIES[study])
    if unknown:
        raise ValueError(f"unknown study settings: {', '.join(sorted(unknown))}")
    settings = {"study": study, **STUDIES[study]}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    settings["architectures"] = [[int(h) for h in dims] for dims in settings["architectures"]]
    settings["lrs"] = [float(lr) for lr in settings["lrs"]]
    settings["seeds"] = [int(s) for s in settings["seeds"]]
    for name in ("architectures", "lrs", "seeds"):
        values = [str(v) for v in settings[name]]
        if not values or len(set(values)) != len(values):
            raise ValueError(f"{name} must be a non-empty list of different values, got {settings[name]}")
    if not isinstance(settings["stats_images"], int) or settings["stats_images"] < 1:
        raise ValueError(f"stats_images must be a positive integer, got {settings['stats_images']!r}")
    return settings


def planned_runs(settings):
    """The key fields of every run of the study. Seeds come first, so an interrupted study
    has whole seeds finished; the two arms of a pair follow each other."""
    return [
        {
            "hidden_dims": dims,
            "use_batch_norm": bn,
            "lr": lr,
            "seed": seed,
            "epochs": settings["epochs"],
            "batch_size": settings["batch_size"],
            "batch_norm": settings["batch_norm"],
            "stats_images": settings["stats_images"],
        }
        for seed in settings["seeds"]
        for dims in settings["architectures"]
        for lr in settings["lrs"]
        for bn in (False, True)
    ]


def run_key(run):
    return tuple(tuple(run[f]) if isinstance(run[f], list) else run[f] for f in KEY_FIELDS)


def study_runs(results):
    """The finished runs that belong to the file's study (its settings), in the study's order.

    A results file can hold more runs (other seeds or learning rates asked for earlier):
    they are kept for reuse but not drawn.
    """
    by_key = {run_key(run): run for run in results["runs"]}
    return [by_key[k] for k in map(run_key, planned_runs(results["settings"])) if k in by_key]


def _n_weights(hidden_dims):
    sizes = [cifar10_utils.N_FEATURES, *hidden_dims, cifar10_utils.N_CLASSES]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def estimate_minutes(runs):
    """Rough training time of `runs` on the 2-core development machine: an epoch's time grows
    linearly with the number of weights between the two measured architectures
    (SECONDS_PER_EPOCH), plus SECONDS_PER_RUN; diverged runs end sooner."""
    (small, t_small), (large, t_large) = ((_n_weights(d), t) for d, t in SECONDS_PER_EPOCH.items())
    total = 0.0
    for run in runs:
        epoch = t_small + (t_large - t_small) * (_n_weights(run["hidden_dims"]) - small) / (large - small)
        total += SECONDS_PER_RUN + run["epochs"] * max(epoch, 0.1)
    return total / 60


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
        and _valid_settings(results.get("settings"))
        and isinstance(results.get("runs"), list)
        and all(isinstance(run, dict) and RUN_FIELDS <= run.keys() for run in results["runs"])
    ):
        raise ValueError(
            f"{results_filename} is not a results file of this version of the batch-norm study "
            f"(files from before runs were keyed by lr and recorded layer_stats are not read); "
            f"move it away or use --fresh"
        )
    return results


def _valid_settings(settings):
    """Whether `settings` are what study_settings() makes (and so can be trained and drawn)."""
    try:
        return settings == study_settings(**settings)
    except (TypeError, ValueError, KeyError, AttributeError):
        return False


def check_results_path(results_filename):
    """ValueError, before any training, when the results file could not be written."""
    if os.path.isdir(results_filename):
        raise ValueError(f"results file {results_filename} is a directory")
    train_common.check_output_dir(os.path.dirname(os.path.abspath(results_filename)))


@contextlib.contextmanager
def results_lock(results_filename, wait=False):
    """Hold an exclusive fcntl.flock on RESULTS.lock (holding our pid) while training.

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


# ---------------------------------------------------------------- per-layer statistics


def layer_statistics(model, x, y):
    """Statistics of every layer of `model` on the batch (x, y); see the module docstring.

    Runs in train mode (batch norm uses the batch's statistics) and leaves the model as it
    was: mode, running statistics and parameter gradients (torch.autograd.grad does not
    write .grad).

    Returns:
        {"loss": float, "layers": [per hidden layer {"linear_std", "preact_mean", "preact_std",
        "dead_fraction", "zero_fraction", "weight_norm", "weight_grad_norm"}, ..., output
        {"linear_std", "weight_norm", "weight_grad_norm"}]} (Frobenius norms; stds over all
        the batch's values of the layer, samples and units together).
    """
    import torch
    from torch import nn

    was_training = model.training
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    model.train()
    try:
        with torch.enable_grad():
            h, layers, linears = x.reshape(len(x), -1), [], []
            for module in model.layers:
                out = module(h)
                if isinstance(module, nn.Linear):
                    layers.append({"linear_std": out.detach().std(correction=0)})
                    linears.append(module)
                elif isinstance(module, nn.ReLU):
                    pre = h.detach()  # the ReLU's input: after batch norm where there is one
                    layers[-1].update(
                        preact_mean=pre.mean(),
                        preact_std=pre.std(correction=0),
                        dead_fraction=(pre <= 0).all(dim=0).float().mean(),
                        zero_fraction=(out == 0).float().mean(),
                    )
                h = out
            loss = nn.functional.cross_entropy(h, y)
            grads = torch.autograd.grad(loss, [linear.weight for linear in linears])
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        model.train(was_training)
    for layer, linear, grad in zip(layers, linears, grads, strict=True):
        layer["weight_norm"] = linear.weight.detach().norm()
        layer["weight_grad_norm"] = grad.norm()
    return {
        "loss": loss.item(),
        "layers": [{k: v.item() for k, v in layer.items()} for layer in layers],
    }


def weights_fingerprint(model):
    """A short hash of the Linear layers' weights and biases: equal for the two arms of a pair."""
    digest = hashlib.sha256()
    for linear in model.linears():
        for p in (linear.weight, linear.bias):
            digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class LayerStatistics:
    """The study's epoch_callback: layer_statistics() on a fixed batch at every call.

    The batch (the first n_images validation images, normalised as for training) is read
    on the first call and kept for every later run of the study. new_run() starts a run's
    record; after training, record() gives its layer_stats and init_fingerprint.
    """

    def __init__(self, data_dir, n_images):
        self.data_dir, self.n_images, self._batch = data_dir, n_images, None
        self.new_run()

    def new_run(self):
        self.calls, self.fingerprint = [], None

    def fixed_batch(self, device):
        if self._batch is None:
            # only the validation split goes to the device, and it runs in order: the first images
            validation = cifar10_utils.get_cifar10(self.data_dir)["validation"]
            self._batch = next(iter(cifar10_utils.DeviceLoader(validation, self.n_images, device)))
        return tuple(t.to(device) for t in self._batch)

    def __call__(self, model, epoch):
        x, y = self.fixed_batch(model.device)
        if epoch == 0:
            self.fingerprint = weights_fingerprint(model)
        self.calls.append((epoch, layer_statistics(model, x, y)))

    def record(self):
        """{"layer_stats": {"images", "epochs", "loss", "layers": [{stat: [per epoch]}]},
        "init_fingerprint"}."""
        layers = []
        for i in range(len(self.calls[0][1]["layers"]) if self.calls else 0):
            names = self.calls[0][1]["layers"][i]
            layers.append({name: [stats["layers"][i][name] for _, stats in self.calls] for name in names})
        return {
            "layer_stats": {
                "images": len(self._batch[1]) if self._batch else 0,
                "epochs": [epoch for epoch, _ in self.calls],
                "loss": [stats["loss"] for _, stats in self.calls],
                "layers": layers,
            },
            "init_fingerprint": self.fingerprint,
        }


# ---------------------------------------------------------------- training


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
            after each run; the runs it already holds are reused, whatever study made them.
        data_dir: CIFAR-10 directory (default: $CIFAR10_DATA_DIR if set, else data/).
        fresh: ignore (and replace) an existing results file.
        study: "default" or "extended" (STUDIES).
        wait: when another process trains into this file, wait for it instead of refusing.
        settings: overrides of the study's architectures, lrs, seeds, epochs, batch_size,
            batch_norm, stats_images.

    Returns:
        The results dict: {'settings', 'runs': [...]}, the runs of the file (this study's
        and any others it held).
    """
    from train_mlp_pytorch import train  # torch is needed to train, not to plot

    if data_dir is None:
        data_dir = cifar10_utils.default_data_dir()
    settings = study_settings(study, **settings)
    for dims in settings["architectures"]:
        for lr in settings["lrs"]:
            train_common.check_hyperparameters(dims, lr, settings["batch_size"], settings["epochs"])
    check_results_path(results_filename)
    with results_lock(results_filename, wait):
        results = {"settings": settings, "runs": []}
        if os.path.exists(results_filename) and not fresh:
            earlier = load_results(results_filename)
            results["runs"] = earlier["runs"]
            if earlier["settings"] != settings:  # the file says which study its figures show
                train_common.write_json(results_filename, results)
        done = {run_key(run) for run in results["runs"]}
        todo = [run for run in planned_runs(settings) if run_key(run) not in done]
        if progress and todo:
            tqdm.write(
                f"{len(todo)} runs to train, {len(planned_runs(settings)) - len(todo)} found in "
                f"{results_filename} (about {estimate_minutes(todo):.0f} min on 2 CPU cores)"
            )
        statistics = LayerStatistics(data_dir, settings["stats_images"])
        for run in tqdm(todo, desc="batch-norm study", disable=not progress):
            statistics.new_run()
            start = time.perf_counter()
            _, _, test_accuracy, info = train(
                run["hidden_dims"],
                run["lr"],
                run["use_batch_norm"],
                run["batch_size"],
                run["epochs"],
                run["seed"],
                data_dir,
                device=device,
                progress=progress,
                log_epochs=False,
                epoch_callback=statistics,
                batch_norm=run["batch_norm"],
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
            results["runs"].append(json.loads(json.dumps(record), parse_constant=lambda _: None))
            train_common.write_json(results_filename, results)
            if progress:
                tqdm.write(f"{_run_label(run)}: {_outcome(results['runs'][-1])}")
    return results


def _outcome(run):
    if run["diverged"]:
        at = run["diverged_at"]
        return f"diverged at epoch {at['epoch']}, step {at['step']} (loss not finite), recorded as such"
    return f"test accuracy {run['test_accuracy']:.4f}"


def _run_label(run):
    return f"{_label(run['hidden_dims'], run['use_batch_norm'])}, lr {run['lr']:g}, seed {run['seed']}"


def _label(hidden_dims, use_batch_norm):
    return f"{list(hidden_dims)} {'with' if use_batch_norm else 'without'} batch norm"


# ---------------------------------------------------------------- statistics

# t(0.975, df) of Student's t distribution for df = 1..30, the two-sided 95 % quantile, to four
# decimals (any statistics table; the tests check each against an integral of the t density).
T975 = (
    *(12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281),
    *(2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860),
    *(2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423),
)


def t_quantile_975(df):
    """t(0.975, df): the table up to df 30, beyond it the Cornish-Fisher expansion in 1/df
    around the normal quantile (error below 2e-4 there). scipy is not a dependency."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values):
    """(mean, half-width of the 95 % t confidence interval of the mean); half-width None for n < 2."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), None
    half = t_quantile_975(len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def _finished(run):
    return not run["diverged"] and run["test_accuracy"] is not None


def paired_differences(runs, settings):
    """Per configuration (architecture x lr): the paired BN - no BN test-accuracy differences.

    Returns (rows, pooled). Each row: dims, lr; arms {False: [...], True: [...]}, the test
    accuracies of each arm's finished runs; diffs, seeds (the pairs with both arms finished),
    mean, half (half-width of the 95 % CI); diverged {"no BN": [seeds], "BN": [seeds]};
    missing (seeds with an arm not trained yet). pooled: for each seed, the mean difference
    over the configurations where every seed has both arms finished; then the mean and CI of
    those per-seed means; pooled["excluded"] lists the rows left out.
    """
    by_key = {(tuple(r["hidden_dims"]), r["lr"], r["use_batch_norm"], r["seed"]): r for r in runs}
    rows = []
    for dims in map(tuple, settings["architectures"]):
        for lr in settings["lrs"]:
            row = {"dims": dims, "lr": lr, "arms": {False: [], True: []}, "diffs": [], "seeds": []}
            row["diverged"], row["missing"] = {"no BN": [], "BN": []}, []
            for seed in settings["seeds"]:
                arms = [by_key.get((dims, lr, bn, seed)) for bn in (False, True)]
                if None in arms:
                    row["missing"].append(seed)
                for bn, arm in enumerate(arms):
                    if arm is not None and _finished(arm):
                        row["arms"][bool(bn)].append(arm["test_accuracy"])
                    elif arm is not None:
                        row["diverged"]["BN" if bn else "no BN"].append(seed)
                if all(arm is not None and _finished(arm) for arm in arms):
                    row["diffs"].append(arms[1]["test_accuracy"] - arms[0]["test_accuracy"])
                    row["seeds"].append(seed)
            row["mean"], row["half"] = mean_ci(row["diffs"]) if row["diffs"] else (None, None)
            rows.append(row)
    complete = [r for r in rows if len(r["seeds"]) == len(settings["seeds"])]
    per_seed = np.array([r["diffs"] for r in complete]).mean(axis=0) if complete else np.array([])
    pooled = {
        "configurations": len(complete),
        "excluded": [r for r in rows if len(r["seeds"]) != len(settings["seeds"])],
        "per_seed": per_seed.tolist(),
    }
    pooled["mean"], pooled["half"] = mean_ci(per_seed) if len(per_seed) else (None, None)
    return rows, pooled


# ---------------------------------------------------------------- tables


def command_line(settings, results_filename):
    """The command that trains (or resumes, or redraws) this study into results_filename."""
    study = settings["study"]
    defaults = STUDIES[study]
    words = ["python", "compare_batch_norm.py"]
    if study != "default":
        words += ["--study", study]
    for name, flag in (("seeds", "--seeds"), ("lrs", "--lrs")):
        if settings[name] != defaults[name]:
            words += [flag, *(f"{v:g}" if isinstance(v, float) else str(v) for v in settings[name])]
    if settings["epochs"] != defaults["epochs"]:
        words += ["--epochs", str(settings["epochs"])]
    path = os.path.relpath(os.path.abspath(results_filename))
    if path.startswith(os.pardir):
        path = os.path.abspath(results_filename)
    if path != DEFAULT_RESULTS[study]:
        words += ["--results", path]
    return " ".join(words)


def _made_by(results, results_filename):
    """The first lines of every table: the command that made it, and how complete the study is."""
    settings = results["settings"]
    runs = study_runs(results)
    n_planned = len(planned_runs(settings))
    line = f"Made by `{command_line(settings, results_filename)}`"
    others = {k: settings[k] for k in ("architectures", "batch_size", "batch_norm", "stats_images")}
    others = {k: v for k, v in others.items() if v != STUDIES[settings["study"]][k]}
    if others:  # settings the command line does not offer (the tests' tiny studies)
        line += " with `train_models(" + ", ".join(f"{k}={v!r}" for k, v in others.items()) + ")`"
    if len(runs) < n_planned:
        line += f" ({len(runs)} of its {n_planned} runs finished so far)"
    devices = ", ".join(sorted({run.get("device", "?") for run in runs}))
    return (
        f"{line}: {settings['epochs']} epoch{'s' if settings['epochs'] > 1 else ''}, batch size "
        f"{settings['batch_size']}, seeds {', '.join(map(str, settings['seeds']))}; trained on {devices}.\n\n"
    )


def _fmt(value, signed=False):
    return "—" if value is None or not np.isfinite(value) else f"{value:+.4f}" if signed else f"{value:.4f}"


def _ci_cell(mean, half):
    return "—" if half is None else f"[{_fmt(mean - half, True)}, {_fmt(mean + half, True)}]"


def _seeds(seeds):
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def paired_table(results, results_filename):
    """paired_differences.md: per configuration and pooled, with the command at the top."""
    settings = results["settings"]
    rows, pooled = paired_differences(study_runs(results), settings)
    lines = [
        _made_by(results, results_filename)
        + "Test accuracy of each run's best epoch (by validation accuracy). Without / with BN: the "
        "mean over that arm's finished runs. BN − no BN: the mean over the seeds whose two arms both "
        "finished of the paired difference (for a seed both arms start from the same Linear weights "
        "and see the same batches), and its 95 % CI: mean ± t(0.975, n − 1) · s / √n over the n "
        "pairs, s the sample standard deviation of the differences; none for n = 1. A diverged arm "
        "(loss not finite) has no number and its pair is left out.\n",
        "| hidden layers | lr | pairs | without BN | with BN | BN − no BN | 95 % CI | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        notes = [f"{arm} diverged ({_seeds(s)})" for arm, s in r["diverged"].items() if s]
        if r["missing"]:
            notes.append(f"not trained yet ({_seeds(r['missing'])})")
        cells = []
        for bn, name in ((False, "no BN"), (True, "BN")):
            values, n_diverged = r["arms"][bn], len(r["diverged"][name])
            if not values:
                cells.append("diverged" if n_diverged else "—")
            else:
                partial = f" ({len(values)} of {len(values) + n_diverged} runs)" if n_diverged else ""
                cells.append(_fmt(np.mean(values)) + partial)
        lines.append(
            f"| {list(r['dims'])} | {r['lr']:g} | {len(r['diffs'])} | {cells[0]} | {cells[1]} | "
            f"{_fmt(r['mean'], True)} | {_ci_cell(r['mean'], r['half'])} | {'; '.join(notes)} |"
        )
    p = pooled
    lines.append(
        f"| pooled | all | {len(p['per_seed'])} seeds | | | {_fmt(p['mean'], True)} | "
        f"{_ci_cell(p['mean'], p['half'])} | |"
    )
    excluded = ", ".join(f"{list(r['dims'])} at lr {r['lr']:g}" for r in p["excluded"]) or "none"
    lines.append(
        f"\nPooled: for each seed, the mean of its differences over the {p['configurations']} "
        f"configurations where every seed has both arms finished; then the mean and 95 % CI of "
        f"those {len(p['per_seed'])} per-seed means (df = {max(len(p['per_seed']) - 1, 0)}), so that "
        f"configurations sharing a seed do not count as independent. "
        f"Left out ({len(p['excluded'])}, a diverged or untrained arm): {excluded}.\n"
    )
    return "\n".join(lines)


def accuracy_table(results, results_filename):
    """test_accuracy.md of the default study: one row per architecture x batch norm (at each lr)."""
    settings = results["settings"]
    lines = [
        _made_by(results, results_filename)
        + "Mean ± sample standard deviation over seeds (none for one seed); test accuracy of each "
        "run's best epoch by validation accuracy.\n",
        "| hidden layers | batch norm | lr | seeds | test accuracy | best val. accuracy | "
        "last-epoch train accuracy | diverged | wall time per run (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (dims, lr, bn), runs in _groups(study_runs(results), settings).items():
        ok = [r for r in runs if _finished(r)]
        test = [r["test_accuracy"] for r in ok]
        spread = f" ± {np.std(test, ddof=1):.4f}" if len(test) > 1 else ""
        lines.append(
            f"| {list(dims)} | {'yes' if bn else 'no'} | {lr:g} | {len(runs)} | "
            f"{_fmt(np.mean(test)) if test else '—'}{spread} | "
            f"{_fmt(np.mean([max(r['val_accuracy']) for r in ok])) if ok else '—'} | "
            f"{_fmt(np.mean([r['train_accuracy'][-1] for r in ok])) if ok else '—'} | "
            f"{len(runs) - len(ok)} | {np.mean([r['wall_time'] for r in runs]):.1f} |"
        )
    return "\n".join(lines) + "\n"


def sweep_table(results, results_filename):
    """lr_sweep.md of the extended study: one row per architecture x batch norm x lr."""
    settings = results["settings"]
    lines = [
        _made_by(results, results_filename)
        + "Over the seeds whose run did not diverge: last-epoch training accuracy (mean over the "
        "epoch's batches) and validation accuracy (mean, and min to max over seeds), their gap, "
        "and the test accuracy of each run's best epoch (mean ± sample standard deviation).\n",
        "| hidden layers | batch norm | lr | seeds | diverged | last train acc. | last val. acc. "
        "(min–max) | train − val | test accuracy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (dims, lr, bn), runs in _groups(study_runs(results), settings).items():
        ok = [r for r in runs if _finished(r)]
        if ok:
            train = np.mean([r["train_accuracy"][-1] for r in ok])
            val = np.array([r["val_accuracy"][-1] for r in ok])
            test = [r["test_accuracy"] for r in ok]
            spread = f" ± {np.std(test, ddof=1):.4f}" if len(test) > 1 else ""
            cells = (
                f"{train:.4f} | {val.mean():.4f} ({val.min():.4f}–{val.max():.4f}) | "
                f"{train - val.mean():+.4f} | {np.mean(test):.4f}{spread}"
            )
        else:
            cells = "— | — | — | —"
        lines.append(
            f"| {list(dims)} | {'yes' if bn else 'no'} | {lr:g} | {len(runs)} | "
            f"{len(runs) - len(ok)} | {cells} |"
        )
    return "\n".join(lines) + "\n"


def _groups(runs, settings):
    """{(architecture, lr, batch norm): [runs over seeds]} in the study's order, empty ones left out."""
    groups = {}
    for dims in map(tuple, settings["architectures"]):
        for lr in settings["lrs"]:
            for bn in (False, True):
                found = [
                    r
                    for r in runs
                    if (tuple(r["hidden_dims"]), r["lr"], r["use_batch_norm"]) == (dims, lr, bn)
                ]
                if found:
                    groups[dims, lr, bn] = found
    return groups


# ---------------------------------------------------------------- figures


def _padded(curves, length):
    """Lists of different lengths (diverged runs stop early; null is NaN) as a (runs, length) array."""
    out = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        values = np.array(curve[:length], dtype=float)
        out[i, : len(values)] = values
    return out


def _band(ax, x, curves, color, ls, label, marker="o"):
    """Mean over seeds as a line with markers, and a band from the lowest to the highest seed."""
    curves = _padded(curves, len(x))
    with warnings.catch_warnings():  # an all-NaN column (every seed diverged) is a gap, not news
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(curves, axis=0)
        low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
    ax.plot(x, mean, color=color, ls=ls, marker=marker, ms=4, label=label)
    if len(curves) > 1:
        ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0)


def _style(dims, bn, architectures):
    color = COLORS[[tuple(a) for a in architectures].index(tuple(dims)) % len(COLORS)]
    return color, "-" if bn else "--", "o" if bn else "s"


def _seeds_note(settings):
    n = len(settings["seeds"])
    return f"mean of {n} seeds, band: min to max" if n > 1 else "one seed"


def _figure_lr(settings):
    """FIGURE_LR when the study has it, else its learning rate nearest to it on a log scale."""
    return min(settings["lrs"], key=lambda lr: abs(math.log(lr / FIGURE_LR)))


def _integer_epochs(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def curves_figure(runs, settings, key, ylabel, lr):
    """train_accuracy.png / val_accuracy.png of the default study: one curve per architecture x BN."""
    fig = train_common.new_figure(figsize=(8, 5))
    ax = fig.subplots()
    for (dims, run_lr, bn), group in _groups(runs, settings).items():
        if run_lr == lr:
            color, ls, marker = _style(dims, bn, settings["architectures"])
            epochs = np.arange(1, settings["epochs"] + 1)
            _band(ax, epochs, [r[key] for r in group], color, ls, _label(dims, bn), marker)
    ax.set(
        xlabel="epoch",
        ylabel=ylabel,
        title=f"{ylabel.split(' (')[0].capitalize()}, lr {lr:g} ({_seeds_note(settings)})",
    )
    _integer_epochs(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def accuracy_dot_figure(runs, settings, lr):
    """test_accuracy.png: each seed's test accuracy as a dot, the mean ± one standard deviation."""
    fig = train_common.new_figure(figsize=(8, 4.5))
    ax = fig.subplots()
    architectures = [tuple(a) for a in settings["architectures"]]
    groups = _groups(runs, settings)
    for j, bn in enumerate((False, True)):
        color = "tab:gray" if not bn else "tab:blue"
        label = "with batch norm" if bn else "without batch norm"
        for i, dims in enumerate(architectures):
            test = [r["test_accuracy"] for r in groups.get((dims, lr, bn), []) if _finished(r)]
            if not test:
                continue
            x = i + (j - 0.5) * 0.3
            ax.plot([x] * len(test), test, ".", color=color, alpha=0.5, ms=7)
            std = np.std(test, ddof=1) if len(test) > 1 else None
            ax.errorbar(x, np.mean(test), yerr=std, fmt="o", ms=8, capsize=5, color=color, label=label)
            label = None
    ax.set_xticks(range(len(architectures)), [str(list(d)) for d in architectures])
    ax.set_xlim(-0.6, len(architectures) - 0.4)
    spread = "mean ± one standard deviation over seeds, small dots: single seeds"
    ax.set(
        xlabel="hidden layers",
        ylabel="test accuracy",
        title=f"Test accuracy (best epoch by validation), lr {lr:g}\n"
        + (spread if len(settings["seeds"]) > 1 else "one seed"),
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    return fig


def lr_sweep_figure(runs, settings):
    """lr_sweep.png: last-epoch validation accuracy against lr; diverged runs as crosses in a
    strip at the bottom of the axes, one row per curve, with the number of diverged seeds."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    fig = train_common.new_figure(figsize=(8, 6.5))
    ax = fig.subplots()
    lrs = np.array(settings["lrs"])
    groups = _groups(runs, settings)
    strip = ax.get_xaxis_transform()  # x in data (lr), y in axes fraction (0: the bottom)
    crosses, curve = [], 0
    for dims in map(tuple, settings["architectures"]):
        for bn in (False, True):
            if not any(groups.get((dims, lr, bn)) for lr in lrs):
                continue
            color, ls, marker = _style(dims, bn, settings["architectures"])
            per_seed = [
                [
                    next(
                        (
                            r["val_accuracy"][-1]
                            for r in groups.get((dims, lr, bn), [])
                            if r["seed"] == seed and _finished(r)
                        ),
                        np.nan,
                    )
                    for lr in lrs
                ]
                for seed in settings["seeds"]
            ]
            _band(ax, lrs, per_seed, color, ls, _label(dims, bn), marker)
            y = 0.04 + 0.045 * curve
            curve += 1
            for lr in lrs:
                n = sum(not _finished(r) for r in groups.get((dims, lr, bn), []))
                if n:
                    crosses.append(ax.plot(lr, y, "x", color=color, ms=9, mew=2, transform=strip)[0])
                    ax.annotate(
                        str(n),
                        (lr, y),
                        xycoords=strip,
                        xytext=(6, -4),
                        textcoords="offset points",
                        color=color,
                    )
    low, high = ax.get_ylim()
    if low < 0.15:
        ax.axhline(0.1, color="k", lw=0.8, ls=":", label="chance (0.1)")
    if crosses:  # a grey strip below the lowest curve, without y ticks: its height means nothing
        top = 0.02 + 0.045 * curve
        bottom = low - top * (high - low) / (1 - top)
        ax.set_ylim(bottom, high)
        ax.set_yticks([t for t in ax.get_yticks() if low <= t <= high])
        ax.set_ylim(bottom, high)
        ax.add_patch(Rectangle((0, 0), 1, top, transform=ax.transAxes, color="0.92", zorder=0, lw=0))
        ax.text(0.01, top / 2, "diverged", transform=ax.transAxes, va="center", color="0.35")
    ax.set_xscale("log")
    ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
    ax.minorticks_off()
    ax.set(
        xlabel="learning rate (log scale)",
        ylabel=f"validation accuracy after epoch {settings['epochs']}",
        title=f"Validation accuracy against learning rate\n({_seeds_note(settings)}; diverged runs left out)",
    )
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if crosses:
        handles.append(Line2D([], [], color="k", marker="x", ls="none", ms=9, mew=2))
        labels.append("diverged (loss not finite): × with the number of seeds")
    fig.legend(handles, labels, fontsize=9, loc="lower center", ncol=2)
    fig.tight_layout(rect=(0, 0.01 + 0.032 * ((len(labels) + 1) // 2), 1, 1))
    return fig


def val_panels_figure(runs, settings):
    """val_accuracy.png of the extended study: validation accuracy per epoch, one panel per lr."""
    n = len(settings["lrs"])
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = train_common.new_figure(figsize=(4 * cols, 3.6 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    groups = _groups(runs, settings)
    epochs = np.arange(1, settings["epochs"] + 1)
    for ax, lr in zip(axes, settings["lrs"], strict=False):
        for (dims, run_lr, bn), group in groups.items():
            if run_lr == lr:
                color, ls, marker = _style(dims, bn, settings["architectures"])
                _band(ax, epochs, [r["val_accuracy"] for r in group], color, ls, _label(dims, bn), marker)
        ax.set(title=f"lr {lr:g}", xlabel="epoch")
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("validation accuracy")
    legend = {}  # every curve once, also one missing from the first panel
    for ax in axes[:n]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=2, fontsize=9)
    fig.suptitle(f"Validation accuracy per epoch ({_seeds_note(settings)}; a diverged run ends early)")
    fig.tight_layout(rect=(0, 0.08 if rows == 1 else 0.05, 1, 1))
    return fig


LAYER_PANELS = (
    ("preact_std", "pre-activation std (ReLU input)", "log"),
    ("dead_fraction", "fraction of dead ReLUs", "linear"),
    ("zero_fraction", "fraction of zero activations", "linear"),
    ("weight_grad_norm", "weight-gradient norm", "log"),
)


def layer_stats_figure(runs, settings, lr):
    """layer_stats.png: per-layer statistics over epochs for the deepest network, BN vs no BN."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    dims = max(settings["architectures"], key=len)
    fig = train_common.new_figure(figsize=(11, 8))
    axes = fig.subplots(2, 2).ravel()
    epochs = np.arange(settings["epochs"] + 1)
    for ax, (stat, ylabel, scale) in zip(axes, LAYER_PANELS, strict=True):
        n_layers = len(dims) + (stat == "weight_grad_norm")  # the output Linear has a gradient, no ReLU
        for i in range(n_layers):
            name = f"layer {i + 1}" if i < len(dims) else "output layer"
            for bn in (False, True):
                curves = [
                    r["layer_stats"]["layers"][i][stat]
                    for r in runs
                    if (r["hidden_dims"], r["lr"], r["use_batch_norm"]) == (dims, lr, bn)
                    and r["layer_stats"]["layers"]  # none when train() never called back
                ]
                if curves:
                    label = f"{name}, {'with' if bn else 'without'} BN"
                    _band(ax, epochs, curves, COLORS[i], "-" if bn else "--", label, "o" if bn else "s")
        ax.set(xlabel="epoch (0: initialisation)", ylabel=ylabel, yscale=scale)
        if stat == "dead_fraction":  # from 0 to at least 5 %: one dead unit must not fill the axis
            ax.set_ylim(0, max(0.05, ax.get_ylim()[1]))
        if scale == "log":  # ticks at 1, 2, 5 x 10^k, written as plain numbers
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
    handles, labels = axes[-1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9)
    images = next((r["layer_stats"]["images"] for r in runs if r["layer_stats"]["layers"]), 0)
    fig.suptitle(
        f"{list(dims)} at lr {lr:g}: statistics on the first {images} validation images, in train mode\n"
        f"({_seeds_note(settings)}; solid: with batch norm, dashed: without)"
    )
    fig.tight_layout(rect=(0, 0.03 + 0.03 * (-(-len(labels) // 4)), 1, 1))
    return fig


def first_steps_figure(runs, settings, lr):
    """first_steps_loss.png: the training loss of the first FIRST_STEPS steps, step by step."""
    fig = train_common.new_figure(figsize=(8, 5))
    ax = fig.subplots()
    for (dims, run_lr, bn), group in _groups(runs, settings).items():
        if run_lr == lr:
            color, ls, _ = _style(dims, bn, settings["architectures"])
            curves = [r["first_steps_loss"] for r in group]
            steps = np.arange(1, max(map(len, curves)) + 1)
            _band(ax, steps, curves, color, ls, _label(dims, bn), marker=None)
    ax.set(
        xlabel="training step (batch)",
        ylabel="training loss of the batch (cross-entropy)",
        title=f"The first {FIRST_STEPS} steps at lr {lr:g} ({_seeds_note(settings)})",
    )
    _integer_epochs(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


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
    lr = _figure_lr(settings)
    figures, tables = {}, {"paired_differences.md": paired_table(results, results_filename)}
    if settings["study"] == "default":
        figures["train_accuracy.png"] = curves_figure(
            runs, settings, "train_accuracy", "training accuracy (mean over the epoch's batches)", lr
        )
        figures["val_accuracy.png"] = curves_figure(runs, settings, "val_accuracy", "validation accuracy", lr)
        figures["test_accuracy.png"] = accuracy_dot_figure(runs, settings, lr)
        tables["test_accuracy.md"] = accuracy_table(results, results_filename)
    else:
        figures["lr_sweep.png"] = lr_sweep_figure(runs, settings)
        figures["val_accuracy.png"] = val_panels_figure(runs, settings)
        tables["lr_sweep.md"] = sweep_table(results, results_filename)
    figures["layer_stats.png"] = layer_stats_figure(runs, settings, lr)
    figures["first_steps_loss.png"] = first_steps_figure(runs, settings, lr)
    writers = {
        os.path.join(figure_dir, name): train_common.png_writer(fig, dpi=100) for name, fig in figures.items()
    }
    for name, text in tables.items():
        writers[os.path.join(figure_dir, name)] = _bytes_writer(text.encode())
    writers = {
        path: writers[path] for path in (os.path.join(figure_dir, n) for n in FIGURES[settings["study"]])
    }
    train_common.atomic_write_all(writers)
    return list(writers)


def _bytes_writer(data):
    return lambda f: f.write(data)


# ---------------------------------------------------------------- command line


def main():
    paragraphs = __doc__.split("\n\n")  # title, usage, the two studies, how runs are kept, ...
    parser = train_common.OneLineParser(
        description=f"{paragraphs[0]}\n\n{paragraphs[2]}",
        epilog=paragraphs[3],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--study",
        default="default",
        choices=list(STUDIES),
        help="which study to train and draw (default: %(default)s)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds per configuration (default: the study's)")
    parser.add_argument("--lrs", type=float, nargs="+", help="learning rates (default: the study's)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: 20, extended 8)")
    parser.add_argument(
        "--data_dir",
        default=cifar10_utils.default_data_dir(),
        help="directory holding cifar-10-batches-py/ (default: $CIFAR10_DATA_DIR if set, else data/)",
    )
    parser.add_argument(
        "--results",
        default=None,
        help=f"results JSON, read then extended (default: {DEFAULT_RESULTS['default']}, "
        f"extended {DEFAULT_RESULTS['extended']})",
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
    args = parser.parse_args()
    if args.plot_only and args.fresh:
        parser.error("--plot_only and --fresh exclude each other")
    results = args.results or DEFAULT_RESULTS[args.study]
    figure_dir = args.figure_dir or os.path.dirname(os.path.abspath(results))
    # checked now, not when the first figure is written after the whole study
    train_common.check_output_dir(figure_dir, sorted({name for names in FIGURES.values() for name in names}))
    if not args.plot_only:
        train_models(
            results,
            data_dir=args.data_dir,
            fresh=args.fresh,
            progress=not args.no_progress,
            device=args.device,
            study=args.study,
            wait=args.wait,
            seeds=args.seeds,
            lrs=args.lrs,
            epochs=args.epochs,
        )
    paths = plot_results(results, figure_dir)
    where = args.figure_dir or os.path.dirname(results) or os.curdir
    print(f"results in {results}; figures and tables in {where}: {', '.join(map(os.path.basename, paths))}")


if __name__ == "__main__":
    train_common.run_cli(main)

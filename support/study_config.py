"""The batch-norm studies as data: each study's settings, the runs they plan, and how a run is keyed.

A study is an entry of STUDIES. Its list settings are the axes that AXES names: planned_runs
trains one run per combination of their values. Every other setting is shared by all its runs.
Adding a study is adding an entry (and, for a new axis, a line of AXES and of KEY_FIELDS).
"""

import itertools
import os

from cifar10_utils import N_CLASSES, N_FEATURES
from support import checks

ARCHITECTURES = [[128], [256, 128], [512, 256, 128]]
# What each study trains unless told otherwise. "norms": each run's normalisation ("none",
# "batch", "layer"); "batch_norm" the trainer's batch-norm implementation (nn.BatchNorm1d);
# "stats_images" the size of the fixed batch the layer statistics use.
STUDIES = {
    "default": {
        "architectures": ARCHITECTURES,
        "lrs": [0.1],
        "seeds": [42],
        "norms": ["none", "batch"],
        "epochs": 20,
        "batch_size": 128,
        "batch_norm": "torch",
        "stats_images": 500,
    },
    "extended": {
        "architectures": [[128], [512, 256, 128]],
        "lrs": [0.01, 0.03, 0.1, 0.3, 1.0],
        "seeds": [42, 43, 44],
        "norms": ["none", "batch"],
        # 8 epochs keep the 60 runs near 18 minutes on 2 CPU cores (estimate_minutes), and in the
        # 20-epoch study at lr 0.1 validation accuracy after epoch 8 was 0.4 to 2.2 points (mean
        # 1.3) below each run's best.
        "epochs": 8,
        "batch_size": 128,
        "batch_norm": "torch",
        "stats_images": 500,
    },
    # CS231n's batch-size experiment, layer norm the arm that does not depend on the batch. The lr
    # scales linearly with the batch (0.1 at 128, "lr_reference_batch"); every run sees the same
    # 4 epochs of images. 4 epochs keep the 54 runs within the hour on 2 CPU cores: batch 8 takes
    # about 3x the time of an epoch at 128 (5,625 small steps); see docs/batch_norm_report.md.
    "batch_size": {
        "architectures": [[512, 256, 128]],
        "lrs": [0.1],
        "lr_reference_batch": 128,
        "seeds": [42, 43, 44],
        "batch_sizes": [8, 16, 32, 64, 128, 256],
        "norms": ["none", "batch", "layer"],
        "epochs": 4,
        "batch_norm": "torch",
        "stats_images": 500,
    },
    # CS231n's weight-scale experiment: every Linear's initial std a multiple of Kaiming's,
    # 10^-2 .. 10^1 in half decades. 5 epochs: 42 runs in about 15 minutes on 2 CPU cores.
    "init_scale": {
        "architectures": [[512, 256, 128]],
        "lrs": [0.1],
        "seeds": [42, 43, 44],
        "init_scales": [0.01, 0.0316, 0.1, 0.316, 1.0, 3.16, 10.0],
        "norms": ["none", "batch"],
        "epochs": 5,
        "batch_size": 128,
        "batch_norm": "torch",
        "stats_images": 500,
    },
}
SWEEP_STUDIES = ("batch_size", "init_scale")  # drawn by support/study_sweeps.py
DEFAULT_RESULTS = {
    "default": os.path.join("results", "batch_norm", "results.json"),
    "extended": os.path.join("results", "batch_norm_extended", "results.json"),
    "batch_size": os.path.join("results", "batch_norm_batch_size", "results.json"),
    "init_scale": os.path.join("results", "batch_norm_init_scale", "results.json"),
}
# The list settings a study varies -> the run field each value goes to, outermost first: seeds
# first, so an interrupted study has whole seeds finished; norms last, so the arms of a pair
# (same seed, same weights, same batches) follow each other.
AXES = {
    "seeds": "seed",
    "architectures": "hidden_dims",
    "lrs": "lr",
    "batch_sizes": "batch_size",
    "init_scales": "init_scale",
    "norms": "norm",
}
NORMS = {"none": "without batch norm", "batch": "with batch norm", "layer": "with layer norm"}
# The settings a run is keyed by: two runs that agree on all of them are the same run.
KEY_FIELDS = (
    "hidden_dims",
    "use_batch_norm",
    "norm",
    "lr",
    "seed",
    "epochs",
    "batch_size",
    "init_scale",
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
TIMING_FIELDS = ("wall_time", "epoch_time")  # what differs between two trainings of the same run
FIRST_STEPS = 50  # the steps whose loss is kept one by one (the early jump happens there)
# Seconds per epoch (training and validation) of the PyTorch trainer on the 2-core development
# machine: [128] 0.75 s at the machine's fast speed, [512, 256, 128] 2.9 to 3.75 s (20-epoch runs
# of 58 to 75 s, mixing its two speeds). Per run, in one process (torch imported once): loading,
# the test set and the statistics, about 1.5 s.
SECONDS_PER_EPOCH = {(128,): 0.8, (512, 256, 128): 3.3}
SECONDS_PER_RUN = 1.5


def study_settings(study="default", **overrides):
    """The settings of `study` with `overrides` (None means: the study's default).

    Keys: study, and those of STUDIES[study] (architectures, lrs, seeds, norms, epochs,
    batch_size, batch_norm, stats_images).
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
    if "init_scales" in settings:
        settings["init_scales"] = [float(v) for v in settings["init_scales"]]
    settings["seeds"] = [int(s) for s in settings["seeds"]]
    for name in AXES.keys() & settings.keys():
        values = [str(v) for v in settings[name]]
        if not values or len(set(values)) != len(values):
            raise ValueError(f"{name} must be a non-empty list of different values, got {settings[name]}")
    if not set(settings["norms"]) <= NORMS.keys():
        raise ValueError(f"norms must be among {', '.join(NORMS)}, got {settings['norms']}")
    if not isinstance(settings["stats_images"], int) or settings["stats_images"] < 1:
        raise ValueError(f"stats_images must be a positive integer, got {settings['stats_images']!r}")
    return settings


def planned_runs(settings):
    """The key fields of every run of the study, in its order (AXES: seeds outermost, the
    arms of a pair one after the other). Index K of this list is run K of --list and --task."""
    axes = [name for name in AXES if name in settings]
    shared = {k: v for k, v in settings.items() if k in KEY_FIELDS}
    runs = []
    for values in itertools.product(*(settings[name] for name in axes)):
        run = {**shared, **{AXES[name]: value for name, value in zip(axes, values, strict=True)}}
        run["use_batch_norm"] = run["norm"] == "batch"
        run.setdefault("init_scale", 1.0)
        if "lr_reference_batch" in settings:  # the lr grows with the batch, linearly
            run["lr"] = run["lr"] * run["batch_size"] / settings["lr_reference_batch"]
        runs.append({field: run[field] for field in KEY_FIELDS})
    return runs


def run_key(run):
    return tuple(tuple(run[f]) if isinstance(run[f], list) else run[f] for f in KEY_FIELDS)


def train_arguments(run):
    """The keywords of train_mlp_pytorch.train for a planned run (data, device and progress aside)."""
    arguments = {k: run[k] for k in ("hidden_dims", "lr", "use_batch_norm", "batch_size", "epochs", "seed")}
    if run["norm"] == "layer":  # only then: the default keeps 2021's train() call
        arguments["use_layer_norm"] = True
    if run["init_scale"] != 1.0:
        arguments["init_scale"] = run["init_scale"]
    return {**arguments, "batch_norm": run["batch_norm"]}


def check_runs(runs):
    """checks.check_hyperparameters once per distinct configuration, before anything is trained."""
    checked = set()
    for run in runs:
        arguments = train_arguments(run)
        if repr(arguments) not in checked:
            checked.add(repr(arguments))
            checks.check_hyperparameters(**arguments)


def arm_label(hidden_dims, norm):
    """'[128] with batch norm'; norm a NORMS name, or use_batch_norm as a bool."""
    if isinstance(norm, bool):
        norm = "batch" if norm else "none"
    return f"{list(hidden_dims)} {NORMS[norm]}"


def run_label(run):
    extra = f", batch {run['batch_size']}" if run["batch_size"] != 128 else ""
    extra += f", init x{run['init_scale']:g}" if run.get("init_scale", 1.0) != 1.0 else ""
    return f"{arm_label(run['hidden_dims'], run['norm'])}, lr {run['lr']:g}{extra}, seed {run['seed']}"


def _n_weights(hidden_dims):
    sizes = [N_FEATURES, *hidden_dims, N_CLASSES]
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

"""The study's figures, drawn from its runs alone (no torch, no data): accuracy over epochs, test
accuracy per architecture, the paired BN - no BN differences, validation accuracy against the
learning rate, the layer statistics and the first steps' losses. Each function returns a
matplotlib Figure."""

import math
import warnings

import numpy as np

from support.plots import new_figure
from support.study_config import FIRST_STEPS, arm_label
from support.study_stats import finished, groups, paired_differences

FIGURE_LR = 0.1  # the learning rate of the layer-statistics and first-steps figures
FIGURES = {
    "default": [
        "train_accuracy.png",
        "val_accuracy.png",
        "test_accuracy.png",
        "test_accuracy.md",
        "paired_differences.png",
        "paired_differences.md",
        "layer_stats.png",
        "first_steps_loss.png",
    ],
    "extended": [
        "lr_sweep.png",
        "lr_sweep.md",
        "val_accuracy.png",
        "paired_differences.png",
        "paired_differences.md",
        "layer_stats.png",
        "first_steps_loss.png",
    ],
    "batch_size": ["batch_size.png", "batch_size.md"],
    "init_scale": ["init_scale.png", "init_scale.md"],
}
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


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


def figure_lr(settings):
    """FIGURE_LR when the study has it, else its learning rate nearest to it on a log scale."""
    return min(settings["lrs"], key=lambda lr: abs(math.log(lr / FIGURE_LR)))


def _integer_epochs(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def curves_figure(runs, settings, key, ylabel, lr):
    """train_accuracy.png / val_accuracy.png of the default study: one curve per architecture x BN."""
    fig = new_figure(figsize=(8, 5))
    ax = fig.subplots()
    for (dims, run_lr, bn), group in groups(runs, settings).items():
        if run_lr == lr:
            color, ls, marker = _style(dims, bn, settings["architectures"])
            epochs = np.arange(1, settings["epochs"] + 1)
            _band(ax, epochs, [r[key] for r in group], color, ls, arm_label(dims, bn), marker)
    ax.set(
        xlabel="epoch",
        ylabel=ylabel,
        title=f"{ylabel.split(' (')[0].capitalize()}, lr {lr:g} ({_seeds_note(settings)})",
    )
    _integer_epochs(ax)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()  # below the axes: inside, it hides a band's edge
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9)
    fig.tight_layout(rect=(0, 0.035 * ((len(labels) + 1) // 2) + 0.01, 1, 1))
    return fig


def accuracy_dot_figure(runs, settings, lr):
    """test_accuracy.png: each seed's test accuracy as a dot, the mean ± one standard deviation."""
    fig = new_figure(figsize=(8, 4.5))
    ax = fig.subplots()
    architectures = [tuple(a) for a in settings["architectures"]]
    by_arm = groups(runs, settings)
    for j, bn in enumerate((False, True)):
        color = "tab:gray" if not bn else "tab:blue"
        label = "with batch norm" if bn else "without batch norm"
        for i, dims in enumerate(architectures):
            test = [r["test_accuracy"] for r in by_arm.get((dims, lr, bn), []) if finished(r)]
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


def paired_figure(runs, settings):
    """paired_differences.png: per configuration (architecture x lr) each seed's BN - no BN test
    accuracy difference as a dot, their mean with its 95 % t-interval; at the right the pooled
    estimate over the configurations every seed finished (study_stats.paired_differences)."""
    rows, pooled = paired_differences(runs, settings)
    several_lrs = len(settings["lrs"]) > 1
    fig = new_figure(figsize=(max(8.0, 1.0 + 0.9 * (len(rows) + 1)), 5))
    ax = fig.subplots()
    ax.axhline(0, color="k", lw=0.8)
    n = len(settings["seeds"])
    for x, row in enumerate(rows):
        color = _style(row["dims"], True, settings["architectures"])[0]
        if row["diffs"]:
            ax.plot([x] * len(row["diffs"]), row["diffs"], ".", color=color, alpha=0.5, ms=7)
            ax.errorbar(x, row["mean"], yerr=row["half"], fmt="o", ms=7, capsize=5, color=color)
        for arm, seeds in row["diverged"].items():  # a pair without a difference: say why at its place
            if seeds:
                note = f"{arm}\ndiverged\n({len(seeds)} of {n} seeds)"
                ax.annotate(note, (x, 0), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
    names = [f"lr {row['lr']:g}" if several_lrs else str(list(row["dims"])) for row in rows]
    if several_lrs:  # the architecture once under its group of learning rates
        below = ax.get_xaxis_transform()
        for i, dims in enumerate(settings["architectures"]):
            middle = (i + 0.5) * len(settings["lrs"]) - 0.5
            ax.text(middle, -0.11, str(dims), transform=below, ha="center", va="top")
            if i:
                ax.axvline(i * len(settings["lrs"]) - 0.5, color="0.8", lw=0.8)
    if pooled["per_seed"]:
        x = len(rows)
        names.append(f"pooled\n({pooled['configurations']} of {len(rows)})")
        ax.plot([x] * len(pooled["per_seed"]), pooled["per_seed"], ".", color="k", alpha=0.5, ms=7)
        ax.errorbar(
            x, pooled["mean"], yerr=pooled["half"], fmt="D", ms=7, capsize=5, color="k", label="pooled"
        )
        ax.axvline(x - 0.5, color="0.5", lw=0.8)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    spread = (
        f"mean with its 95 % t-interval over {n} seeds, small dots: single seeds" if n > 1 else "one seed"
    )
    ax.set(
        ylabel="test accuracy, BN − no BN (paired by seed)",
        title=f"Paired differences in test accuracy, BN − no BN\n{spread}\npooled: of each seed's mean over"
        " the configurations all seeds finished",
    )
    ax.set_xlabel(
        "hidden layers and learning rate" if several_lrs else "hidden layers",
        labelpad=20 if several_lrs else 4,
    )
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def lr_sweep_figure(runs, settings):
    """lr_sweep.png: last-epoch validation accuracy against lr; diverged runs as crosses in a
    strip at the bottom of the axes, one row per curve, with the number of diverged seeds."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    fig = new_figure(figsize=(8, 6.5))
    ax = fig.subplots()
    lrs = np.array(settings["lrs"])
    by_arm = groups(runs, settings)
    strip = ax.get_xaxis_transform()  # x in data (lr), y in axes fraction (0: the bottom)
    crosses, curve = [], 0
    for dims in map(tuple, settings["architectures"]):
        for bn in (False, True):
            if not any(by_arm.get((dims, lr, bn)) for lr in lrs):
                continue
            color, ls, marker = _style(dims, bn, settings["architectures"])
            per_seed = [
                [
                    next(
                        (
                            r["val_accuracy"][-1]
                            for r in by_arm.get((dims, lr, bn), [])
                            if r["seed"] == seed and finished(r)
                        ),
                        np.nan,
                    )
                    for lr in lrs
                ]
                for seed in settings["seeds"]
            ]
            _band(ax, lrs, per_seed, color, ls, arm_label(dims, bn), marker)
            y = 0.04 + 0.045 * curve
            curve += 1
            for lr in lrs:
                n = sum(not finished(r) for r in by_arm.get((dims, lr, bn), []))
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


def _diverged_note(ax, by_arm, lr, architectures):
    """In the panel of lr, one line per arm with diverged runs: a run that diverged in its first
    epoch has no point to draw, and its absent curve must not read as a missing arm."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for (dims, run_lr, bn), group in by_arm.items():
        n = sum(bool(r["diverged"]) for r in group)
        if run_lr == lr and n:
            color, ls, _ = _style(dims, bn, architectures)
            handles.append(Line2D([], [], color=color, ls=ls, marker="x", ms=7, mew=2))
            labels.append(f"{list(dims)} {'BN' if bn else 'no BN'}: diverged ({n} of {len(group)} seeds)")
    if handles:  # "best": where it covers the fewest points of the curves
        ax.legend(handles, labels, loc="best", fontsize=8, handlelength=2.5)


def val_panels_figure(runs, settings):
    """val_accuracy.png of the extended study: validation accuracy per epoch, one panel per lr."""
    n = len(settings["lrs"])
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = new_figure(figsize=(4 * cols, 3.6 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    by_arm = groups(runs, settings)
    epochs = np.arange(1, settings["epochs"] + 1)
    for ax, lr in zip(axes, settings["lrs"], strict=False):
        for (dims, run_lr, bn), group in by_arm.items():
            if run_lr == lr:
                color, ls, marker = _style(dims, bn, settings["architectures"])
                _band(ax, epochs, [r["val_accuracy"] for r in group], color, ls, arm_label(dims, bn), marker)
        _diverged_note(ax, by_arm, lr, settings["architectures"])
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
    ("preact_std", "pre-activation std, ReLU input", "log"),
    ("dead_fraction", "fraction of dead ReLUs", "linear"),
    ("zero_fraction", "fraction of zero activations", "linear"),
    ("weight_grad_norm", "weight-gradient norm", "log"),
)


def layer_stats_figure(runs, settings, lr):
    """layer_stats.png: per-layer statistics over epochs for the deepest network, BN vs no BN."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    dims = max(settings["architectures"], key=len)
    fig = new_figure(figsize=(11, 8))
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
        ax.set(xlabel="epoch (0: initialisation)", yscale=scale)
        ax.set_ylabel(f"{ylabel} (log scale)" if scale == "log" else ylabel)
        if stat == "dead_fraction":  # from 0 to at least 5 %: one dead unit must not fill the axis
            ax.set_ylim(0, max(0.05, ax.get_ylim()[1]))
        if scale == "log":  # ticks at 1, 2, 3, 5 x 10^k (a range of 1 to 3.2 gets three), plain numbers
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 3, 5)))
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
    fig = new_figure(figsize=(8, 5))
    ax = fig.subplots()
    for (dims, run_lr, bn), group in groups(runs, settings).items():
        if run_lr == lr:
            color, ls, _ = _style(dims, bn, settings["architectures"])
            curves = [r["first_steps_loss"] for r in group]
            steps = np.arange(1, max(map(len, curves)) + 1)
            _band(ax, steps, curves, color, ls, arm_label(dims, bn), marker=None)
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

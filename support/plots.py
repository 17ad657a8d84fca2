"""A run's figures: its loss and accuracy curves, and its first layer's weights as images (Agg, no pyplot)."""

import math
import textwrap

import numpy as np


def new_figure(**kwargs):
    """A matplotlib Figure that is drawn with Agg when saved: headless, and no pyplot
    (whose import and global figure list this code does not need)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


LOSS_TOP = 3.0  # the loss axis of every run's figure


def loss_curve_figure(logging_info, title):
    """Per-batch loss with its per-epoch mean, and train/validation accuracy per epoch.

    Every curve has markers, so a run of one epoch (one point per curve) still shows its
    values, and the epoch axis has integer ticks. A diverged run's unfinished epoch shows
    its batches up to the first non-finite loss (drawn as a gap), marked by a dashed line.
    """
    batch_loss = np.array(logging_info["batch_loss"], dtype=float)
    batch_loss[~np.isfinite(batch_loss)] = np.nan  # nan is a gap; inf would break the axis limits
    epochs = len(logging_info["train_loss"])
    per_epoch = logging_info.get("batches_per_epoch") or len(batch_loss) / max(epochs, 1)
    epoch_axis = np.arange(1, epochs + 1)
    fig = new_figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    few = len(batch_loss) <= 100  # a line through few points needs markers to be seen
    ax_loss.plot(
        np.arange(1, len(batch_loss) + 1) / per_epoch,
        batch_loss,
        marker="." if few else None,
        lw=0.5,
        alpha=0.5,
        label="per batch",
    )
    ax_loss.plot(epoch_axis, logging_info["train_loss"], "o-", label="epoch mean")
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title="Training loss")
    # One loss axis for every run, so runs shown side by side compare at a glance: 0 to just above
    # ln 10 = 2.30, the loss of a uniform guess. Batches above it are drawn on the top edge, counted.
    above = batch_loss > LOSS_TOP
    if above.any():
        steps = (np.flatnonzero(above) + 1) / per_epoch
        n_above, highest = int(above.sum()), np.nanmax(batch_loss)
        label = f"{n_above} batch{'es' * (n_above > 1)} above {LOSS_TOP:g}, clipped (max {highest:.1f})"
        ax_loss.plot(
            steps, np.full(len(steps), LOSS_TOP), "^", color="tab:red", ms=4, clip_on=False, label=label
        )
    ax_loss.set_ylim(0, LOSS_TOP)
    ax_acc.plot(epoch_axis, logging_info["train_accuracy"], "o-", label="training (mean over batches)")
    ax_acc.plot(epoch_axis, logging_info["val_accuracy"], "s-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    if logging_info.get("diverged"):
        at = logging_info["diverged_at"]
        x = at["epoch"] - 1 + at["step"] / per_epoch
        for ax in (ax_loss, ax_acc):
            ax.axvline(x, color="tab:red", ls="--", lw=1, label="loss not finite")
    last = max(epochs, math.ceil(len(batch_loss) / per_epoch), 1)
    for ax in (ax_loss, ax_acc):
        ax.set_xlim(0, last + 0.2)
        _integer_ticks(ax.xaxis, last)
        ax.legend()
    fig.suptitle(title)
    # fixed margins: tight_layout would draw the figure twice, a tenth of a second per run
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.85, wspace=0.25)
    return fig


def _integer_ticks(axis, last):
    """Ticks at whole epochs 0..last: every one for short runs, a few round ones for long runs."""
    from matplotlib.ticker import MaxNLocator, MultipleLocator

    axis.set_major_locator(MultipleLocator(1) if last <= 12 else MaxNLocator(integer=True))


def weights_figure(weight, title=None):
    """The first layer's units as pictures: row i of `weight` (n_units, 3072), the weights unit i
    gives each pixel, drawn as a 32x32 colour image, in a grid.

    The rows hold the pixels channel-major, like the data (3, 32, 32): reshaped and moved to
    (32, 32, 3) for display. Each unit is rescaled to its own range (its smallest weight to 0,
    its largest to 1, one scale for all three channels), so a unit with small weights is as
    visible as one with large ones.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2 or weight.shape[1] != 3 * 32 * 32:
        raise ValueError(f"first-layer weight must have shape (n_units, 3072), got {weight.shape}")
    n_units = len(weight)
    images = weight.reshape(n_units, 3, 32, 32).transpose(0, 2, 3, 1)  # (n, 32, 32, 3) for imshow
    finite = np.isfinite(images)
    low = np.where(finite, images, np.inf).min(axis=(1, 2, 3), keepdims=True)
    high = np.where(finite, images, -np.inf).max(axis=(1, 2, 3), keepdims=True)
    span = high - low
    # a constant unit, or one without a finite weight, is drawn mid-grey
    scaled = np.where(span > 0, (images - low) / np.where(span > 0, span, 1.0), 0.5)
    scaled = np.where(finite, scaled, 0.5).clip(0.0, 1.0)

    n_cols = math.ceil(math.sqrt(n_units))
    n_rows = math.ceil(n_units / n_cols)
    gap = 2  # white pixels between units
    cell = 32 + gap
    mosaic = np.ones((n_rows * cell + gap, n_cols * cell + gap, 3))
    for i in range(n_units):  # one copy per unit (at most a few hundred), not per sample
        row, col = divmod(i, n_cols)
        mosaic[gap + row * cell : gap + row * cell + 32, gap + col * cell : gap + col * cell + 32] = scaled[i]

    width = min(max(0.5 * n_cols, 6.0), 14.0)  # inches: units stay visible, large grids printable
    title = title or f"First layer: {n_units} units, each rescaled to its own range"
    lines = textwrap.wrap(title, width=int(width * 13))  # about 13 characters of 8-point text an inch
    head = 0.2 + 0.16 * len(lines)  # inches above the grid for the title
    grid_height = width * mosaic.shape[0] / mosaic.shape[1]
    fig = new_figure(figsize=(width, grid_height + head))
    ax = fig.add_axes((0.0, 0.0, 1.0, grid_height / (grid_height + head)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle("\n".join(lines), fontsize=8, y=1 - 0.1 / (grid_height + head), va="top")
    return fig


def confusion_matrix_figure(matrix, class_names, title):
    """Counts of a confusion matrix (row: true class, column: predicted), each cell labelled."""
    matrix = np.asarray(matrix)
    fig = new_figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, label="test images")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set(xlabel="predicted class", ylabel="true class")
    dark = matrix > matrix.max() / 2  # white text where the cell is dark
    for (i, j), count in np.ndenumerate(matrix):  # 100 cells: a label each
        ax.text(
            j, i, f"{count}", ha="center", va="center", fontsize=7, color="white" if dark[i, j] else "black"
        )
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)
    fig.subplots_adjust(left=0.17, right=0.98, bottom=0.17, top=0.9)
    return fig

"""What a run records (per-epoch lists, batch losses, divergence, test metrics) and the lines it prints."""

import math

import numpy as np

BETAS = (0.1, 1.0, 10.0)  # the F-beta scores each run reports, as the 2022-2023 editions ask


def new_logging_info(**extra):
    """Per-epoch lists (train_loss, train_accuracy, val_accuracy, epoch_time), every batch's loss,
    whether the run diverged (see mark_diverged), and the `extra` items."""
    return {
        "train_loss": [],
        "train_accuracy": [],
        "val_accuracy": [],
        "batch_loss": [],
        "epoch_time": [],
        "diverged": False,
        **extra,
    }


def log_epoch(logging_info, batch_losses, n_correct, n_seen, val_accuracy, seconds):
    logging_info["batch_loss"] += batch_losses
    logging_info["train_loss"].append(sum(batch_losses) / len(batch_losses))
    logging_info["train_accuracy"].append(n_correct / n_seen)
    logging_info["val_accuracy"].append(val_accuracy)
    logging_info["epoch_time"].append(seconds)


def epoch_line(logging_info, epochs):
    """The one line printed after each epoch (with or without progress bars)."""
    epoch = len(logging_info["val_accuracy"])
    return (
        f"epoch {epoch:2d}/{epochs}: loss {logging_info['train_loss'][-1]:.4f}, "
        f"train acc {logging_info['train_accuracy'][-1]:.4f}, val acc {logging_info['val_accuracy'][-1]:.4f}"
    )


def mark_diverged(logging_info, epoch, step, batch_losses=()):
    """Record that the loss of batch `step` of epoch `epoch` (both 1-based) was not finite.

    batch_losses: the unfinished epoch's losses up to that batch, kept in batch_loss (the
    per-epoch lists hold finished epochs only)."""
    logging_info["batch_loss"] += list(batch_losses)
    logging_info["diverged"] = True
    logging_info["diverged_at"] = {"epoch": epoch, "step": step}


def divergence_message(logging_info):
    at = logging_info["diverged_at"]
    return f"diverged at epoch {at['epoch']}, step {at['step']} (loss is not finite): try a smaller --lr"


def result_line(test_accuracy, logging_info):
    """What a CLI prints before saving: the best model's test accuracy, or why there is none."""
    if test_accuracy is None:
        return "no test accuracy (no epoch finished)"
    return f"test accuracy {test_accuracy:.4f} (best epoch {logging_info['best_epoch']})"


def loss_is_finite(loss, probs, labels):
    """Whether the batch's cross-entropy is finite in the training precision (NumPy trainer).

    CrossEntropyModule clamps probabilities at 1e-30 so that its loss and gradient stay
    finite; a target probability that underflowed to exactly 0 would still make the
    unclamped loss -log 0 infinite. That happens only when the logits have blown up (a
    gap of over 100 in float32), and the clamp then also hides the gradient of those
    samples: such a run makes no progress while its reported loss looks finite."""
    return math.isfinite(loss) and float(probs[np.arange(len(labels)), labels].min()) > 0.0


def metrics_record(matrix, to_metrics, classes, betas=BETAS):
    """log.json's test_metrics from a confusion matrix (C, C): the matrix, accuracy, per-class
    precision and recall, and F-beta keyed by beta ("0.1", "1", "10"); to_metrics is a trainer's
    confusion_matrix_to_metrics, classes the C class names."""
    by_beta = {f"{beta:g}": to_metrics(matrix, beta) for beta in betas}
    first = by_beta[f"{betas[0]:g}"]
    return {
        "classes": list(classes),
        "confusion_matrix": np.asarray(matrix).tolist(),
        "accuracy": float(first["accuracy"]),
        "precision": np.asarray(first["precision"]).tolist(),
        "recall": np.asarray(first["recall"]).tolist(),
        "f1_beta": {beta: np.asarray(m["f1_beta"]).tolist() for beta, m in by_beta.items()},
    }

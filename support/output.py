"""Results written atomically: a crash or Ctrl-C never leaves half a file, or a new file beside an old set."""

import contextlib
import json
import math
import os
import tempfile

from support.plots import confusion_matrix_figure, loss_curve_figure, weights_figure

# What save_run writes beside the model, and the exit code of a run whose loss stopped being finite.
RUN_FILES = ("log.json", "loss_curve.png", "first_layer_weights.png", "confusion_matrix.png")


def run_filenames(model_name):
    """Every file save_run writes for a run whose model file is `model_name`."""
    return (*RUN_FILES, model_name)


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it into place.

    A crash or Ctrl-C before the rename leaves the old file (or none), never half of one.
    """
    atomic_write_all({path: write})


class SaveError(ValueError):
    """An OSError (disk full, no permission, ...) while writing results, as one line naming the
    file and the reason. A ValueError, so run_cli ends with exit code 2."""


def atomic_write_all(writers):
    """atomic_write for a set of files {path: write}: every file is written to its
    temporary name before the first rename, so an interrupt or a failing writer never
    leaves a new file beside an old one from an earlier run (the renames take
    microseconds; the writing and plotting before them, seconds). A rename that the
    system refuses midway is the one failure that can still split the set.

    Raises SaveError for any OSError, after removing every temporary file."""
    for path in writers:
        if os.path.isdir(path):
            raise SaveError(f"cannot write {path}: a directory stands there")
    temporaries = {}  # path -> its temporary file, from the moment the file exists
    path = None
    try:
        for path, write in writers.items():
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            prefix = f".{os.path.basename(path)}."
            fd, temporaries[path] = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results should read like any file
                write(f)
        for path in list(temporaries):
            os.replace(temporaries[path], path)
            del temporaries[path]
    except OSError as e:
        raise SaveError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        for tmp in temporaries.values():  # left only when something failed
            with contextlib.suppress(OSError):
                os.remove(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj):
    atomic_write(path, json_writer(obj))


def json_writer(obj):
    """write(file) of indented, strict JSON: a diverged run's NaN or inf losses become null."""
    data = (json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n").encode()
    return lambda f: f.write(data)


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def png_writer(fig, dpi=100):
    """write(file) of the figure as PNG, drawn by Agg."""
    return lambda f: fig.savefig(f, format="png", dpi=dpi)


def run_title(args, test_accuracy, logging_info=None):
    batch_norm = " with batch norm" if args.get("use_batch_norm") else ""
    batch_norm += " with layer norm" if args.get("use_layer_norm") else ""
    batch_norm += f", {args['activation']}" if args.get("activation", "relu") != "relu" else ""
    batch_norm += f", dropout {args['dropout']:g}" if args.get("dropout") else ""
    batch_norm += f", {args['optimizer']}" if args.get("optimizer", "sgd") != "sgd" else ""
    result = "no epoch finished" if test_accuracy is None else f"test accuracy {test_accuracy:.4f}"
    if logging_info and logging_info.get("diverged"):
        at = logging_info["diverged_at"]
        result += f", diverged at epoch {at['epoch']}, step {at['step']}"
    return (
        f"{args.get('framework', '')} MLP {args['hidden_dims']}{batch_norm}, lr {args['lr']:g}, "
        f"batch {args['batch_size']}, seed {args['seed']}: {result}"
    )


def save_run(args, logging_info, test_accuracy, write_model, first_layer_weight=None, model_name="model.npz"):
    """Write, to args["output_dir"], log.json, loss_curve.png, the model (write_model(file)) as
    model_name, given the first Linear
    layer's weight as a NumPy array (n_units, 3072) first_layer_weights.png, and where
    logging_info holds test_metrics (runlog.metrics_record) confusion_matrix.png, as one set
    (atomic_write_all). Returns the output directory.

    Raises SaveError (one line: the file and the reason) when the system refuses a write;
    no file of the set is then left half-written.
    """
    output_dir, title = args["output_dir"], run_title(args, test_accuracy, logging_info)
    metrics = logging_info.get("test_metrics")
    log = {
        "args": args,
        "test_accuracy": test_accuracy,
        "diverged": bool(logging_info.get("diverged", False)),
        "test_metrics": metrics,
        "logging_info": {k: v for k, v in logging_info.items() if k != "test_metrics"},
    }
    writers = {
        os.path.join(output_dir, model_name): write_model,
        os.path.join(output_dir, "loss_curve.png"): png_writer(loss_curve_figure(logging_info, title)),
    }
    if metrics is not None:
        figure = confusion_matrix_figure(
            metrics["confusion_matrix"], metrics["classes"], f"Test set. {title}"
        )
        writers[os.path.join(output_dir, "confusion_matrix.png")] = png_writer(figure)
    if first_layer_weight is not None:
        which = "the model when the run diverged" if test_accuracy is None else "the best model"
        heading = f"First layer of {which}, each unit rescaled to its own range. {title}"
        figure = weights_figure(first_layer_weight, heading)
        writers[os.path.join(output_dir, "first_layer_weights.png")] = png_writer(figure)
    writers[os.path.join(output_dir, "log.json")] = json_writer(log)
    atomic_write_all(writers)
    return output_dir


def npz_writer(model):
    """write(file) of a NumPy MLP's parameters as .npz, keyed '<i>.<name>' by the layer's index i
    in model.layers: '0.weight', '0.bias' for the first Linear, and so on; a batch norm layer
    adds 'running_mean' and 'running_var'. The indices are those of the PyTorch MLP's
    state_dict keys ('layers.<i>.weight'): both list their layers in the same order."""
    import numpy as np

    arrays = {}
    for i, layer in enumerate(model.layers):
        for name, value in getattr(layer, "params", {}).items():
            arrays[f"{i}.{name}"] = value
        for name in ("running_mean", "running_var"):
            if hasattr(layer, name):
                arrays[f"{i}.{name}"] = getattr(layer, name)
    return lambda f: np.savez(f, **arrays)

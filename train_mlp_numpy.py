"""Train the NumPy MLP on CIFAR-10 with mini-batch SGD.

    python train_mlp_numpy.py [--hidden_dims 128] [--lr 0.1] [--use_batch_norm] [--batch_size 128]
                              [--epochs 10] [--seed 42] [--data_dir $CIFAR10_DATA_DIR or data/]

Writes log.json, loss_curve.png, first_layer_weights.png and model.npz (best model by
validation accuracy) to --output_dir, after printing the best model's test accuracy.
Exit codes: 0 done, 2 bad settings or data, a failed save or memory that ran out (one line
on stderr), 3 the loss stopped being finite (the run so far is saved), 130 interrupted.
"""

import copy
import math
import time

import numpy as np
from tqdm import tqdm

import cifar10_utils
import train_common
from mlp_numpy import MLP
from modules import CrossEntropyModule

EVAL_BATCH_SIZE = 1000  # evaluation needs no gradients; larger batches only make it faster


def _labels(targets):
    """Integer labels (S,) from targets given as labels (S,) or one-hot/soft targets (S, C).

    Decided by the number of dimensions, never by comparing shapes: with S == C samples a
    (S, S) target matrix and a prediction matrix have the same shape."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        return targets
    if targets.ndim == 2:
        return np.argmax(targets, axis=1)
    raise ValueError(f"targets must be labels (S,) or one-hot/soft targets (S, C), got shape {targets.shape}")


def n_correct(predictions, targets):
    """How many rows of predictions (S, C) have their argmax at the target class: an exact
    count, so that accuracies summed over batches do not round. Targets as in accuracy()."""
    labels = _labels(targets)
    if np.ndim(predictions) != 2 or len(predictions) != len(labels):
        raise ValueError(
            f"predictions must be (S, C) with S = {len(labels)} targets, got shape {np.shape(predictions)}"
        )
    return int(np.sum(np.argmax(predictions, axis=1) == labels))


def accuracy(predictions, targets):
    """Fraction of samples classified correctly.

    Args:
        predictions: scores (S, C), e.g. class probabilities; the argmax of a row is its prediction.
        targets: integer labels (S,), or one-hot or soft targets (S, C) whose argmax is the class.

    Returns:
        accuracy in [0, 1], a float.
    """
    return n_correct(predictions, targets) / len(targets)  # n_correct checked targets: S of them


def loss_is_finite(loss, probs, labels):
    """Whether the batch's cross-entropy is finite in the training precision.

    CrossEntropyModule clamps probabilities at 1e-30 so that its loss and gradient stay
    finite; a target probability that underflowed to exactly 0 would still make the
    unclamped loss -log 0 infinite. That happens only when the logits have blown up (a
    gap of over 100 in float32), and the clamp then also hides the gradient of those
    samples: such a run makes no progress while its reported loss looks finite."""
    return math.isfinite(loss) and float(probs[np.arange(len(labels)), labels].min()) > 0.0


def evaluate_model(model, data_loader):
    """Accuracy over the whole data set, weighting every batch by its size.

    The model runs in eval mode (batch norm uses its running statistics) and gets its
    previous mode back afterwards."""
    was_training = model.training
    model.eval()
    try:
        n_right = n_seen = 0
        for x, y in data_loader:
            n_right += n_correct(model.forward(x), y)
            n_seen += len(y)
        model.clear_cache()
    finally:
        if was_training:
            model.train()
    return n_right / n_seen


def sgd_step(model, lr):
    """param <- param - lr * grad for every module that has parameters (linear and batch-norm layers)."""
    for layer in model.layers:
        if hasattr(layer, "params"):
            for name, param in layer.params.items():
                param -= lr * layer.grads[name]


def train(
    hidden_dims,
    lr,
    batch_size,
    epochs,
    seed,
    data_dir,
    use_batch_norm=False,
    dtype=np.float32,
    progress=True,
    log_epochs=True,
):
    """Train an MLP with SGD; keep the best epoch's model by validation accuracy.

    Args:
        hidden_dims: list of hidden sizes.
        lr, batch_size, epochs: SGD settings.
        seed: fixes the weights and the shuffling, drawn from two independent streams.
        data_dir: directory with cifar-10-batches-py/ (downloaded there if missing).
        use_batch_norm: a BatchNormModule between each hidden Linear and its ReLU.
        dtype: float32 (default) trains twice as fast as float64 and reaches the same accuracy.
        progress: show a tqdm bar per epoch.
        log_epochs: print one summary line per epoch (with or without the bars).

    Returns:
        model: the MLP that did best on the validation set, in eval mode.
        val_accuracies: validation accuracy after each epoch.
        test_accuracy: the best model's accuracy on the test set.
        logging_info: per-epoch train_loss, train_accuracy, val_accuracy, epoch_time;
            batch_loss for every batch; best_epoch; batches_per_epoch; diverged.

    At the first batch whose loss is not finite (loss_is_finite), training stops: logging_info gets
    diverged = True and diverged_at = {'epoch', 'step'} (1-based), and the results are
    those of the epochs finished so far (the current model and test_accuracy None when
    none finished). Otherwise diverged is False.
    """
    train_common.check_hyperparameters(hidden_dims, lr, batch_size, epochs, seed=seed)
    np.random.seed(seed)  # noqa: NPY002 (the global RNG too, for code that uses it)
    # Independent streams for the weights and the shuffling: one default_rng(seed) for both
    # would hand the data order numbers correlated with the initial weights.
    init_ss, shuffle_ss = np.random.SeedSequence(seed).spawn(2)
    cifar10 = cifar10_utils.get_cifar10(data_dir)
    train_common.check_batch_size(batch_size, len(cifar10["train"]))
    shuffle_seed = int(shuffle_ss.generate_state(1)[0])
    train_loader = cifar10_utils.get_dataloader(cifar10, batch_size, return_numpy=True, seed=shuffle_seed)[
        "train"
    ]
    eval_loaders = cifar10_utils.get_dataloader(cifar10, EVAL_BATCH_SIZE, return_numpy=True, seed=0)

    n_features, n_classes = cifar10_utils.N_FEATURES, cifar10_utils.N_CLASSES
    model = MLP(
        n_features,
        hidden_dims,
        n_classes,
        use_batch_norm=use_batch_norm,
        dtype=dtype,
        rng=np.random.default_rng(init_ss),
    )
    loss_module = CrossEntropyModule()
    logging_info = train_common.new_logging_info()
    logging_info["batches_per_epoch"] = len(train_loader)
    best_model, best_accuracy = None, -1.0
    # A diverging run overflows before its loss turns non-finite; that is detected and
    # reported below, so NumPy's overflow warnings would only add noise.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            batch_losses, n_right, n_seen = [], 0, 0
            bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
            for x, y in bar:
                probs = model.forward(x)
                loss = float(loss_module.forward(probs, y))
                if not loss_is_finite(loss, probs, y):
                    batch_losses.append(math.inf)  # the unclamped loss; written to log.json as null
                    train_common.mark_diverged(logging_info, epoch, len(batch_losses), batch_losses)
                    break
                batch_losses.append(loss)
                model.backward(loss_module.backward(probs, y))
                sgd_step(model, lr)
                n_right += n_correct(probs, y)
                n_seen += len(y)
                if len(batch_losses) % 25 == 0:
                    bar.set_postfix(loss=f"{np.mean(batch_losses[-25:]):.3f}", refresh=False)
            bar.close()
            if logging_info["diverged"]:
                break
            val_accuracy = evaluate_model(model, eval_loaders["validation"])
            train_common.log_epoch(
                logging_info, batch_losses, n_right, n_seen, val_accuracy, time.perf_counter() - start
            )
            if log_epochs:
                tqdm.write(train_common.epoch_line(logging_info, epochs))
            if val_accuracy > best_accuracy:
                best_model, best_accuracy = copy.deepcopy(model), val_accuracy  # caches cleared: params only
                logging_info["best_epoch"] = epoch
        model.clear_cache()
        if best_model is None:  # diverged in the first epoch: nothing better to return
            best_model, test_accuracy = model, None
        else:
            test_accuracy = evaluate_model(best_model, eval_loaders["test"])
    best_model.eval()  # returned for predictions: batch norm uses (and keeps) its running statistics
    return best_model, logging_info["val_accuracy"], test_accuracy, logging_info


def model_writer(model):
    """write(file) of the parameters as .npz, keyed '<i>.<name>' by the layer's index i in
    model.layers: '0.weight', '0.bias' for the first Linear, and so on; a batch norm layer
    adds 'running_mean' and 'running_var'. The indices are those of the PyTorch MLP's
    state_dict keys ('layers.<i>.weight'): both list their layers in the same order."""
    arrays = {}
    for i, layer in enumerate(model.layers):
        for name, value in getattr(layer, "params", {}).items():
            arrays[f"{i}.{name}"] = value
        for name in ("running_mean", "running_var"):
            if hasattr(layer, name):
                arrays[f"{i}.{name}"] = getattr(layer, name)
    return lambda f: np.savez(f, **arrays)


def main():
    parser = train_common.build_parser(__doc__.splitlines()[0], "mlp_numpy")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float64"],
        help="floating type of training (float64 is exact but twice as slow)",
    )
    args = train_common.parse_run_args(parser, "model.npz")
    model, _, test_accuracy, logging_info = train(
        args.hidden_dims,
        args.lr,
        args.batch_size,
        args.epochs,
        args.seed,
        args.data_dir,
        use_batch_norm=args.use_batch_norm,
        dtype=np.dtype(args.dtype),
        progress=not args.no_progress,
    )
    # printed before saving: a failed save must not take the result with it
    print(
        f"{train_common.result_line(test_accuracy, logging_info)}; saving to {args.output_dir}/", flush=True
    )
    run_args = {"framework": "NumPy", **vars(args)}
    train_common.save_run(
        args.output_dir,
        run_args,
        logging_info,
        test_accuracy,
        model_writer(model),
        "model.npz",
        first_layer_weight=model.linears[0].params["weight"],
    )
    train_common.raise_if_diverged(logging_info)


if __name__ == "__main__":
    train_common.run_cli(main)

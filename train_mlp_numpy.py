"""Train the NumPy MLP on CIFAR-10 with mini-batch SGD.

    python train_mlp_numpy.py [--hidden_dims 128] [--lr 0.1] [--batch_size 128]
                              [--epochs 10] [--seed 42] [--data_dir data/]

Writes log.json, loss_curve.png and model.npz (best model by validation
accuracy) to --output_dir and prints the best model's test accuracy.
"""

import copy
import os
import time

import numpy as np
from tqdm import tqdm

import cifar10_utils
import train_common
from mlp_numpy import MLP
from modules import CrossEntropyModule

EVAL_BATCH_SIZE = 1000  # evaluation needs no gradients; larger batches only make it faster


def accuracy(predictions, targets):
    """Fraction of rows of predictions (S, C) whose argmax equals targets (S,) integer labels."""
    return float(np.mean(np.argmax(predictions, axis=1) == targets))


def n_correct(predictions, targets):
    """How many rows of predictions (S, C) have their argmax at targets (S,): an exact count,
    so that accuracies summed over batches do not round."""
    return int(np.sum(np.argmax(predictions, axis=1) == targets))


def evaluate_model(model, data_loader):
    """Accuracy over the whole data set, weighting every batch by its size."""
    n_right = n_seen = 0
    for x, y in data_loader:
        n_right += n_correct(model.forward(x), y)
        n_seen += len(y)
    model.clear_cache()
    return n_right / n_seen


def sgd_step(model, lr):
    for linear in model.linears:
        for name, param in linear.params.items():
            param -= lr * linear.grads[name]


def train(hidden_dims, lr, batch_size, epochs, seed, data_dir, dtype=np.float32, progress=True):
    """Train an MLP with SGD; keep the best epoch's model by validation accuracy.

    Args:
        hidden_dims: list of hidden sizes.
        lr, batch_size, epochs, seed: SGD settings; the seed fixes weights and shuffling.
        data_dir: directory with cifar-10-batches-py/ (downloaded there if missing).
        dtype: float32 (default) trains twice as fast as float64 and reaches the same accuracy.
        progress: show a tqdm bar per epoch.

    Returns:
        model: the MLP that did best on the validation set.
        val_accuracies: validation accuracy after each epoch.
        test_accuracy: the best model's accuracy on the test set.
        logging_info: per-epoch train_loss, train_accuracy, val_accuracy, epoch_time;
            batch_loss for every batch; best_epoch.
    """
    train_common.check_hyperparameters(hidden_dims, lr, batch_size, epochs)
    np.random.seed(seed)  # noqa: NPY002 (the global RNG too, for code that uses it)
    rng = np.random.default_rng(seed)
    cifar10 = cifar10_utils.get_cifar10(data_dir)
    train_common.check_batch_size(batch_size, len(cifar10["train"]))
    train_loader = cifar10_utils.get_dataloader(cifar10, batch_size, return_numpy=True, seed=seed)["train"]
    eval_loaders = cifar10_utils.get_dataloader(cifar10, EVAL_BATCH_SIZE, return_numpy=True, seed=seed)

    n_features, n_classes = cifar10_utils.N_FEATURES, cifar10_utils.N_CLASSES
    model = MLP(n_features, hidden_dims, n_classes, dtype=dtype, rng=rng, column_major=True)
    loss_module = CrossEntropyModule()
    logging_info = train_common.new_logging_info()
    best_model, best_accuracy = None, -1.0
    for epoch in range(epochs):
        start = time.perf_counter()
        batch_losses, n_right, n_seen = [], 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress)
        for x, y in bar:
            probs = model.forward(x)
            loss = loss_module.forward(probs, y)
            model.backward(loss_module.backward(probs, y))
            sgd_step(model, lr)
            batch_losses.append(float(loss))
            n_right += n_correct(probs, y)
            n_seen += len(y)
            if len(batch_losses) % 25 == 0:
                bar.set_postfix(loss=f"{np.mean(batch_losses[-25:]):.3f}", refresh=False)
        val_accuracy = evaluate_model(model, eval_loaders["validation"])
        train_common.log_epoch(
            logging_info, batch_losses, n_right, n_seen, val_accuracy, time.perf_counter() - start
        )
        if progress:
            tqdm.write(
                f"epoch {epoch + 1:2d}/{epochs}: loss {logging_info['train_loss'][-1]:.4f}, "
                f"train acc {logging_info['train_accuracy'][-1]:.4f}, val acc {val_accuracy:.4f}"
            )
        if val_accuracy > best_accuracy:
            best_model, best_accuracy = copy.deepcopy(model), val_accuracy  # caches cleared: params only
            logging_info["best_epoch"] = epoch + 1
    test_accuracy = evaluate_model(best_model, eval_loaders["test"])
    return best_model, logging_info["val_accuracy"], test_accuracy, logging_info


def model_writer(model):
    """write(file) of the parameters as .npz, keyed '<layer>.weight' and '<layer>.bias'."""
    arrays = {f"{i}.{name}": p for i, lin in enumerate(model.linears) for name, p in lin.params.items()}
    return lambda f: np.savez(f, **arrays)


def main():
    parser = train_common.build_parser(__doc__.splitlines()[0], os.path.join("results", "mlp_numpy"))
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float64"],
        help="floating type of training (float64 is exact but twice as slow)",
    )
    args = parser.parse_args()
    train_common.check_output_dir(args.output_dir)
    model, _, test_accuracy, logging_info = train(
        args.hidden_dims,
        args.lr,
        args.batch_size,
        args.epochs,
        args.seed,
        args.data_dir,
        dtype=np.dtype(args.dtype),
        progress=not args.no_progress,
    )
    run_args = {"framework": "NumPy", **vars(args)}
    out = train_common.save_run(
        args.output_dir, run_args, logging_info, test_accuracy, model_writer(model), "model.npz"
    )
    print(f"test accuracy {test_accuracy:.4f} (best epoch {logging_info['best_epoch']}); results in {out}/")


if __name__ == "__main__":
    train_common.run_cli(main)

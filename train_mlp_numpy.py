"""Train the NumPy MLP on CIFAR-10 with mini-batch SGD.

    python train_mlp_numpy.py [--hidden_dims 128] [--lr 0.1] [--use_batch_norm] [--batch_size 128]
                              [--epochs 10] [--seed 42] [--data_dir $CIFAR10_DATA_DIR or data/]

Prints the test accuracy of the best model by validation accuracy, then writes it (model.npz), log.json
and its figures to --output_dir. Exit codes: 0 done, 2 bad input, 3 diverged, 130 interrupted.
"""

import copy
import time

import numpy as np
from tqdm import tqdm

import cifar10_utils
import optim
from cifar10_utils import N_CLASSES, N_FEATURES
from mlp_numpy import MLP
from modules import CrossEntropyModule
from support import checks, cli, output, runlog

EVAL_BATCH_SIZE = 1000  # evaluation needs no gradients; larger batches only make it faster


def predicted_labels(predictions, targets):
    """(the argmax of each row of predictions (S, C), the labels (S,) of targets given as labels (S,)
    or one-hot/soft targets (S, C)). Targets are told apart by ndim, never by shape: S == C happens."""
    targets = np.asarray(targets)
    if targets.ndim not in (1, 2) or np.ndim(predictions) != 2 or len(predictions) != len(targets):
        raise ValueError(
            f"need predictions (S, C), targets (S,) or (S, C); got {np.shape(predictions)}, {targets.shape}"
        )
    return np.argmax(predictions, axis=1), targets if targets.ndim == 1 else np.argmax(targets, axis=1)


def accuracy(predictions, targets):
    """Fraction of samples classified correctly, in [0, 1]: predictions are scores (S, C), e.g.
    class probabilities; targets labels (S,) or one-hot/soft targets (S, C)."""
    predicted, labels = predicted_labels(predictions, targets)
    return int(np.sum(predicted == labels)) / len(labels)


def confusion_matrix(predictions, targets):
    """(C, C) counts: row i, column j holds the samples of true class i predicted as class j."""
    predicted, labels = predicted_labels(predictions, targets)
    n_classes = np.shape(predictions)[1]
    return np.bincount(labels * n_classes + predicted, minlength=n_classes**2).reshape(n_classes, n_classes)


def confusion_matrix_to_metrics(confusion_matrix, beta=1.0):
    """Accuracy, and per class: precision P = TP / predicted, recall R = TP / actual and
    F_beta = (1 + beta^2) P R / (beta^2 P + R). A ratio 0/0 (a class never predicted, or absent) is 0."""
    matrix = np.asarray(confusion_matrix, dtype=np.float64)
    true_positives = np.diag(matrix)

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    precision, recall = ratio(true_positives, matrix.sum(axis=0)), ratio(true_positives, matrix.sum(axis=1))
    f_beta = ratio((1 + beta**2) * precision * recall, beta**2 * precision + recall)
    accuracy = true_positives.sum() / matrix.sum()
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1_beta": f_beta}


def evaluate_model(model, data_loader):
    """Accuracy over the whole data set, every sample counted once whatever the batch sizes, in eval
    mode (batch norm uses its running statistics, dropout is off); the model's mode is restored."""
    was_training, n_right, n_seen = model.training, 0, 0
    model.eval()
    try:
        for x, y in data_loader:
            predicted, labels = predicted_labels(model.forward(x), y)
            n_right, n_seen = n_right + int(np.sum(predicted == labels)), n_seen + len(labels)
        model.clear_cache()
    finally:
        model.train(was_training)
    return n_right / n_seen


def train(hidden_dims, lr, batch_size, epochs, seed, data_dir, use_batch_norm=False, dtype=np.float32,
          progress=True, log_epochs=True, **options):  # fmt: skip
    """Train an MLP with mini-batch SGD; keep the best epoch's model by validation accuracy. seed
    fixes the weights and the shuffling (independent streams); float32 is 2x faster than float64.
    options, beyond 2021: activation, alpha, neg_slope, use_layer_norm, dropout (the MLP's keywords)
    and optimizer, momentum, weight_decay (the update rule's).

    Returns (model, val_accuracies, test_accuracy, logging_info): the best model (eval mode), the
    validation accuracy after each epoch, the best model's test accuracy, and per-epoch lists,
    every batch_loss, best_epoch and test_metrics. A batch whose loss is not finite stops the run:
    logging_info gets diverged_at {'epoch', 'step'} (test_accuracy None if no epoch finished).
    """
    options["use_batch_norm"] = use_batch_norm
    checks.check_hyperparameters(hidden_dims, lr, batch_size, epochs, seed=seed, **options)
    model_options, rule, rule_options = checks.split_options(**options)
    np.random.seed(seed)  # noqa: NPY002 (the global RNG too, for code that uses it)
    cifar10 = cifar10_utils.get_cifar10(data_dir)
    checks.check_batch_size(batch_size, len(cifar10["train"]))
    shuffle_seed = cifar10_utils.shuffle_seed(seed, bits=32)  # a sibling of the weights' stream, below
    train_loader = cifar10_utils.get_dataloader(cifar10, batch_size, True, seed=shuffle_seed)["train"]
    eval_loaders = cifar10_utils.get_dataloader(cifar10, EVAL_BATCH_SIZE, return_numpy=True, seed=0)
    init_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    model = MLP(N_FEATURES, hidden_dims, N_CLASSES, dtype=dtype, rng=init_rng, **model_options)
    optimizer = getattr(optim, rule)(model.layers, lr=lr, **rule_options)
    loss_module = CrossEntropyModule()
    logging_info = runlog.new_logging_info(batches_per_epoch=len(train_loader))
    best_model, best_accuracy = None, -1.0
    # A diverging run overflows before its loss turns non-finite; that is caught below.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, epochs + 1):
            start, batch_losses, n_right = time.perf_counter(), [], 0
            bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
            for x, y in bar:
                # forward: class probabilities and the batch's mean cross-entropy
                probs = model.forward(x)
                loss = float(loss_module.forward(probs, y))
                if not runlog.loss_is_finite(loss, probs, y):
                    batch_losses.append(float("inf"))  # written to log.json as null
                    runlog.mark_diverged(logging_info, epoch, len(batch_losses), batch_losses)
                    break
                # backward: every layer's gradients, from dL/d(probabilities)
                model.backward(loss_module.backward(probs, y))
                # update: p <- p - lr * dL/dp (or the chosen rule)
                optimizer.step()
                batch_losses.append(loss)
                n_right += int(np.sum(np.argmax(probs, axis=1) == y))
                if len(batch_losses) % 25 == 0:
                    bar.set_postfix(loss=f"{np.mean(batch_losses[-25:]):.3f}", refresh=False)
            bar.close()
            if logging_info["diverged"]:
                break
            # validation, and the best model so far kept
            val_accuracy = evaluate_model(model, eval_loaders["validation"])
            seconds, n_seen = time.perf_counter() - start, len(batch_losses) * batch_size
            runlog.log_epoch(logging_info, batch_losses, n_right, n_seen, val_accuracy, seconds)
            if log_epochs:
                tqdm.write(runlog.epoch_line(logging_info, epochs))
            if val_accuracy > best_accuracy:
                best_model, best_accuracy = copy.deepcopy(model), val_accuracy  # caches cleared: params only
                logging_info["best_epoch"] = epoch
        model.clear_cache()
        test_accuracy = None
        if best_model is None:  # diverged in the first epoch: nothing better to return
            best_model = model
        else:  # the best model on the test set: accuracy, the confusion matrix and its metrics
            test, test_loader = cifar10["test"], eval_loaders["test"]
            test_accuracy = evaluate_model(best_model, test_loader)
            best_model.eval()
            scores = np.concatenate([best_model.forward(x) for x, _ in test_loader])
            matrix = confusion_matrix(scores, test.labels)
            metrics = runlog.metrics_record(matrix, confusion_matrix_to_metrics, test.classes)
            logging_info["test_metrics"] = metrics
            best_model.clear_cache()
    best_model.eval()  # returned for predictions: batch norm uses (and keeps) its running statistics
    return best_model, logging_info["val_accuracy"], test_accuracy, logging_info


def main():
    args = cli.parse_run_args(cli.build_parser(__doc__.splitlines()[0], "mlp_numpy"), "model.npz")
    model, _, test_accuracy, logging_info = train(**cli.train_arguments(args))
    # printed before saving: a failed save must not take the result with it
    print(f"{runlog.result_line(test_accuracy, logging_info)}; saving to {args.output_dir}/", flush=True)
    run, weight = {"framework": "NumPy", **vars(args)}, model.linears[0].params["weight"]
    output.save_run(run, logging_info, test_accuracy, output.npz_writer(model), weight)
    cli.raise_if_diverged(logging_info)


if __name__ == "__main__":
    cli.run_cli(main)

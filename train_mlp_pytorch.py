"""Train the PyTorch MLP on CIFAR-10 with mini-batch SGD, on CUDA when available.

    python train_mlp_pytorch.py [--hidden_dims 128] [--lr 0.1] [--use_batch_norm]
                                [--batch_size 128] [--epochs 10] [--seed 42] [--data_dir DIR]

Prints one line per epoch and the best model's test accuracy, then writes log.json,
loss_curve.png, first_layer_weights.png and model.pt (the best model's state_dict by
validation accuracy) to --output_dir. A run whose loss stops being finite is saved with
"diverged": true in its log and ends with one line on stderr and exit code 3.
"""

import contextlib
import os
import time

import train_common  # first: its one-line interrupt serves the imports below

try:  # Ctrl-C during the 1 to 2 s of `import torch` ends like any later interrupt (run_cli)
    import numpy as np
    import torch
    from torch import nn
    from tqdm import tqdm

    import cifar10_utils
    from mlp_pytorch import MLP, select_device
except KeyboardInterrupt:
    if __name__ != "__main__":  # imported by another program: the interrupt is its to handle
        raise
    train_common.exit_interrupted()

EVAL_BATCH_SIZE = 1000  # evaluation needs no gradients; larger batches only make it faster
# Steps between two finiteness checks of the losses: each check waits for the device (one
# sync), so checking every step would stall CUDA; see train() for why the record stays exact.
CHECK_EVERY = 25


def accuracy(predictions, targets):
    """Fraction of samples classified correctly.

    Args:
        predictions: scores (S, C), e.g. logits; the argmax of a row is its prediction.
        targets: integer labels (S,), or one-hot or soft targets (S, C) whose argmax is the
            class. The two are told apart by their number of dimensions, never by their
            shape, so a batch of S == C samples is read right.

    Returns:
        accuracy in [0, 1], a float.
    """
    predictions, targets = torch.as_tensor(predictions), torch.as_tensor(targets)
    if predictions.ndim != 2 or targets.ndim not in (1, 2) or len(targets) != len(predictions):
        raise ValueError(
            f"accuracy needs predictions (S, C) and targets (S,) or (S, C), got "
            f"{tuple(predictions.shape)} and {tuple(targets.shape)}"
        )
    if len(targets) == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    labels = (targets.argmax(dim=1) if targets.ndim == 2 else targets).to(predictions.device)
    return (predictions.argmax(dim=1) == labels).sum().item() / len(labels)


def evaluate_model(model, data_loader):
    """Accuracy over the whole data set, every sample counted once whatever the batch sizes.

    The model runs in eval mode (batch norm uses its running statistics) without gradients,
    and gets its previous mode back afterwards. Correct predictions are summed on the
    model's device and read once at the end, not once per batch.
    """
    was_training = model.training
    model.eval()
    try:
        n_correct, n_seen = torch.zeros((), dtype=torch.int64, device=model.device), 0
        with torch.no_grad():
            for x, y in data_loader:
                x, y = x.to(model.device), y.to(model.device)  # no copy when already there
                n_correct += (model(x).argmax(dim=1) == y).sum()
                n_seen += len(y)
    finally:
        model.train(was_training)
    return n_correct.item() / n_seen


@contextlib.contextmanager
def deterministic_settings(device):
    """Ask for deterministic algorithms on CUDA; put every setting back on leaving.

    On CUDA: torch.use_deterministic_algorithms(True, warn_only=True), cuDNN without
    benchmarking and deterministic, and CUBLAS_WORKSPACE_CONFIG=:4096:8 (what cuBLAS needs
    to be deterministic) unless the user set it. cuBLAS reads that variable when CUDA first
    multiplies matrices in the process, so it is set here, before this run's first CUDA
    work; a program that used CUDA before must set it itself. On the CPU nothing changes:
    every CPU op this model uses is deterministic already, and the switch imports
    torch._inductor (over 1 s).
    """
    saved_flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    saved_cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    saved_env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        if device.type == "cuda":
            if saved_env is None:
                os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        yield
    finally:
        if saved_env is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved_env
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved_cudnn
        now = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        if now != saved_flags:  # only then: the call costs an import (see above)
            torch.use_deterministic_algorithms(saved_flags[0], warn_only=saved_flags[1])


def train(
    hidden_dims,
    lr,
    use_batch_norm,
    batch_size,
    epochs,
    seed,
    data_dir,
    device="auto",
    progress=True,
    log_epochs=None,
    epoch_callback=None,
    batch_norm="torch",
):
    """Train an MLP with SGD; keep the best epoch's weights by validation accuracy.

    Args:
        hidden_dims: list of hidden sizes.
        lr, batch_size, epochs: SGD settings.
        use_batch_norm: batch norm between each hidden Linear and its ReLU.
        seed: fixes the weights (torch.manual_seed(seed), as the course skeleton does)
            and the data order (a device generator seeded with a number SeedSequence derives
            from seed, see cifar10_utils.get_device_loaders): two independent streams. The
            same seed with and without batch norm gives the same initial Linear weights and
            the same batches, so the two runs are a pair. The global random state is left
            as it was.
        data_dir: directory with cifar-10-batches-py/ (downloaded there if missing); None
            for cifar10_utils.default_data_dir().
        device: 'auto' (CUDA when available), 'cpu' or 'cuda'.
        progress: show a tqdm bar per epoch.
        log_epochs: print one summary line per epoch (None: when progress is shown).
        epoch_callback: callback(model, epoch), called once after initialisation (epoch 0)
            and after each completed epoch's validation (epoch 1, 2, ...), never for an
            epoch cut short by divergence. The model is the one being trained, in train
            mode; the callback must not change its weights and must restore any mode it
            sets.
        batch_norm: 'torch' (nn.BatchNorm1d) or 'manual' (mlp_pytorch's hand-written
            autograd.Function), when use_batch_norm.

    Returns:
        model: the MLP with the weights that did best on the validation set, in eval mode
            (after a divergence before the first epoch ended: the current model).
        val_accuracies: validation accuracy after each completed epoch.
        test_accuracy: that model's accuracy on the test set; None when no epoch completed.
        logging_info: per-epoch train_loss, train_accuracy, val_accuracy, epoch_time;
            batch_loss, every step's loss (up to the first non-finite one); batches_per_epoch;
            best_epoch (None when no epoch completed); device; diverged (bool) and, when
            True, diverged_at {"epoch", "step"} (1-based: the first step whose loss is not
            finite).

    Divergence: the losses stay on the device (reading each one would wait for it) and
    are checked every CHECK_EVERY steps and at the end of each epoch. When a check finds a
    non-finite loss, the first such step is located exactly among the stored losses and
    recorded; batch_loss ends with it, and training stops. The model may have taken up to
    CHECK_EVERY - 1 further (meaningless) steps by then, which is why the returned model is
    the best completed epoch's.

    The process is left as it was found: deterministic settings (CUDA only) are undone on
    return or raise (deterministic_settings), the random state is untouched, and the thread
    count is never changed. torch's own count already follows OMP_NUM_THREADS (or
    MKL_NUM_THREADS), torch.set_num_threads, and on Linux the CPUs this process may use
    (`taskset -c 0` gives one thread), so a count the user set is the one training runs with.
    """
    train_common.check_hyperparameters(hidden_dims, lr, batch_size, epochs, seed=seed)
    # check_hyperparameters bounds the seed to [0, 2**32) but lets 1.5 or True through
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    device = select_device(device)
    with deterministic_settings(device):
        cifar10 = cifar10_utils.get_cifar10(data_dir)
        train_common.check_batch_size(batch_size, len(cifar10["train"]))
        # Each split's pixels go to the device once, as uint8; batches are cut and normalised there.
        # The shuffling generator's seed is derived from `seed` by SeedSequence there,
        # so the data order and the weights below draw from independent streams.
        loaders = cifar10_utils.get_device_loaders(
            cifar10, batch_size, device, seed, eval_batch_size=EVAL_BATCH_SIZE
        )
        # Built on the CPU from a forked RNG: the same weights on every device, and the
        # caller's random state untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MLP(
                cifar10_utils.N_FEATURES,
                hidden_dims,
                cifar10_utils.N_CLASSES,
                use_batch_norm=use_batch_norm,
                batch_norm=batch_norm,
            )
        log_epochs = progress if log_epochs is None else log_epochs
        return run_epochs(model.to(device), loaders, lr, epochs, progress, log_epochs, epoch_callback)


def run_epochs(model, loaders, lr, epochs, progress, log_epochs, epoch_callback):
    """train()'s SGD loop over loaders {'train', 'validation', 'test'}; returns what train() does."""
    device = model.device
    loss_module = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    logging_info = train_common.new_logging_info()
    logging_info.update(device=str(device), best_epoch=None, batches_per_epoch=len(loaders["train"]))
    if epoch_callback is not None:
        epoch_callback(model, 0)

    best_state, best_accuracy = None, -1.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.train()
        # Kept on the device: reading each loss (.item()) would make the CPU wait for the
        # device at every step.
        batch_losses, n_checked, n_seen = [], 0, 0  # n_checked: steps whose losses were found finite
        n_correct = torch.zeros((), dtype=torch.int64, device=device)
        bar = tqdm(loaders["train"], desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
        for x, y in bar:
            logits = model(x)
            loss = loss_module(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.detach())
            n_correct += (logits.argmax(dim=1) == y).sum()
            n_seen += len(y)
            if len(batch_losses) % CHECK_EVERY == 0:
                recent = torch.stack(batch_losses[n_checked:])
                if not torch.isfinite(recent).all():
                    break
                n_checked = len(batch_losses)
                if progress:
                    bar.set_postfix(loss=f"{recent.mean().item():.3f}", refresh=False)
        bar.close()
        losses = torch.stack(batch_losses)
        finite = torch.isfinite(losses)
        if not finite.all():
            n_kept = int((~finite).nonzero()[0, 0]) + 1  # up to the first non-finite loss
            train_common.mark_diverged(logging_info, epoch, n_kept, losses[:n_kept].tolist())
            break

        val_accuracy = evaluate_model(model, loaders["validation"])
        train_common.log_epoch(
            logging_info,
            losses.tolist(),
            n_correct.item(),
            n_seen,
            val_accuracy,
            time.perf_counter() - start,
        )
        if log_epochs:
            tqdm.write(train_common.epoch_line(logging_info, epochs))
        if val_accuracy > best_accuracy:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_accuracy = val_accuracy
            logging_info["best_epoch"] = epoch
        if epoch_callback is not None:
            epoch_callback(model, epoch)

    test_accuracy = None
    if best_state is not None:
        model.load_state_dict(best_state)
        test_accuracy = evaluate_model(model, loaders["test"])
    model.eval()  # returned for evaluation: batch norm should use (and keep) its running statistics
    return model, logging_info["val_accuracy"], test_accuracy, logging_info


def main():
    parser = train_common.build_parser(__doc__.splitlines()[0], "mlp_pytorch")
    parser.add_argument(
        "--batch_norm",
        default="torch",
        choices=["torch", "manual"],
        help="with --use_batch_norm: torch's nn.BatchNorm1d, or the hand-written autograd.Function "
        "in mlp_pytorch.py",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA when available, else the CPU",
    )
    args = train_common.parse_run_args(parser, "model.pt")
    model, _, test_accuracy, logging_info = train(
        args.hidden_dims,
        args.lr,
        args.use_batch_norm,
        args.batch_size,
        args.epochs,
        args.seed,
        args.data_dir,
        device=args.device,
        progress=not args.no_progress,
        log_epochs=True,
        batch_norm=args.batch_norm,
    )
    # printed before saving: a failed save must not take the result with it
    print(
        f"{train_common.result_line(test_accuracy, logging_info)}, {logging_info['device']}; "
        f"saving to {args.output_dir}/",
        flush=True,
    )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # loads on any machine
    train_common.save_run(
        args.output_dir,
        {"framework": "PyTorch", **vars(args)},
        logging_info,
        test_accuracy,
        lambda f: torch.save(state, f),
        "model.pt",
        first_layer_weight=model.linears()[0].weight.detach().cpu().numpy(),
    )
    train_common.raise_if_diverged(logging_info)  # after saving: exit code 3 and one line on stderr


if __name__ == "__main__":
    train_common.run_cli(main)

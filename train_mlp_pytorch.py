"""Train the PyTorch MLP on CIFAR-10 with mini-batch SGD, on CUDA when available.

    python train_mlp_pytorch.py [--hidden_dims 128] [--lr 0.1] [--use_batch_norm]
                                [--batch_size 128] [--epochs 10] [--seed 42] [--data_dir data/]

Writes log.json, loss_curve.png and model.pt (the best model's state_dict by
validation accuracy) to --output_dir and prints the best model's test accuracy.
"""

import os
import random
import time

# cuBLAS is deterministic only with this workspace setting, read when CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import train_common  # noqa: E402 (first: its one-line interrupt serves the imports below)

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


def accuracy(predictions, targets):
    """Fraction of rows of predictions (S, C) whose argmax equals targets (S,) integer labels."""
    return (predictions.argmax(dim=1) == targets).float().mean().item()


def evaluate_model(model, data_loader):
    """Accuracy over the whole data set in eval mode (batch norm uses running statistics)."""
    was_training = model.training
    model.eval()
    n_correct = n_seen = 0
    with torch.no_grad():
        for x, y in data_loader:
            x, y = x.to(model.device, non_blocking=True), y.to(model.device, non_blocking=True)
            n_correct += (model(x).argmax(dim=1) == y).sum().item()
            n_seen += len(y)
    model.train(was_training)
    return n_correct / n_seen


def available_cores():
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def seed_everything(seed, device):
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the global RNG too, for code that uses it)
    torch.manual_seed(seed)  # seeds CUDA too
    if device.type == "cuda":
        # Every CPU op this model uses is deterministic already, and the switch imports
        # torch._inductor (over 1 s), so it is called only where it changes something.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


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
):
    """Train an MLP with SGD; keep the best epoch's weights by validation accuracy.

    Args:
        hidden_dims: list of hidden sizes.
        lr, batch_size, epochs, seed: SGD settings; the seed fixes weights and shuffling.
        use_batch_norm: BatchNorm1d between each hidden Linear and its ReLU.
        data_dir: directory with cifar-10-batches-py/ (downloaded there if missing).
        device: 'auto' (CUDA when available), 'cpu' or 'cuda'.
        progress: show a tqdm bar per epoch.
        log_epochs: print one line per epoch (default: when progress is shown).

    Returns:
        model: the MLP with the weights that did best on the validation set, in eval mode.
        val_accuracies: validation accuracy after each epoch.
        test_accuracy: the best model's accuracy on the test set.
        logging_info: per-epoch train_loss, train_accuracy, val_accuracy, epoch_time;
            batch_loss for every batch; best_epoch; device.
    """
    train_common.check_hyperparameters(hidden_dims, lr, batch_size, epochs)
    device = select_device(device)
    torch.set_num_threads(available_cores())
    seed_everything(seed, device)
    cifar10 = cifar10_utils.get_cifar10(data_dir)
    train_common.check_batch_size(batch_size, len(cifar10["train"]))
    train_loader = cifar10_utils.get_dataloader(cifar10, batch_size, seed=seed)["train"]
    eval_loaders = cifar10_utils.get_dataloader(cifar10, EVAL_BATCH_SIZE, seed=seed)

    model = MLP(cifar10_utils.N_FEATURES, hidden_dims, cifar10_utils.N_CLASSES, use_batch_norm).to(device)
    loss_module = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    logging_info = train_common.new_logging_info()
    logging_info["device"] = str(device)
    best_state, best_accuracy = None, -1.0
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        # kept on the device and read once per epoch: .item() per batch would stall CUDA
        batch_losses, n_correct, n_seen = [], torch.zeros((), dtype=torch.int64, device=device), 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress)
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = loss_module(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.detach())
            n_correct += (logits.argmax(dim=1) == y).sum()
            n_seen += len(y)
            if len(batch_losses) % 25 == 0 and progress:
                bar.set_postfix(loss=f"{torch.stack(batch_losses[-25:]).mean().item():.3f}", refresh=False)
        val_accuracy = evaluate_model(model, eval_loaders["validation"])
        train_common.log_epoch(
            logging_info,
            torch.stack(batch_losses).tolist(),
            n_correct.item(),
            n_seen,
            val_accuracy,
            time.perf_counter() - start,
        )
        if log_epochs if log_epochs is not None else progress:
            tqdm.write(
                f"epoch {epoch + 1:2d}/{epochs}: loss {logging_info['train_loss'][-1]:.4f}, "
                f"train acc {logging_info['train_accuracy'][-1]:.4f}, val acc {val_accuracy:.4f}"
            )
        if val_accuracy > best_accuracy:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_accuracy = val_accuracy
            logging_info["best_epoch"] = epoch + 1
    model.load_state_dict(best_state)
    model.eval()  # returned for evaluation: batch norm should use (and keep) its running statistics
    test_accuracy = evaluate_model(model, eval_loaders["test"])
    return model, logging_info["val_accuracy"], test_accuracy, logging_info


def main():
    parser = train_common.build_parser(__doc__.splitlines()[0], None)
    parser.add_argument("--use_batch_norm", action="store_true", help="BatchNorm1d after each hidden Linear")
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA when available, else the CPU",
    )
    args = parser.parse_args()
    if args.output_dir is None:
        name = "mlp_pytorch_batch_norm" if args.use_batch_norm else "mlp_pytorch"
        args.output_dir = os.path.join("results", name)
    train_common.check_output_dir(args.output_dir)
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
    )
    run_args = {"framework": "PyTorch", **vars(args)}
    state = {k: v.cpu().contiguous() for k, v in model.state_dict().items()}  # a plain nn.Linear layout
    out = train_common.save_run(
        args.output_dir, run_args, logging_info, test_accuracy, lambda f: torch.save(state, f), "model.pt"
    )
    print(
        f"test accuracy {test_accuracy:.4f} (best epoch {logging_info['best_epoch']}, "
        f"{logging_info['device']}); results in {out}/"
    )


if __name__ == "__main__":
    train_common.run_cli(main)

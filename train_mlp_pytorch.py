"""Train the PyTorch MLP on CIFAR-10 with mini-batch SGD, on CUDA when available.

    python train_mlp_pytorch.py [--hidden_dims 128] [--lr 0.1] [--use_batch_norm] [--device auto] ...

Prints the test accuracy of the best model by validation accuracy, then writes its state_dict
(model.pt), log.json and its figures to --output_dir. Exit codes as train_mlp_numpy.py's.
"""

import time

from support import cli

with cli.one_line_interrupt(__name__):  # Ctrl-C during the 1-2 s of `import torch` ends in one line too
    import torch
    from torch import nn
    from tqdm import tqdm

    import cifar10_utils
    import train_mlp_numpy
    from cifar10_utils import N_CLASSES, N_FEATURES
    from mlp_pytorch import MLP
    from support import checks, output, runlog
    from support.device_loader import get_device_loaders
    from support.torch_device import deterministic_settings, select_device

EVAL_BATCH_SIZE = 1000  # evaluation needs no gradients; larger batches only make it faster
CHECK_EVERY = 25  # steps between finiteness checks of the losses: each check waits for the device
confusion_matrix_to_metrics = train_mlp_numpy.confusion_matrix_to_metrics  # the same arithmetic on counts


def accuracy(predictions, targets):
    """Fraction of samples classified correctly, in [0, 1]: predictions are scores (S, C), e.g.
    logits; targets labels (S,) or one-hot/soft targets (S, C), told apart by ndim, not shape."""
    predictions, targets = torch.as_tensor(predictions), torch.as_tensor(targets)
    if not (predictions.ndim == 2 and targets.ndim in (1, 2) and len(targets) == len(predictions) > 0):
        shapes = f"{tuple(predictions.shape)} and {tuple(targets.shape)}"
        raise ValueError(f"accuracy needs predictions (S, C), targets (S,) or (S, C), S >= 1; got {shapes}")
    labels = (targets.argmax(dim=1) if targets.ndim == 2 else targets).to(predictions.device)
    return (predictions.argmax(dim=1) == labels).sum().item() / len(labels)


def confusion_matrix(predictions, targets):
    """train_mlp_numpy.confusion_matrix for tensors: (C, C) counts, row = true class, column = predicted."""
    as_numpy = [torch.as_tensor(a).detach().cpu().numpy() for a in (predictions, targets)]
    return train_mlp_numpy.confusion_matrix(*as_numpy)


def evaluate_model(model, data_loader):
    """Accuracy over the whole data set, every sample counted once whatever the batch sizes, in eval
    mode without gradients; correct predictions are summed on the device and read once at the end."""
    was_training, n_seen = model.training, 0
    model.eval()
    n_correct = torch.zeros((), dtype=torch.int64, device=model.device)
    with torch.no_grad():
        for x, y in data_loader:
            x, y = x.to(model.device), y.to(model.device)  # no copy when already there
            n_correct += (model(x).argmax(dim=1) == y).sum()
            n_seen += len(y)
    model.train(was_training)
    return n_correct.item() / n_seen


def train(hidden_dims, lr, use_batch_norm, batch_size, epochs, seed, data_dir, device="auto", progress=True,
          log_epochs=None, epoch_callback=None, batch_norm="torch", **options):  # fmt: skip
    """Train an MLP with SGD (torch.optim); keep the best epoch's weights by validation accuracy.

    seed fixes the weights (torch.manual_seed, as the skeleton) and the batches (a SeedSequence
    child, cifar10_utils.shuffle_seed): with and without batch norm, a seed gives the same initial
    Linear weights and batches. device: 'auto' (CUDA when available), 'cpu' or 'cuda'. log_epochs:
    a line per epoch (default: with progress). epoch_callback(model, epoch) runs after init (epoch 0)
    and each finished epoch; it must leave weights and mode as they were. batch_norm: 'torch' or
    'manual' (norm_torch.py). options, beyond 2021: as train_mlp_numpy.train's.

    Returns what train_mlp_numpy.train does, logging_info also naming the device. The losses stay
    on the device and are checked every CHECK_EVERY steps; the first non-finite one is then found
    exactly and training stops (the model may have taken a few more steps: hence the best epoch's
    weights are returned). Settings are restored on return; the thread count is never changed.
    """
    options["use_batch_norm"] = use_batch_norm
    checks.check_hyperparameters(hidden_dims, lr, batch_size, epochs, seed=seed, **options)
    model_options, rule, rule_options = checks.split_options(**options)
    device = select_device(device)
    with deterministic_settings(device):
        cifar10 = cifar10_utils.get_cifar10(data_dir)
        checks.check_batch_size(batch_size, len(cifar10["train"]))
        # each split's uint8 pixels go to the device once; batches are cut and normalised there
        loaders = get_device_loaders(cifar10, batch_size, device, seed, eval_batch_size=EVAL_BATCH_SIZE)
        with torch.random.fork_rng(devices=[]):  # the same weights on every device; caller's RNG untouched
            torch.manual_seed(seed)
            model = MLP(N_FEATURES, hidden_dims, N_CLASSES, batch_norm=batch_norm, **model_options).to(device)
        loss_module = nn.CrossEntropyLoss()
        optimizer = getattr(torch.optim, rule)(model.parameters(), lr=lr, **rule_options)
        logging_info = runlog.new_logging_info(device=str(device), best_epoch=None,
                                               batches_per_epoch=len(loaders["train"]))  # fmt: skip
        if epoch_callback is not None:
            epoch_callback(model, 0)
        best_state, best_accuracy = None, -1.0
        for epoch in range(1, epochs + 1):
            start, batch_losses, n_checked, n_seen = time.perf_counter(), [], 0, 0
            n_correct = torch.zeros((), dtype=torch.int64, device=device)
            bar = tqdm(loaders["train"], desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
            for x, y in bar:
                # forward: logits and the batch's mean cross-entropy
                logits = model(x)
                loss = loss_module(logits, y)
                # backward and update: autograd fills every .grad, the optimizer steps
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                # kept on the device: reading each loss would make the CPU wait at every step
                batch_losses.append(loss.detach())
                n_correct += (logits.argmax(dim=1) == y).sum()
                n_seen += len(y)
                if len(batch_losses) % CHECK_EVERY == 0:
                    recent = torch.stack(batch_losses[n_checked:])
                    if not torch.isfinite(recent).all():
                        break
                    n_checked = len(batch_losses)
                    bar.set_postfix(loss=f"{recent.mean().item():.3f}", refresh=False)
            bar.close()
            losses = torch.stack(batch_losses)
            finite = torch.isfinite(losses)
            if not finite.all():
                n_kept = int((~finite).nonzero()[0, 0]) + 1  # up to the first non-finite loss
                runlog.mark_diverged(logging_info, epoch, n_kept, losses[:n_kept].tolist())
                break
            # validation, and the best weights so far kept
            val_accuracy = evaluate_model(model, loaders["validation"])
            seconds = time.perf_counter() - start
            runlog.log_epoch(logging_info, losses.tolist(), n_correct.item(), n_seen, val_accuracy, seconds)
            if progress if log_epochs is None else log_epochs:
                tqdm.write(runlog.epoch_line(logging_info, epochs))
            if val_accuracy > best_accuracy:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best_accuracy, logging_info["best_epoch"] = val_accuracy, epoch
            if epoch_callback is not None:
                epoch_callback(model, epoch)
        test_accuracy = None
        model.eval()  # returned for evaluation: batch norm uses (and keeps) its running statistics
        if best_state is not None:  # the best weights on the test set: accuracy, confusion matrix, metrics
            model.load_state_dict(best_state)
            test_accuracy = evaluate_model(model, loaders["test"])
            with torch.no_grad():
                scores = torch.cat([model(x) for x, _ in loaders["test"]])
            matrix = confusion_matrix(scores, cifar10["test"].labels)
            metrics = runlog.metrics_record(matrix, confusion_matrix_to_metrics, cifar10["test"].classes)
            logging_info["test_metrics"] = metrics
    return model, logging_info["val_accuracy"], test_accuracy, logging_info


def main():
    args = cli.parse_run_args(cli.build_parser(__doc__.splitlines()[0], "mlp_pytorch"), "model.pt")
    model, _, test_accuracy, logging_info = train(**cli.train_arguments(args), log_epochs=True)
    # printed before saving: a failed save must not take the result with it
    line = runlog.result_line(test_accuracy, logging_info)
    print(f"{line}, {logging_info['device']}; saving to {args.output_dir}/", flush=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # loads on any machine
    weight = model.linears()[0].weight.detach().cpu().numpy()
    output.save_run({"framework": "PyTorch", **vars(args)}, logging_info, test_accuracy,
                    lambda f: torch.save(state, f), weight, model_name="model.pt")  # fmt: skip
    cli.raise_if_diverged(logging_info)  # after saving: exit code 3 and one line on stderr


if __name__ == "__main__":
    cli.run_cli(main)

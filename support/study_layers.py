"""Per-layer statistics of a study's runs, on one fixed batch, after initialisation and each epoch.

For each hidden layer, on the first 500 validation images: mean and standard deviation of the
pre-activations (the ReLU's input, after batch norm where there is one), standard deviation of
the Linear output (before batch norm), the fractions of ReLUs dead on the batch (output zero for
every image) and of zero activations, and the norms of each Linear's weight and of its gradient
on that batch. They are computed in train mode, as the training steps see the network: batch
norm normalises with the batch's own statistics, and its running statistics are restored
afterwards, so the run is unchanged. (Eval mode would show batch norm as the identity at epoch
0, where its running statistics are still 0 and 1.) torch is imported where it is used: the
figures and tables need none.
"""

import hashlib

import cifar10_utils


def layer_statistics(model, x, y):
    """Statistics of every layer of `model` on the batch (x, y), as the module docstring says.

    Runs in train mode (batch norm uses the batch's statistics) and leaves the model as it
    was: mode, running statistics and parameter gradients (torch.autograd.grad does not
    write .grad).

    Returns:
        {"loss": float, "layers": [per hidden layer {"linear_std", "preact_mean", "preact_std",
        "dead_fraction", "zero_fraction", "weight_norm", "weight_grad_norm"}, ..., output
        {"linear_std", "weight_norm", "weight_grad_norm"}]} (Frobenius norms; stds over all
        the batch's values of the layer, samples and units together).
    """
    import torch
    from torch import nn

    was_training = model.training
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    model.train()
    try:
        with torch.enable_grad():
            h, layers, linears = x.reshape(len(x), -1), [], []
            for module in model.layers:
                out = module(h)
                if isinstance(module, nn.Linear):
                    layers.append({"linear_std": out.detach().std(correction=0)})
                    linears.append(module)
                elif isinstance(module, nn.ReLU):
                    pre = h.detach()  # the ReLU's input: after batch norm where there is one
                    layers[-1].update(
                        preact_mean=pre.mean(),
                        preact_std=pre.std(correction=0),
                        dead_fraction=(pre <= 0).all(dim=0).float().mean(),
                        zero_fraction=(out == 0).float().mean(),
                    )
                h = out
            loss = nn.functional.cross_entropy(h, y)
            grads = torch.autograd.grad(loss, [linear.weight for linear in linears])
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        model.train(was_training)
    for layer, linear, grad in zip(layers, linears, grads, strict=True):
        layer["weight_norm"] = linear.weight.detach().norm()
        layer["weight_grad_norm"] = grad.norm()
    return {
        "loss": loss.item(),
        "layers": [{k: v.item() for k, v in layer.items()} for layer in layers],
    }


def weights_fingerprint(model):
    """A short hash of the Linear layers' weights and biases: equal for the two arms of a pair."""
    digest = hashlib.sha256()
    for linear in model.linears():
        for p in (linear.weight, linear.bias):
            digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class LayerStatistics:
    """The study's epoch_callback: layer_statistics() on a fixed batch at every call.

    The batch (the first n_images validation images, normalised as for training) is read
    on the first call and kept for every later run of the study. new_run() starts a run's
    record; after training, record() gives its layer_stats and init_fingerprint.
    """

    def __init__(self, data_dir, n_images):
        self.data_dir, self.n_images, self._batch = data_dir, n_images, None
        self.new_run()

    def new_run(self):
        self.calls, self.fingerprint = [], None

    def fixed_batch(self, device):
        if self._batch is None:
            # only the validation split goes to the device, and it runs in order: the first images
            from support.device_loader import DeviceLoader

            validation = cifar10_utils.get_cifar10(self.data_dir)["validation"]
            self._batch = next(iter(DeviceLoader(validation, self.n_images, device)))
        return tuple(t.to(device) for t in self._batch)

    def __call__(self, model, epoch):
        x, y = self.fixed_batch(model.device)
        if epoch == 0:
            self.fingerprint = weights_fingerprint(model)
        self.calls.append((epoch, layer_statistics(model, x, y)))

    def record(self):
        """{"layer_stats": {"images", "epochs", "loss", "layers": [{stat: [per epoch]}]},
        "init_fingerprint"}."""
        layers = []
        for i in range(len(self.calls[0][1]["layers"]) if self.calls else 0):
            names = self.calls[0][1]["layers"][i]
            layers.append({name: [stats["layers"][i][name] for _, stats in self.calls] for name in names})
        return {
            "layer_stats": {
                "images": len(self._batch[1]) if self._batch else 0,
                "epochs": [epoch for epoch, _ in self.calls],
                "loss": [stats["loss"] for _, stats in self.calls],
                "layers": layers,
            },
            "init_fingerprint": self.fingerprint,
        }

"""The MLP in PyTorch, with optional batch normalization, and batch normalization written by hand.

- MLP: Linear -> [BatchNorm] -> ReLU per hidden layer, then a final Linear giving logits. Its weights
  are ordinary nn.Linear parameters, so its state_dict loads into any MLP built with nn.Linear in the
  same layer order.
- BatchNormFunction: batch normalization in training mode as a torch.autograd.Function whose
  backward pass is the closed form derived in docs/backprop.md (the NumPy BatchNormModule's formula,
  in torch), instead of the one autograd would build from the forward pass.
- BatchNorm: a module around BatchNormFunction with the parameters and buffers of nn.BatchNorm1d, so
  their state_dicts are interchangeable. MLP(..., batch_norm="manual") uses it.
"""

import torch
from torch import nn
from torch.autograd.function import once_differentiable

BATCH_NORM_KINDS = ("torch", "manual")


class BatchNormFunction(torch.autograd.Function):
    """Training-mode batch normalization, y = gamma * x_hat + beta, with a hand-written backward.

    Per feature j over the S samples of the batch:
        mu_j = (1/S) sum_s x_sj,    var_j = (1/S) sum_s (x_sj - mu_j)^2   (biased, as in the normalisation)
        x_hat_sj = (x_sj - mu_j) / sqrt(var_j + eps),    y_sj = gamma_j x_hat_sj + beta_j

    Backward, with dout = dL/dy (sums over the batch dimension s):
        dL/dbeta_j  = sum_s dout_sj
        dL/dgamma_j = sum_s dout_sj x_hat_sj
        dL/dx_sj    = gamma_j / (S sqrt(var_j + eps)) * (S dout_sj - dL/dbeta_j - x_hat_sj dL/dgamma_j)

    The last line is the whole chain through mu and var collapsed into one expression
    (docs/backprop.md derives it stage by stage); it needs only x_hat and 1/sqrt(var + eps) from
    the forward pass.

    Use: ``out = BatchNormFunction.apply(x, weight, bias, eps)``.

    Shape:
        x (S, F) with S >= 2, weight (F,), bias (F,) -> out (S, F).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        mean = x.mean(dim=0)
        centred = x - mean
        var = centred.square().mean(dim=0)  # biased: divides by S
        inv_std = torch.rsqrt(var + eps)
        x_hat = centred * inv_std
        ctx.save_for_backward(x_hat, weight, inv_std)
        return x_hat * weight + bias

    @staticmethod
    @once_differentiable  # the backward is not itself differentiable by autograd: say so, loudly
    def backward(ctx, dout):
        x_hat, weight, inv_std = ctx.saved_tensors
        n_samples = dout.shape[0]
        dbias = dout.sum(dim=0)
        dweight = (dout * x_hat).sum(dim=0)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = (weight * inv_std / n_samples) * (n_samples * dout - dbias - x_hat * dweight)
        # one gradient per input of forward(); eps gets none
        return dx, dweight, dbias, None


class BatchNorm(nn.Module):
    """Batch normalization over the features of (S, F) inputs, with a hand-written backward pass.

    A drop-in for nn.BatchNorm1d(n_features, eps, momentum) on 2-D inputs: the same parameters
    (weight = gamma, ones; bias = beta, zeros) and buffers (running_mean, zeros; running_var, ones;
    num_batches_tracked), under the same names, so state_dicts load either way.

    Training mode normalises with the batch's own mean and biased variance (BatchNormFunction) and
    updates the running estimates with PyTorch's convention,
        running = (1 - momentum) * running + momentum * batch statistic,
    using the unbiased variance (divided by S - 1) for running_var. Eval mode normalises with the
    running estimates, so each sample's output no longer depends on the rest of the batch; it is a
    fixed affine map, left to autograd.

    Args:
        n_features: F, the number of features (the width of the Linear layer before it).
        eps: added to the variance before the square root.
        momentum: weight of the newest batch in the running estimates, in [0, 1].

    Shape:
        x (S, F) -> out (S, F); S >= 2 in training mode (the variance of one sample is undefined).
    """

    def __init__(self, n_features, eps=1e-5, momentum=0.1):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum}")
        if not eps > 0:
            raise ValueError(f"BatchNorm eps must be positive, got {eps}")
        self.num_features = n_features  # nn.BatchNorm1d's attribute name
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.empty(n_features))
        self.bias = nn.Parameter(torch.empty(n_features))
        self.register_buffer("running_mean", torch.zeros(n_features))
        self.register_buffer("running_var", torch.ones(n_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.reset_parameters()

    def reset_running_stats(self):
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def reset_parameters(self):
        """gamma = 1, beta = 0 (the identity on x_hat), and fresh running statistics."""
        self.reset_running_stats()
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm({self.num_features}) expects input (S, {self.num_features}), got {tuple(x.shape)}"
            )
        if not self.training:
            inv_std = torch.rsqrt(self.running_var + self.eps)
            return (x - self.running_mean) * inv_std * self.weight + self.bias
        if x.shape[0] < 2:
            raise ValueError(
                f"BatchNorm in training mode needs at least 2 samples per batch, got {x.shape[0]}"
            )
        out = BatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():  # bookkeeping, not part of the computation that is differentiated
            self.running_mean.lerp_(x.mean(dim=0), self.momentum)
            self.running_var.lerp_(x.var(dim=0, correction=1), self.momentum)  # unbiased
            self.num_batches_tracked += 1
        return out

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class MLP(nn.Module):
    """Per hidden size Linear -> [batch norm] -> ReLU, then a final Linear giving logits.

    Args:
        n_inputs: features per sample (3072 for CIFAR-10).
        n_hidden: list of hidden sizes; [] gives multinomial logistic regression.
        n_classes: number of classes C.
        use_batch_norm: put a batch-norm layer between each hidden Linear and its ReLU.
        batch_norm: which batch-norm layer: "torch" for nn.BatchNorm1d, "manual" for this file's
            BatchNorm (hand-written backward). Both have the same parameters, buffers and
            state_dict keys, and compute the same function.

    Layers are kept in ``self.layers``, an nn.Sequential, so the state_dict keys are
    ``layers.0.weight``, ``layers.0.bias``, ... in layer order: the same keys as any MLP written as
    ``self.layers = nn.Sequential(nn.Linear(...), nn.ReLU(), ...)``. The weights are plain
    nn.Linear parameters (contiguous, (out_features, in_features)).

    Weights are Kaiming normal with the NumPy LinearModule's variances: 1/fan_in for the first layer
    (its inputs are normalized pixels, not ReLU outputs), 2/fan_in for the others. Biases are zero.
    The batch-norm layers draw no random numbers, so after torch.manual_seed(s) a model with batch
    norm gets the same Linear weights as one without: runs with and without it are paired.

    Shape:
        x (S, n_inputs) or (S, 3, 32, 32) -> logits (S, C). No softmax: use nn.CrossEntropyLoss,
        which applies log-softmax itself.
    """

    def __init__(self, n_inputs, n_hidden, n_classes, use_batch_norm=False, batch_norm="torch"):
        super().__init__()
        if batch_norm not in BATCH_NORM_KINDS:
            raise ValueError(f"batch_norm must be one of {BATCH_NORM_KINDS}, got {batch_norm!r}")
        self.use_batch_norm = use_batch_norm
        self.batch_norm = batch_norm
        norm_layer = nn.BatchNorm1d if batch_norm == "torch" else BatchNorm
        sizes = [n_inputs, *n_hidden]
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers.append(nn.Linear(fan_in, fan_out))
            if use_batch_norm:
                layers.append(norm_layer(fan_out))
            layers.append(nn.ReLU())
        layers.append(nn.Linear(sizes[-1], n_classes))
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def linears(self):
        """The nn.Linear layers, first to last."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def reset_parameters(self):
        """Kaiming normal weights (1/fan_in first layer, 2/fan_in others), zero biases.

        Draws from torch's global generator in layer order, Linear layers only.
        """
        for i, linear in enumerate(self.linears()):
            # 'linear' gain gives variance 1/fan_in, 'relu' gives 2/fan_in
            nn.init.kaiming_normal_(linear.weight, nonlinearity="linear" if i == 0 else "relu")
            nn.init.zeros_(linear.bias)

    def forward(self, x):
        """Logits for a batch; images are flattened to (S, n_inputs) first."""
        return self.layers(x.reshape(len(x), -1))

    @property
    def device(self):
        """The device of the parameters."""
        return next(self.parameters()).device

    def extra_repr(self):
        return f"use_batch_norm={self.use_batch_norm}, batch_norm={self.batch_norm!r}"


def select_device(name="auto"):
    """'auto': CUDA when available, else the CPU. 'cuda' where there is none is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(name)

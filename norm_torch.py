"""Batch and layer normalization for PyTorch, each a torch.autograd.Function whose backward is the
closed form derived in docs/backprop.md (the NumPy modules' formulas, in torch), instead of the one
autograd would build from the forward pass; and modules around them whose parameters, buffers and
state_dict names are nn.BatchNorm1d's and nn.LayerNorm's, so state_dicts load either way.

    MLP(..., use_batch_norm=True, batch_norm="manual")    # BatchNorm below
    MLP(..., use_layer_norm=True, layer_norm="manual")    # LayerNorm below
"""

import torch
from torch import nn
from torch.autograd.function import once_differentiable


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


class LayerNormFunction(torch.autograd.Function):
    """Layer normalization, y = gamma * x_hat + beta, with a hand-written backward.

    Per sample s over its F features (the same in training and eval, for any batch size):
        mu_s = (1/F) sum_j x_sj,    var_s = (1/F) sum_j (x_sj - mu_s)^2   (biased)
        x_hat_sj = (x_sj - mu_s) / sqrt(var_s + eps),    y_sj = gamma_j x_hat_sj + beta_j

    Backward, with dout = dL/dy and g = gamma * dout (sums over the feature dimension k):
        dL/dbeta_j  = sum_s dout_sj,    dL/dgamma_j = sum_s dout_sj x_hat_sj
        dL/dx_sj    = 1 / (F sqrt(var_s + eps)) * (F g_sj - sum_k g_sk - x_hat_sj sum_k g_sk x_hat_sk)

    Batch norm's formula with the roles of samples and features exchanged (docs/backprop.md).

    Use: ``out = LayerNormFunction.apply(x, weight, bias, eps)``.

    Shape:
        x (S, F), weight (F,), bias (F,) -> out (S, F).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        var = centred.square().mean(dim=1, keepdim=True)  # biased: divides by F
        inv_std = torch.rsqrt(var + eps)
        x_hat = centred * inv_std
        ctx.save_for_backward(x_hat, weight, inv_std)
        return x_hat * weight + bias

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x_hat, weight, inv_std = ctx.saved_tensors
        n_features = dout.shape[1]
        dbias = dout.sum(dim=0)
        dweight = (dout * x_hat).sum(dim=0)
        dx = None
        if ctx.needs_input_grad[0]:
            g = dout * weight
            g_sum = g.sum(dim=1, keepdim=True)
            g_x_hat_sum = (g * x_hat).sum(dim=1, keepdim=True)
            dx = (inv_std / n_features) * (n_features * g - g_sum - x_hat * g_x_hat_sum)
        return dx, dweight, dbias, None


class LayerNorm(nn.Module):
    """Layer normalization over the features of (S, F) inputs, with a hand-written backward pass.

    A drop-in for nn.LayerNorm(n_features, eps) on 2-D inputs: the same parameters (weight = gamma,
    ones; bias = beta, zeros), under the same names and shapes (F,), so state_dicts load either way.
    No running statistics: each sample is normalised by its own mean and variance.

    Shape:
        x (S, F) -> out (S, F), any S >= 1.
    """

    def __init__(self, n_features, eps=1e-5):
        super().__init__()
        if not eps > 0:
            raise ValueError(f"LayerNorm eps must be positive, got {eps}")
        self.normalized_shape = (n_features,)  # nn.LayerNorm's attribute name
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_features))
        self.bias = nn.Parameter(torch.zeros(n_features))

    def forward(self, x):
        (n_features,) = self.normalized_shape
        if x.dim() != 2 or x.shape[1] != n_features:
            raise ValueError(f"LayerNorm({n_features}) expects input (S, {n_features}), got {tuple(x.shape)}")
        return LayerNormFunction.apply(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape[0]}, eps={self.eps}"

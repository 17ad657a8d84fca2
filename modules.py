"""The NumPy modules of the MLP, each backward beside its forward.

Every module works on a batch of S row vectors. The derivations, in index
notation, are in docs/backprop.md; each backward's docstring states the closed
form it implements. Modules built without a ``dtype`` argument compute in
float64 throughout, so finite-difference gradient checks are exact to ~1e-10;
training passes ``dtype=np.float32`` for twice the matmul speed.

Misuse is a ValueError with one readable line rather than a matmul error deep
inside NumPy: a single sample without its batch axis, the wrong number of
features, an empty batch, or ``backward`` before ``forward``. The checks look at
shapes only, so they cost nothing next to the arithmetic.
"""

from functools import partial

import numpy as np


class LinearModule:
    """Y = X W^T + b.

    Args:
        in_features, out_features: M and N.
        input_layer: the first layer of a network. Its inputs are normalized
            pixels, not ReLU outputs, so Kaiming's variance is 1/M instead of 2/M.
        dtype: floating type of the parameters and of the computation.
        rng: a np.random.Generator for the weights (default: NumPy's global RNG).

    Shape:
        X (S, M) -> Y (S, N); params['weight'] (N, M), params['bias'] (1, N);
        grads alike.
    """

    def __init__(self, in_features, out_features, input_layer=False, dtype=np.float64, rng=None):
        rng = np.random if rng is None else rng
        gain = 1.0 if input_layer else 2.0
        self.in_features, self.out_features, self.input_layer = in_features, out_features, input_layer
        weight = rng.standard_normal((out_features, in_features)) * np.sqrt(gain / in_features)
        self.params = {
            "weight": weight.astype(dtype, copy=False),
            "bias": np.zeros((1, out_features), dtype=dtype),
        }
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.x = None

    def forward(self, x):
        """(S, M) -> (S, N)."""
        _check_batch(self, x, self.in_features)
        self.x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, dout, input_grad=True):
        """dL/dW = dout^T X, dL/db = 1^T dout, dL/dX = dout W.

        input_grad=False skips dL/dX (returns None): the first layer's inputs are
        pixels, and nothing upstream needs their gradient.
        """
        x = _cached(self, self.x)
        _check_dout(self, dout, (len(x), self.out_features))
        self.grads["weight"] = dout.T @ x
        self.grads["bias"] = dout.sum(axis=0, keepdims=True)
        return dout @ self.params["weight"] if input_grad else None

    def clear_cache(self):
        self.x = None

    def __repr__(self):
        return (
            f"LinearModule(in_features={self.in_features}, out_features={self.out_features}, "
            f"input_layer={self.input_layer}, dtype={self.params['weight'].dtype})"
        )


class BatchNormModule:
    """Y = γ ∘ X̂ + β, with X̂ = (X − μ) / sqrt(σ² + ε) normalising each feature over the batch.

    In training mode μ and σ² are the batch's mean and biased variance (1/S) per
    feature, and the running estimates follow PyTorch's convention:
    running = (1 − momentum) · running + momentum · batch statistic, with the
    unbiased variance (1/(S − 1)) in running_var. In eval mode the running
    estimates take the place of μ and σ², so each sample is normalised on its own.

    Args:
        n_features: N, the width of the layer it follows.
        eps: ε, added to the variance so a constant feature does not divide by 0.
        momentum: weight of the newest batch in the running estimates.
        dtype: floating type of the parameters and of the computation.

    Attributes:
        params: {'weight': γ (ones), 'bias': β (zeros)}, each (1, N); grads alike.
        running_mean (zeros), running_var (ones): (1, N).
        training: True at construction; train() and eval() set it.

    Shape:
        X (S, N) -> Y (S, N); S >= 2 in training mode.
    """

    def __init__(self, n_features, eps=1e-5, momentum=0.1, dtype=np.float64):
        self.n_features, self.eps, self.momentum = n_features, eps, momentum
        self.params = {
            "weight": np.ones((1, n_features), dtype=dtype),
            "bias": np.zeros((1, n_features), dtype=dtype),
        }
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.running_mean = np.zeros((1, n_features), dtype=dtype)
        self.running_var = np.ones((1, n_features), dtype=dtype)
        self.training = True
        self.x_hat = self.inv_std = None
        self.batch_stats = None  # whether the cached forward normalised with the batch's own statistics

    def train(self, mode=True):
        """Normalise with batch statistics (mode=True) or with the running estimates (mode=False)."""
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x):
        """(S, N) -> (S, N)."""
        _check_batch(self, x, self.n_features)
        if self.training:
            s = len(x)
            if s < 2:
                raise ValueError(
                    "BatchNormModule needs at least 2 samples per batch in training mode "
                    "(the variance of one sample is 0); call eval() to use the running estimates"
                )
            mean = x.mean(axis=0, keepdims=True)
            centred = x - mean
            var = (centred**2).mean(axis=0, keepdims=True)  # biased (1/S): what normalises the batch
            self.inv_std = 1.0 / np.sqrt(var + self.eps)
            self.x_hat = centred * self.inv_std
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mean
            self.running_var = (1 - m) * self.running_var + m * var * (s / (s - 1))  # unbiased
        else:
            self.inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
            self.x_hat = (x - self.running_mean) * self.inv_std
        self.batch_stats = self.training
        return self.params["weight"] * self.x_hat + self.params["bias"]

    def backward(self, dout):
        """dL/dγ = 1^T (dout ∘ X̂), dL/dβ = 1^T dout, dL/dX = (D − mean(D) − X̂ ∘ mean(D ∘ X̂)) / σ̃.

        Here D = dout ∘ γ, σ̃ = sqrt(σ² + ε) and the means are over the batch, per feature.
        After an eval-mode forward μ and σ² are constants, and dL/dX = D / σ̃.
        """
        x_hat = _cached(self, self.x_hat)
        _check_dout(self, dout, x_hat.shape)
        self.grads["weight"] = (dout * x_hat).sum(axis=0, keepdims=True)
        self.grads["bias"] = dout.sum(axis=0, keepdims=True)
        d_x_hat = dout * self.params["weight"]
        if not self.batch_stats:
            return d_x_hat * self.inv_std
        mean_d = d_x_hat.mean(axis=0, keepdims=True)
        mean_d_x_hat = (d_x_hat * x_hat).mean(axis=0, keepdims=True)
        return (d_x_hat - mean_d - x_hat * mean_d_x_hat) * self.inv_std

    def clear_cache(self):
        self.x_hat = self.inv_std = self.batch_stats = None

    def __repr__(self):
        return (
            f"BatchNormModule(n_features={self.n_features}, eps={self.eps}, momentum={self.momentum}, "
            f"dtype={self.params['weight'].dtype}, training={self.training})"
        )


class ReLUModule:
    """Y = max(0, X), element-wise.

    Shape:
        X (S, N) -> Y (S, N).
    """

    def __init__(self):
        self.positive = None

    def forward(self, x):
        _check_batch(self, x)
        self.positive = x > 0
        return np.maximum(x, 0)

    def backward(self, dout):
        """dL/dX = dout ∘ 1[X > 0]."""
        positive = _cached(self, self.positive)
        _check_dout(self, dout, positive.shape)
        return dout * positive

    def clear_cache(self):
        self.positive = None

    def __repr__(self):
        return "ReLUModule()"


class ELUModule:
    """Y = X where X > 0, else α (exp(X) − 1), element-wise.

    Args:
        alpha: α, the value Y approaches as X → −∞ is −α.

    Shape:
        X (S, N) -> Y (S, N).
    """

    def __init__(self, alpha=1.0):
        self.alpha = alpha
        self.x = None

    def forward(self, x):
        _check_batch(self, x)
        self.x = x
        # expm1 of the negative part only: exact near 0, and exp never overflows on large positive x
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def backward(self, dout):
        """dL/dX = dout ∘ h'(X), with h'(x) = 1 for x > 0, else α exp(x)."""
        x = _cached(self, self.x)
        _check_dout(self, dout, x.shape)
        return dout * np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0)))

    def clear_cache(self):
        self.x = None

    def __repr__(self):
        return f"ELUModule(alpha={self.alpha})"


class LeakyReLUModule:
    """Y = X where X > 0, else neg_slope · X, element-wise.

    Shape:
        X (S, N) -> Y (S, N).
    """

    def __init__(self, neg_slope=0.01):
        self.neg_slope = neg_slope
        self.positive = None

    def forward(self, x):
        _check_batch(self, x)
        self.positive = x > 0
        return np.where(self.positive, x, self.neg_slope * x)

    def backward(self, dout):
        """dL/dX = dout ∘ h'(X), with h'(x) = 1 for x > 0, else neg_slope (PyTorch's h'(0))."""
        positive = _cached(self, self.positive)
        _check_dout(self, dout, positive.shape)
        return np.where(positive, dout, self.neg_slope * dout)

    def clear_cache(self):
        self.positive = None

    def __repr__(self):
        return f"LeakyReLUModule(neg_slope={self.neg_slope})"


class LayerNormModule:
    """Y = γ ∘ X̂ + β, with X̂ = (X − μ) / sqrt(σ² + ε) normalising each sample over its features.

    μ and σ² are each row's mean and biased variance (1/N): a sample is normalised
    on its own, so training and eval compute the same, and one sample (S = 1) works.

    Args:
        n_features: N, the width of the layer it follows.
        eps: ε, added to the variance so a constant row does not divide by 0.
        dtype: floating type of the parameters and of the computation.

    Attributes:
        params: {'weight': γ (ones), 'bias': β (zeros)}, each (1, N); grads alike.

    Shape:
        X (S, N) -> Y (S, N).
    """

    def __init__(self, n_features, eps=1e-5, dtype=np.float64):
        self.n_features, self.eps = n_features, eps
        self.params = {
            "weight": np.ones((1, n_features), dtype=dtype),
            "bias": np.zeros((1, n_features), dtype=dtype),
        }
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.x_hat = self.inv_std = None

    def forward(self, x):
        """(S, N) -> (S, N)."""
        _check_batch(self, x, self.n_features)
        centred = x - x.mean(axis=1, keepdims=True)
        var = (centred**2).mean(axis=1, keepdims=True)  # biased (1/N), as nn.LayerNorm
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.x_hat = centred * self.inv_std
        return self.params["weight"] * self.x_hat + self.params["bias"]

    def backward(self, dout):
        """dL/dγ = 1^T (dout ∘ X̂), dL/dβ = 1^T dout, dL/dX = (D − mean(D) − X̂ ∘ mean(D ∘ X̂)) / σ̃.

        Here D = dout ∘ γ, σ̃ = sqrt(σ² + ε) (S, 1), and the means are over the features, per
        sample: batch norm's formula with the roles of rows and columns exchanged.
        """
        x_hat = _cached(self, self.x_hat)
        _check_dout(self, dout, x_hat.shape)
        self.grads["weight"] = (dout * x_hat).sum(axis=0, keepdims=True)
        self.grads["bias"] = dout.sum(axis=0, keepdims=True)
        d_x_hat = dout * self.params["weight"]
        mean_d = d_x_hat.mean(axis=1, keepdims=True)
        mean_d_x_hat = (d_x_hat * x_hat).mean(axis=1, keepdims=True)
        return (d_x_hat - mean_d - x_hat * mean_d_x_hat) * self.inv_std

    def clear_cache(self):
        self.x_hat = self.inv_std = None

    def __repr__(self):
        return (
            f"LayerNormModule(n_features={self.n_features}, eps={self.eps}, "
            f"dtype={self.params['weight'].dtype})"
        )


class DropoutModule:
    """Inverted dropout: Y = X ∘ M / (1 − p) in training, Y = X in eval.

    M_ij ~ Bernoulli(1 − p), drawn afresh at each training forward. Dividing by
    1 − p keeps E[Y] = X, so eval needs no rescaling.

    Args:
        p: the probability of zeroing an entry, 0 <= p < 1.
        rng: a np.random.Generator for the masks (default: NumPy's global RNG).

    Attributes:
        training: True at construction; train() and eval() set it.

    Shape:
        X (S, N) -> Y (S, N).
    """

    def __init__(self, p=0.5, rng=None):
        if not 0 <= p < 1:
            raise ValueError(f"DropoutModule needs 0 <= p < 1, got p={p}")
        self.p, self.rng, self.training = p, rng, True
        self.shape = self.scale = None  # scale M / (1 − p) of the last forward; None: the identity

    def train(self, mode=True):
        """Drop entries (mode=True) or pass the input through (mode=False)."""
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x):
        _check_batch(self, x)
        self.shape, self.scale = np.shape(x), None
        if not self.training or self.p == 0:
            return x
        rng = np.random if self.rng is None else self.rng
        keep = rng.random(self.shape) >= self.p  # True with probability 1 − p
        self.scale = keep.astype(x.dtype) / (1 - self.p)
        return x * self.scale

    def backward(self, dout):
        """dL/dX = dout ∘ M / (1 − p) in training (the mask of the last forward), dout in eval."""
        _check_dout(self, dout, _cached(self, self.shape))
        return dout if self.scale is None else dout * self.scale

    def clear_cache(self):
        self.shape = self.scale = None

    def __repr__(self):
        return f"DropoutModule(p={self.p}, training={self.training})"


class SoftMaxModule:
    """Y_ij = exp(X_ij) / sum_k exp(X_ik), row-wise.

    The row maximum is subtracted first: softmax is unchanged by a shift, and
    exp then never overflows, whatever the size of the inputs.

    Shape:
        X (S, C) -> Y (S, C), rows summing to 1.
    """

    def __init__(self):
        self.y = None

    def forward(self, x):
        _check_batch(self, x)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        self.y = e
        return e

    def backward(self, dout):
        """dL/dX = Y ∘ (dout − (dout ∘ Y) 1 1^T): no per-sample Jacobian."""
        y = _cached(self, self.y)
        _check_dout(self, dout, y.shape)
        return y * (dout - (dout * y).sum(axis=1, keepdims=True))

    def clear_cache(self):
        self.y = None

    def __repr__(self):
        return "SoftMaxModule()"


class CrossEntropyModule:
    """L = −(1/S) Σ_ik T_ik log X_ik, for probabilities X and targets T.

    ``y`` may be integer labels (S,) or targets T (S, C), one-hot or soft; other
    shapes, and labels outside 0..C−1, are a ValueError.
    Probabilities are clamped below at EPS = 1e-30 before log and division: a
    probability that underflowed to 0 then costs at most −log(1e-30) ≈ 69.1
    per sample, and the gradient −T/max(X, EPS)/S stays finite (≤ 1e30/S,
    below float32's 3.4e38). The clamp never touches probabilities above 1e-30.

    Shape:
        X (S, C), y (S,) or (S, C) -> scalar loss; backward -> (S, C).
    """

    EPS = 1e-30

    def forward(self, x, y):
        _check_batch(self, x)
        _check_targets(x, y)
        s = len(x)
        if np.ndim(y) == 1:
            return -np.log(np.maximum(x[np.arange(s), y], self.EPS)).sum() / s
        return -(y * np.log(np.maximum(x, self.EPS))).sum() / s

    def backward(self, x, y):
        """dL/dX = −T ⊘ X / S."""
        _check_batch(self, x)
        _check_targets(x, y)
        s = len(x)
        if np.ndim(y) == 1:
            dx = np.zeros_like(x)
            rows = np.arange(s)
            dx[rows, y] = -1.0 / (np.maximum(x[rows, y], self.EPS) * s)
            return dx
        return -y / (np.maximum(x, self.EPS) * s)

    def __repr__(self):
        return "CrossEntropyModule()"


def activation_by_name(name, alpha=1.0, neg_slope=0.01):
    """A function building a fresh hidden activation at each call: "relu", "elu" (ELU's alpha) or
    "leaky_relu" (its neg_slope); any other name is a ValueError here, before a layer is built."""
    makers = {
        "relu": ReLUModule,
        "elu": partial(ELUModule, alpha),
        "leaky_relu": partial(LeakyReLUModule, neg_slope),
    }
    if name not in makers:
        raise ValueError(f"activation must be one of {', '.join(makers)}, got {name!r}")
    return makers[name]


def _check_batch(module, x, width=None):
    """ValueError unless x is a non-empty batch of row vectors (S, width)."""
    shape, name = np.shape(x), type(module).__name__
    expected = f"(S, {width})" if width is not None else "(S, N)"
    if len(shape) != 2:
        hint = ": a single sample needs its batch axis, e.g. x[None]" if len(shape) == 1 else ""
        raise ValueError(f"{name} expects a 2-D batch {expected}, got shape {shape}{hint}")
    if shape[0] == 0:
        raise ValueError(f"{name} got an empty batch, shape {shape}")
    if width is not None and shape[1] != width:
        raise ValueError(f"{name} expects {width} features per sample {expected}, got shape {shape}")


def _cached(module, cache):
    """What forward kept for backward; a ValueError when there is nothing."""
    if cache is None:
        raise ValueError(f"{type(module).__name__}.backward called before forward (or after clear_cache)")
    return cache


def _check_dout(module, dout, shape):
    """dL/dY must have the shape of the output of the last forward."""
    if np.shape(dout) != shape:
        raise ValueError(
            f"{type(module).__name__}.backward expects dout of the forward output's shape {shape}, "
            f"got {np.shape(dout)}"
        )


def _check_targets(x, y):
    """ValueError for targets that indexing or broadcasting would silently misread:
    labels of shape (S, 1), negative or too large labels, float labels."""
    y = np.asarray(y)
    if y.ndim == 1:
        if len(y) != len(x) or y.dtype.kind not in "iu":
            raise ValueError(f"labels must be {len(x)} integers, got shape {y.shape} of {y.dtype}")
        if len(y) and (y.min() < 0 or y.max() >= x.shape[1]):
            raise ValueError(f"labels must lie in 0..{x.shape[1] - 1}, got {y.min()}..{y.max()}")
    elif y.shape != x.shape:
        raise ValueError(f"targets must be labels ({len(x)},) or of shape {x.shape}, got {y.shape}")

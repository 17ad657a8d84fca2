"""The four NumPy modules of the MLP, each backward beside its forward.

Every module works on a batch of S row vectors. The derivations, in index
notation, are in docs/backprop.md; each backward's docstring states the closed
form it implements. Modules built without a ``dtype`` argument compute in
float64 throughout, so finite-difference gradient checks are exact to ~1e-10;
training passes ``dtype=np.float32`` for twice the matmul speed.
"""

import numpy as np


class LinearModule:
    """Y = X W^T + b.

    Args:
        in_features, out_features: M and N.
        input_layer: the first layer of a network. Its inputs are normalized
            pixels, not ReLU outputs, so Kaiming's variance is 1/M instead of 2/M.
        dtype: floating type of the parameters and of the computation.
        column_major: store the weight and its gradient column-major, as the
            transpose of a row-major (M, N) array. X W^T then reads W^T row by
            row, and dL/dW is written as (X^T dout)^T into a gradient laid out
            alike, which OpenBLAS runs faster (train_mlp_numpy.py uses it; see
            README.md). Values and shapes are the same, but reshape(-1) of such
            a weight is a copy, not a view, so the default stays row-major.

    Shape:
        X (S, M) -> Y (S, N); params['weight'] (N, M), params['bias'] (1, N).
    """

    def __init__(
        self, in_features, out_features, input_layer=False, dtype=np.float64, rng=None, column_major=False
    ):
        rng = np.random if rng is None else rng
        gain = 1.0 if input_layer else 2.0
        self.in_features, self.out_features, self.input_layer = in_features, out_features, input_layer
        self.column_major = column_major
        weight = rng.standard_normal((out_features, in_features)) * np.sqrt(gain / in_features)
        self.params = {
            "weight": np.array(weight, dtype=dtype, order="F" if column_major else "C"),
            "bias": np.zeros((1, out_features), dtype=dtype),
        }
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}  # same layout
        self.x = None

    def forward(self, x):
        """(S, M) -> (S, N)."""
        self.x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, dout, input_grad=True):
        """dL/dW = dout^T X, dL/db = 1^T dout, dL/dX = dout W.

        input_grad=False skips dL/dX (returns None): the first layer's inputs are pixels.
        """
        # written into the grads arrays: a fresh 1.5 MB array per step costs as much as the matmul;
        # as (X^T dout)^T, which BLAS writes row by row into a column-major gradient
        np.matmul(self.x.T, dout, out=self.grads["weight"].T)
        np.sum(dout, axis=0, keepdims=True, out=self.grads["bias"])
        return dout @ self.params["weight"] if input_grad else None

    def clear_cache(self):
        self.x = None

    def __repr__(self):
        return (
            f"LinearModule(in_features={self.in_features}, out_features={self.out_features}, "
            f"input_layer={self.input_layer}, dtype={self.params['weight'].dtype}, "
            f"column_major={self.column_major})"
        )


class ReLUModule:
    """Y = max(0, X), element-wise.

    Shape:
        X (S, N) -> Y (S, N).
    """

    def __init__(self):
        self.positive = None

    def forward(self, x):
        self.positive = x > 0
        return np.maximum(x, 0)

    def backward(self, dout):
        """dL/dX = dout ∘ 1[X > 0]."""
        return dout * self.positive

    def clear_cache(self):
        self.positive = None

    def __repr__(self):
        return "ReLUModule()"


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
        e = np.exp(x - x.max(axis=1, keepdims=True))
        e /= e.sum(axis=1, keepdims=True)
        self.y = e
        return e

    def backward(self, dout):
        """dL/dX = Y ∘ (dout − (dout ∘ Y) 1 1^T): no per-sample Jacobian."""
        y = self.y
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
        _check_targets(x, y)
        s = len(x)
        if np.ndim(y) == 1:
            return -np.log(np.maximum(x[np.arange(s), y], self.EPS)).sum() / s
        return -(y * np.log(np.maximum(x, self.EPS))).sum() / s

    def backward(self, x, y):
        """dL/dX = −T ⊘ X / S."""
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

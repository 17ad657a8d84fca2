"""A multi-layer perceptron chained from the NumPy modules."""

import numpy as np

from modules import (
    BatchNormModule,
    DropoutModule,
    LayerNormModule,
    LinearModule,
    SoftMaxModule,
    activation_by_name,
)


class MLP:
    """(Linear -> [BatchNorm | LayerNorm] -> activation -> [Dropout]) per hidden size, then Linear -> SoftMax.

    Args:
        n_inputs, n_hidden, n_classes: 3072 for CIFAR-10; hidden sizes ([]: logistic regression); C.
        use_batch_norm / use_layer_norm: a BatchNorm / LayerNorm after each hidden Linear (not both).
        dtype: float64 by default (exact gradient checks); float32 for training speed.
        rng: a np.random.Generator for the weights and the dropout masks (default: NumPy's global RNG).
        activation: "relu", "elu" (with alpha) or "leaky_relu" (with neg_slope).
        dropout: p > 0 puts a DropoutModule(p) after each hidden activation.

    Attributes:
        layers: every module, in the order forward applies them. An SGD step updates each one
            that has ``params``: ``for layer in model.layers: if hasattr(layer, "params"): ...``.
        linears: the LinearModules alone, first to last.
        training: True at construction; train() and eval() set it, and that of every batch norm and dropout.

    Shape:
        x (S, n_inputs) or (S, 3, 32, 32) -> class probabilities (S, C).
    """

    def __init__(self, n_inputs, n_hidden, n_classes, use_batch_norm=False, dtype=np.float64, rng=None, *,
            activation="relu", alpha=1.0, neg_slope=0.01, use_layer_norm=False, dropout=0.0):  # fmt: skip
        make_activation = activation_by_name(activation, alpha=alpha, neg_slope=neg_slope)
        if use_batch_norm and use_layer_norm:
            raise ValueError("batch norm and layer norm exclude each other: choose one")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        sizes = [n_inputs, *n_hidden, n_classes]
        self.n_inputs, self.use_batch_norm, self.dtype = n_inputs, use_batch_norm, np.dtype(dtype)
        self.linears = [
            LinearModule(m, n, input_layer=i == 0, dtype=dtype, rng=rng)
            for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        ]
        self.layers = []
        for linear in self.linears[:-1]:
            self.layers.append(linear)
            if use_batch_norm or use_layer_norm:
                norm = BatchNormModule if use_batch_norm else LayerNormModule
                self.layers.append(norm(linear.out_features, dtype=dtype))
            self.layers.append(make_activation())
            if dropout > 0:
                self.layers.append(DropoutModule(dropout, rng=rng))
        self.layers += [self.linears[-1], SoftMaxModule()]
        self.training = True

    def train(self, mode=True):
        """Training mode (mode=True): batch norms use each batch's statistics, dropout drops."""
        self.training = mode
        for layer in self.layers:
            if isinstance(layer, BatchNormModule | DropoutModule):
                layer.train(mode)
        return self

    def eval(self):
        """Evaluation mode: batch norms use their running estimates (and leave them alone); no dropout."""
        return self.train(False)

    def forward(self, x):
        shape = np.shape(x)
        if len(shape) < 2 or shape[0] == 0 or np.prod(shape[1:]) != self.n_inputs:
            raise ValueError(
                f"MLP expects a non-empty batch of S samples with {self.n_inputs} features each, "
                f"(S, {self.n_inputs}) or e.g. (S, 3, 32, 32), got shape {shape}"
            )
        out = np.asarray(x, dtype=self.dtype).reshape(len(x), -1)
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def backward(self, dout):
        """Fill every layer's grads from dL/d(probabilities) (S, C)."""
        for layer in reversed(self.layers[1:]):
            dout = layer.backward(dout)
        self.layers[0].backward(dout, input_grad=False)  # nothing needs dL/d(pixels)

    def clear_cache(self):
        for layer in self.layers:
            layer.clear_cache()

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        body = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"MLP(\n{body}\n)"

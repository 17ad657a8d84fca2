"""A multi-layer perceptron chained from the NumPy modules."""

import numpy as np

from modules import LinearModule, ReLUModule, SoftMaxModule


class MLP:
    """(Linear -> ReLU) per hidden size, then Linear -> SoftMax.

    Args:
        n_inputs: features per sample (3072 for CIFAR-10).
        n_hidden: list of hidden sizes; [] gives multinomial logistic regression.
        n_classes: number of classes C.
        dtype: float64 by default (exact gradient checks); float32 for training speed.
        rng: a np.random.Generator for the weights (default: NumPy's global RNG).
        column_major: column-major weights (LinearModule), for training speed.

    Shape:
        x (S, n_inputs) or (S, 3, 32, 32) -> class probabilities (S, C).
    """

    def __init__(self, n_inputs, n_hidden, n_classes, dtype=np.float64, rng=None, column_major=False):
        sizes = [n_inputs, *n_hidden, n_classes]
        self.dtype = np.dtype(dtype)
        self.linears = [
            LinearModule(m, n, input_layer=i == 0, dtype=dtype, rng=rng, column_major=column_major)
            for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        ]
        self.modules = []
        for linear in self.linears[:-1]:
            self.modules += [linear, ReLUModule()]
        self.modules += [self.linears[-1], SoftMaxModule()]

    def forward(self, x):
        out = np.asarray(x, dtype=self.dtype).reshape(len(x), -1)
        for module in self.modules:
            out = module.forward(out)
        return out

    def backward(self, dout):
        """Fill every linear layer's grads from dL/d(probabilities) (S, C)."""
        for module in reversed(self.modules[1:]):
            dout = module.backward(dout)
        self.modules[0].backward(dout, input_grad=False)  # nothing needs dL/d(pixels)

    def clear_cache(self):
        for module in self.modules:
            module.clear_cache()

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        body = "\n".join(f"  ({i}): {m!r}" for i, m in enumerate(self.modules))
        return f"MLP(\n{body}\n)"

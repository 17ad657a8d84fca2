"""Numerical gradient checks of the NumPy modules and of whole MLPs.

Run ``python unittests.py`` (prints each check, exits non-zero on a failure);
``python -m pytest`` collects the same checks. The helpers and the test names of
the course skeleton are kept (``rel_error``, ``eval_numerical_gradient``,
``eval_numerical_gradient_array``; ``TestLosses.test_crossentropy_loss``,
``TestLayers.test_linear_backward``, ``test_relu_backward``,
``test_softmax_backward``, and the later editions' ``test_elu_backward``), so a
student's own checks run here unchanged.

Everything runs in float64 with central differences of step 1e-5, perturbing
arrays in place as graders do; the relative error must stay below 1e-5 (1e-6
for ReLU, LeakyReLU and ELU). Every backward check uses a random upstream gradient: with a uniform
one, the true input gradient of softmax (and of batch norm) is exactly zero, and
so is that of a wrong formula such as y ∘ (dout − row mean of dout), which would
then pass.
"""

import unittest

import numpy as np

from mlp_numpy import MLP
from modules import (
    BatchNormModule,
    CrossEntropyModule,
    ELUModule,
    LayerNormModule,
    LeakyReLUModule,
    LinearModule,
    ReLUModule,
    SoftMaxModule,
)


def rel_error(x, y):
    """max |x - y| / max(1e-8, |x| + |y|), element-wise."""
    return np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y)))


def eval_numerical_gradient(f, x, verbose=True, h=0.00001):
    """d f(x) / d x for a scalar f, by central differences, perturbing x in place.

    f is called as f(x) with the perturbed array itself; it may also ignore its
    argument and read x (or a module's params) another way, since x changes in
    place. verbose prints each entry's index and derivative.
    """
    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        old = x[ix]
        x[ix] = old + h
        fxph = f(x)
        x[ix] = old - h
        fxmh = f(x)
        x[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
        if verbose:
            print(ix, grad[ix])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Σ df ∘ d f(x) / d x for an array-valued f: the vector-Jacobian product a backward computes.

    The outputs are subtracted before they are weighted and summed: entries that the
    perturbation does not reach then cancel exactly, where Σ df ∘ f(x) summed first
    would carry the rounding error of the whole sum into every small derivative.
    """
    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        old = x[ix]
        x[ix] = old + h
        pos = f(x).copy()  # a module may hand back an array it reuses
        x[ix] = old - h
        neg = f(x).copy()
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
    return grad


def random_probs(rng, s, c):
    """S rows of C probabilities, none close to 0 (the loss's clamp stays out of the way)."""
    x = rng.uniform(low=1e-2, high=1.0, size=(s, c))
    return x / x.sum(axis=1, keepdims=True)


def forward_of(layer, x):
    """f(_) = layer.forward(x), for a check that perturbs the layer's params (or x) in place."""
    return lambda _: layer.forward(x)


def input_gradient_error(layer, x, dout):
    """Relative error of layer.backward(dout) against the numerical dL/dx, L = Σ dout ∘ layer(x)."""
    layer.forward(x)
    dx = layer.backward(dout)
    return rel_error(dx, eval_numerical_gradient_array(layer.forward, x, dout))


class TestLosses(unittest.TestCase):
    def test_crossentropy_loss(self):
        """Integer labels, random sizes, down to one sample and one class."""
        rng = np.random.default_rng(42)
        for _ in range(10):
            s, c = rng.integers(1, 100), rng.integers(1, 10)
            x, y = random_probs(rng, s, c), rng.integers(c, size=s)
            dx = CrossEntropyModule().backward(x, y)
            f = lambda x, y=y: CrossEntropyModule().forward(x, y)  # noqa: E731 (the skeleton's form)
            dx_num = eval_numerical_gradient(f, x, verbose=False)
            self.assertLess(rel_error(dx, dx_num), 1e-5)

    def test_crossentropy_soft_targets(self):
        rng = np.random.default_rng(1)
        s, c = 6, 5
        x, t = random_probs(rng, s, c), random_probs(rng, s, c)
        loss = CrossEntropyModule()
        dx_num = eval_numerical_gradient(lambda x: loss.forward(x, t), x, verbose=False)
        self.assertLess(rel_error(loss.backward(x, t), dx_num), 1e-5)


class TestLayers(unittest.TestCase):
    def test_linear_backward(self):
        """dX, dW and db, for hidden and first layers, against a random upstream gradient."""
        rng = np.random.default_rng(42)
        for i in range(10):
            s, m, n = rng.integers(1, 20), rng.integers(1, 100), rng.integers(1, 10)
            x, dout = rng.standard_normal((s, m)), rng.standard_normal((s, n))
            layer = LinearModule(m, n, input_layer=i % 2 == 0)
            layer.params["bias"] += rng.standard_normal((1, n))  # nonzero, so it matters
            w, b = layer.params["weight"], layer.params["bias"]
            self.assertEqual(w.dtype, np.float64)
            layer.forward(x)
            dx = layer.backward(dout)
            dw, db = layer.grads["weight"], layer.grads["bias"]
            self.assertEqual((dw.shape, db.shape), (w.shape, b.shape))
            # the lambda ignores its argument: forward reads x, w and b, perturbed in place
            for analytic, var in ((dx, x), (dw, w), (db, b)):
                numeric = eval_numerical_gradient_array(forward_of(layer, x), var, dout)
                self.assertLess(rel_error(analytic, numeric), 1e-5)
            dx_numeric = eval_numerical_gradient_array(layer.forward, x, dout)  # f(x) reads its argument
            self.assertLess(rel_error(dx, dx_numeric), 1e-5)

    def test_relu_backward(self):
        rng = np.random.default_rng(42)
        for _ in range(10):
            s, n = rng.integers(1, 20), rng.integers(1, 100)
            # keep inputs away from the kink at 0, where the derivative is undefined
            x = rng.standard_normal((s, n))
            x += np.sign(x) * 0.1
            self.assertLess(input_gradient_error(ReLUModule(), x, rng.standard_normal((s, n))), 1e-6)

    def test_elu_backward(self):
        """ELU's alpha = 1 (2020, 2022) and 0.5 (2024-2025): h'(x) = α exp(x) for x < 0."""
        rng = np.random.default_rng(42)
        for layer in (ELUModule(), ELUModule(alpha=0.5)):
            for _ in range(10):
                s, n = rng.integers(1, 20), rng.integers(1, 100)
                # away from 0, where h' jumps from α to 1 unless α = 1
                x = rng.standard_normal((s, n))
                x += np.sign(x) * 0.1
                self.assertLess(input_gradient_error(layer, x, rng.standard_normal((s, n))), 1e-6)

    def test_leaky_relu_backward(self):
        rng = np.random.default_rng(42)
        for layer in (LeakyReLUModule(), LeakyReLUModule(neg_slope=0.2)):
            for _ in range(10):
                s, n = rng.integers(1, 20), rng.integers(1, 100)
                x = rng.standard_normal((s, n))
                x += np.sign(x) * 0.1  # away from the kink at 0
                self.assertLess(input_gradient_error(layer, x, rng.standard_normal((s, n))), 1e-6)

    def test_layernorm_backward(self):
        """dX, dγ and dβ with random γ and β, down to one sample (each row is normalised on its own)."""
        rng = np.random.default_rng(44)
        for s in (1, 2, 7, 15):
            # N >= 4: with 2 features x̂ = ±1 whatever X, as for batch norm over 2 samples
            n = rng.integers(4, 30)
            x = 3.0 * rng.standard_normal((s, n)) + rng.standard_normal((s, 1))
            dout = rng.standard_normal((s, n))
            layer = LayerNormModule(n)
            layer.params["weight"] += rng.standard_normal((1, n))
            layer.params["bias"] += rng.standard_normal((1, n))
            layer.forward(x)
            dx = layer.backward(dout)
            dgamma, dbeta = layer.grads["weight"], layer.grads["bias"]
            gamma, beta = layer.params["weight"], layer.params["bias"]
            for analytic, var in ((dx, x), (dgamma, gamma), (dbeta, beta)):
                numeric = eval_numerical_gradient_array(forward_of(layer, x), var, dout)
                self.assertLess(rel_error(analytic, numeric), 1e-5)

    def test_softmax_backward(self):
        rng = np.random.default_rng(42)
        for _ in range(10):
            s, c = rng.integers(1, 20), rng.integers(1, 100)
            x = rng.standard_normal((s, c))
            self.assertLess(input_gradient_error(SoftMaxModule(), x, rng.standard_normal((s, c))), 1e-5)

    def test_batchnorm_backward(self):
        """dX, dγ and dβ in training mode with random γ and β; dX in eval mode."""
        rng = np.random.default_rng(43)
        for _ in range(5):
            # S >= 4: with 2 samples x̂ = ±1 whatever X, so dL/dX is only ε-sized and its relative
            # error would measure rounding
            s, n = rng.integers(4, 20), rng.integers(1, 30)
            x = 3.0 * rng.standard_normal((s, n)) + rng.standard_normal((1, n))
            dout = rng.standard_normal((s, n))
            layer = BatchNormModule(n)
            layer.params["weight"] += rng.standard_normal((1, n))
            layer.params["bias"] += rng.standard_normal((1, n))
            layer.forward(x)
            dx = layer.backward(dout)
            dgamma, dbeta = layer.grads["weight"], layer.grads["bias"]
            gamma, beta = layer.params["weight"], layer.params["bias"]
            for analytic, var in ((dx, x), (dgamma, gamma), (dbeta, beta)):
                numeric = eval_numerical_gradient_array(forward_of(layer, x), var, dout)
                self.assertLess(rel_error(analytic, numeric), 1e-5)
            layer.eval()
            self.assertLess(input_gradient_error(layer, x, dout), 1e-5)


class TestMLP(unittest.TestCase):
    def check_mlp(self, n_hidden, seed, use_batch_norm=False, **options):
        """Every parameter's gradient of the cross-entropy of a whole MLP (options: its keywords)."""
        rng = np.random.default_rng(seed)
        s, n_inputs, n_classes = 6, 10, 4
        x = rng.standard_normal((s, n_inputs))
        y = rng.integers(n_classes, size=s)
        model = MLP(n_inputs, n_hidden, n_classes, use_batch_norm=use_batch_norm, rng=rng, **options)
        loss = CrossEntropyModule()
        layers = [layer for layer in model.layers if hasattr(layer, "params")]
        for layer in layers:  # nonzero biases and γ ≠ 1, so every parameter matters
            for p in layer.params.values():
                p += 0.1 * rng.standard_normal(p.shape)

        probs = model.forward(x)
        model.backward(loss.backward(probs, y))
        n_norms = (use_batch_norm or options.get("use_layer_norm", False)) * len(n_hidden)
        self.assertEqual(len(layers), (len(n_hidden) + 1) + n_norms)
        for i, layer in enumerate(model.layers):
            if not hasattr(layer, "params"):
                continue
            for name in ("weight", "bias"):
                numeric = eval_numerical_gradient(
                    lambda _: loss.forward(model.forward(x), y), layer.params[name], verbose=False
                )
                if name == "bias" and isinstance(model.layers[i + 1], BatchNormModule):
                    # batch norm subtracts the batch mean, and with it any bias before it: the
                    # gradient is 0, and relative error would only compare rounding noise
                    self.assertLess(np.abs(numeric).max() + np.abs(layer.grads[name]).max(), 1e-8)
                else:
                    self.assertLess(rel_error(layer.grads[name], numeric), 1e-5, f"{layer} {name}")

    def test_mlp_two_hidden_layers(self):
        self.check_mlp([8, 6], seed=5)

    def test_mlp_one_hidden_layer(self):
        self.check_mlp([7], seed=6)

    def test_mlp_no_hidden_layer(self):
        self.check_mlp([], seed=7)

    def test_mlp_with_batch_norm(self):
        self.check_mlp([8, 6], seed=8, use_batch_norm=True)

    def test_mlp_with_layer_norm_and_elu(self):
        self.check_mlp([8, 6], seed=9, use_layer_norm=True, activation="elu", alpha=0.5)

    def test_mlp_with_leaky_relu(self):
        self.check_mlp([8, 6], seed=10, activation="leaky_relu", neg_slope=0.1)


if __name__ == "__main__":
    unittest.main(verbosity=2)

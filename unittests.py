"""Numerical gradient checks of the NumPy modules and of a whole MLP.

Run ``python unittests.py`` (prints each check, exits non-zero on a failure);
``python -m pytest`` collects the same checks. Everything runs in float64 with
central differences of step 1e-5, perturbing arrays in place as graders do;
the relative error must stay below 1e-5 (1e-6 for ReLU).
"""

import unittest

import numpy as np

from mlp_numpy import MLP
from modules import CrossEntropyModule, LinearModule, ReLUModule, SoftMaxModule


def rel_error(x, y):
    """max |x - y| / max(1e-8, |x| + |y|), element-wise."""
    return np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y)))


def eval_numerical_gradient(f, x, h=1e-5):
    """d f() / d x for a scalar f, by central differences, perturbing x in place."""
    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        old = x[ix]
        x[ix] = old + h
        fxph = f()
        x[ix] = old - h
        fxmh = f()
        x[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
    return grad


def eval_numerical_gradient_array(f, x, dout, h=1e-5):
    """Σ dout ∘ d f() / d x for an array-valued f: the vector-Jacobian product backward computes."""
    return eval_numerical_gradient(lambda: np.sum(f() * dout), x, h)


def input_gradient_error(layer, x, dout):
    """Relative error of layer.backward(dout) against the numerical dL/dx, L = Σ dout ∘ layer(x)."""
    layer.forward(x)
    dx = layer.backward(dout)
    return rel_error(dx, eval_numerical_gradient_array(lambda: layer.forward(x), x, dout))


class TestLosses(unittest.TestCase):
    def test_crossentropy_labels(self):
        rng = np.random.default_rng(0)
        for _ in range(5):
            s, c = rng.integers(2, 16, size=2)
            x = rng.uniform(0.05, 1.0, size=(s, c))
            x /= x.sum(axis=1, keepdims=True)
            y = rng.integers(c, size=s)
            loss = CrossEntropyModule()
            dx = loss.backward(x, y)
            dx_num = eval_numerical_gradient(lambda x=x, y=y, loss=loss: loss.forward(x, y), x)
            self.assertLess(rel_error(dx, dx_num), 1e-5)

    def test_crossentropy_soft_targets(self):
        rng = np.random.default_rng(1)
        s, c = 6, 5
        x = rng.uniform(0.05, 1.0, size=(s, c))
        x /= x.sum(axis=1, keepdims=True)
        t = rng.uniform(size=(s, c))
        t /= t.sum(axis=1, keepdims=True)
        loss = CrossEntropyModule()
        dx_num = eval_numerical_gradient(lambda: loss.forward(x, t), x)
        self.assertLess(rel_error(loss.backward(x, t), dx_num), 1e-5)


class TestLayers(unittest.TestCase):
    def test_linear_backward(self):
        rng = np.random.default_rng(2)
        for input_layer in (True, False):
            s, m, n = rng.integers(2, 12, size=3)
            x = rng.standard_normal((s, m))
            dout = rng.standard_normal((s, n))
            layer = LinearModule(m, n, input_layer=input_layer)
            layer.params["bias"] += rng.standard_normal((1, n))  # nonzero, so it matters
            w, b = layer.params["weight"], layer.params["bias"]
            self.assertEqual(w.dtype, np.float64)
            layer.forward(x)
            dx = layer.backward(dout)
            dw, db = layer.grads["weight"], layer.grads["bias"]
            self.assertEqual((dw.shape, db.shape), (w.shape, b.shape))
            for analytic, var in ((dx, x), (dw, w), (db, b)):
                numeric = eval_numerical_gradient_array(lambda layer=layer, x=x: layer.forward(x), var, dout)
                self.assertLess(rel_error(analytic, numeric), 1e-5)

    def test_relu_backward(self):
        rng = np.random.default_rng(3)
        for _ in range(5):
            s, n = rng.integers(2, 12, size=2)
            # keep inputs away from the kink at 0, where the derivative is undefined
            x = rng.standard_normal((s, n))
            x += np.sign(x) * 0.1
            self.assertLess(input_gradient_error(ReLUModule(), x, rng.standard_normal((s, n))), 1e-6)

    def test_softmax_backward(self):
        rng = np.random.default_rng(4)
        for _ in range(5):
            s, c = rng.integers(2, 12, size=2)
            x = rng.standard_normal((s, c))
            self.assertLess(input_gradient_error(SoftMaxModule(), x, rng.standard_normal((s, c))), 1e-5)


class TestMLP(unittest.TestCase):
    def check_mlp(self, n_hidden, seed):
        rng = np.random.default_rng(seed)
        s, n_inputs, n_classes = 6, 10, 4
        x = rng.standard_normal((s, n_inputs))
        y = rng.integers(n_classes, size=s)
        model = MLP(n_inputs, n_hidden, n_classes)
        loss = CrossEntropyModule()
        for linear in model.linears:
            linear.params["bias"] += 0.1 * rng.standard_normal(linear.params["bias"].shape)

        def total_loss():
            return loss.forward(model.forward(x), y)

        probs = model.forward(x)
        model.backward(loss.backward(probs, y))
        self.assertEqual(len(model.linears), len(n_hidden) + 1)
        for linear in model.linears:
            for name in ("weight", "bias"):
                numeric = eval_numerical_gradient(total_loss, linear.params[name])
                self.assertLess(rel_error(linear.grads[name], numeric), 1e-5, f"{linear} {name}")

    def test_mlp_two_hidden_layers(self):
        self.check_mlp([8, 6], seed=5)

    def test_mlp_one_hidden_layer(self):
        self.check_mlp([7], seed=6)

    def test_mlp_no_hidden_layer(self):
        self.check_mlp([], seed=7)


if __name__ == "__main__":
    unittest.main(verbosity=2)

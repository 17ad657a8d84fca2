"""Batch normalization by hand in NumPy (modules.BatchNormModule), checked three ways.

1. Finite differences in float64, with a random upstream gradient, for the input, γ and β.
2. The staged backward pass of docs/backprop.md (mean, centred input, variance, inverse standard
   deviation, x̂, scale and shift), written out here step by step, against the module's closed form.
3. PyTorch in float64: nn.BatchNorm1d on identical inputs (outputs, gradients, running statistics,
   eval mode), and a NumPy MLP with batch norm against mlp_pytorch.MLP(use_batch_norm=True) with the
   same weights over 20 SGD steps.
"""

import numpy as np
import pytest

from mlp_numpy import MLP
from modules import BatchNormModule, CrossEntropyModule
from unittests import eval_numerical_gradient_array, rel_error

RTOL = 1e-10
ATOL = 1e-12


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def random_batch_norm(rng, n, **kwargs):
    """A BatchNormModule with random γ (away from 0) and β, so that both matter."""
    bn = BatchNormModule(n, **kwargs)
    bn.params["weight"][...] = rng.uniform(0.5, 2.0, size=(1, n)) * rng.choice([-1, 1], size=(1, n))
    bn.params["bias"][...] = rng.standard_normal((1, n))
    return bn


def random_input(rng, s, n):
    """Features with different means and scales, as a linear layer's outputs have."""
    return rng.standard_normal((s, n)) * rng.uniform(0.1, 5.0, size=(1, n)) + rng.normal(0, 3, size=(1, n))


# ------------------------------------------------------------------ 1. finite differences


@pytest.mark.parametrize("s, n", [(4, 1), (7, 5), (16, 3)])
def test_gradients_match_finite_differences(s, n):
    rng = np.random.default_rng(100 + s)
    bn = random_batch_norm(rng, n)
    x, dout = random_input(rng, s, n), rng.standard_normal((s, n))
    out = bn.forward(x)
    dx = bn.backward(dout)
    assert out.dtype == dx.dtype == np.float64

    def f(_):  # the running statistics change on every call, but the training-mode output does not
        return bn.forward(x)

    for name, analytic, var in (
        ("x", dx, x),
        ("gamma", bn.grads["weight"], bn.params["weight"]),
        ("beta", bn.grads["bias"], bn.params["bias"]),
    ):
        assert analytic.shape == var.shape
        assert rel_error(analytic, eval_numerical_gradient_array(f, var, dout)) < 1e-6, name


def test_eval_mode_gradient_matches_finite_differences():
    rng = np.random.default_rng(110)
    bn = random_batch_norm(rng, 4)
    bn.running_mean[...] = rng.standard_normal((1, 4))
    bn.running_var[...] = rng.uniform(0.5, 2.0, size=(1, 4))
    bn.eval()
    x, dout = random_input(rng, 6, 4), rng.standard_normal((6, 4))
    bn.forward(x)
    dx = bn.backward(dout)
    assert rel_error(dx, eval_numerical_gradient_array(bn.forward, x, dout)) < 1e-6
    assert rel_error(dx, dout * bn.params["weight"] / np.sqrt(bn.running_var + bn.eps)) < 1e-12


def test_upstream_gradient_that_is_uniform_per_feature_gives_no_input_gradient():
    """Why every check above uses a random dout: the input gradient is orthogonal to 1 and to x̂
    per feature, so dout = 1 (the sum of the outputs) gives exactly zero, and so does a wrong backward
    that drops the x̂ term: a uniform upstream gradient cannot tell them apart."""
    rng = np.random.default_rng(111)
    bn = random_batch_norm(rng, 3, eps=0.0)  # with ε > 0, Σ x̂² falls short of S and x̂ is only nearly so
    x = random_input(rng, 8, 3)
    bn.forward(x)
    assert np.abs(bn.backward(np.ones((8, 3)))).max() < 1e-12
    dx = bn.backward(rng.standard_normal((8, 3)))
    assert np.abs(dx).max() > 0.1
    assert_close(dx.sum(axis=0), 0)  # the batch mean was removed: dL/dX has no component along 1
    assert_close((dx * bn.x_hat).sum(axis=0), 0)  # nor along x̂ (the scale was removed)


# ------------------------------------------------------------------ 2. staged form vs closed form


def staged_batch_norm(x, gamma, beta, eps, dout):
    """Forward and backward through the computational graph of docs/backprop.md, one node at a time.

    Returns (y, dx, dgamma, dbeta). Every backward step is the chain rule for one node; nothing is
    simplified, so this is the slow, obviously-right reference for the closed form.
    """
    s = len(x)
    # forward: mean, centred input, variance, inverse standard deviation, x̂, scale and shift
    mu = x.sum(axis=0, keepdims=True) / s  # (1, N)
    xc = x - mu  # (S, N)
    var = (xc**2).sum(axis=0, keepdims=True) / s  # (1, N), biased
    istd = (var + eps) ** -0.5  # (1, N)
    x_hat = xc * istd  # (S, N)
    y = gamma * x_hat + beta  # (S, N)

    # backward, node by node in reverse
    dbeta = dout.sum(axis=0, keepdims=True)  # y = ... + β, β broadcast over the S rows
    dgamma = (dout * x_hat).sum(axis=0, keepdims=True)  # y = γ ∘ x̂ + ...
    dx_hat = dout * gamma
    # x̂ = xc ∘ istd: two inputs
    dxc = dx_hat * istd  # the first path into xc
    distd = (dx_hat * xc).sum(axis=0, keepdims=True)  # istd broadcast over the rows
    # istd = (var + ε)^(-1/2)
    dvar = distd * (-0.5) * (var + eps) ** -1.5
    # var = (1/S) Σ_i xc_i², the second path into xc
    dxc = dxc + dvar * 2.0 * xc / s
    # xc = x − μ: two inputs
    dx = dxc.copy()  # the direct path into x
    dmu = -dxc.sum(axis=0, keepdims=True)
    # μ = (1/S) Σ_i x_i, the second path into x
    dx = dx + dmu / s
    return y, dx, dgamma, dbeta


@pytest.mark.parametrize("s, n, eps", [(5, 3, 1e-5), (32, 8, 1e-5), (9, 4, 0.5)])
def test_staged_backward_and_closed_form_agree(s, n, eps):
    rng = np.random.default_rng(120 + s)
    bn = random_batch_norm(rng, n, eps=eps)
    x, dout = random_input(rng, s, n), rng.standard_normal((s, n))
    y = bn.forward(x)
    dx = bn.backward(dout)
    y_ref, dx_ref, dgamma_ref, dbeta_ref = staged_batch_norm(
        x, bn.params["weight"], bn.params["bias"], eps, dout
    )
    assert_close(y, y_ref)
    assert_close(dx, dx_ref)
    assert_close(bn.grads["weight"], dgamma_ref)
    assert_close(bn.grads["bias"], dbeta_ref)


def test_staged_reference_itself_matches_finite_differences():
    """The reference is checked too, so the agreement above is between two right answers."""
    rng = np.random.default_rng(125)
    x, dout = random_input(rng, 6, 3), rng.standard_normal((6, 3))
    gamma, beta = rng.standard_normal((1, 3)), rng.standard_normal((1, 3))
    _, dx, dgamma, dbeta = staged_batch_norm(x, gamma, beta, 1e-5, dout)

    def f(_):
        return staged_batch_norm(x, gamma, beta, 1e-5, dout)[0]

    assert rel_error(dx, eval_numerical_gradient_array(f, x, dout)) < 1e-6
    assert rel_error(dgamma, eval_numerical_gradient_array(f, gamma, dout)) < 1e-6
    assert rel_error(dbeta, eval_numerical_gradient_array(f, beta, dout)) < 1e-6


# ------------------------------------------------------------------ module contract


def test_construction_matches_the_spec():
    bn = BatchNormModule(5)
    assert (bn.eps, bn.momentum, bn.training) == (1e-5, 0.1, True)
    assert set(bn.params) == set(bn.grads) == {"weight", "bias"}
    for array in (*bn.params.values(), *bn.grads.values(), bn.running_mean, bn.running_var):
        assert array.shape == (1, 5) and array.dtype == np.float64
    np.testing.assert_array_equal(bn.params["weight"], 1)
    np.testing.assert_array_equal(bn.params["bias"], 0)
    np.testing.assert_array_equal(bn.running_mean, 0)
    np.testing.assert_array_equal(bn.running_var, 1)
    assert bn.eval() is bn and not bn.training
    assert bn.train() is bn and bn.training


def test_float32_stays_float32():
    rng = np.random.default_rng(130)
    bn = BatchNormModule(4, dtype=np.float32)
    x = random_input(rng, 8, 4).astype(np.float32)
    out = bn.forward(x)
    dx = bn.backward(rng.standard_normal((8, 4)).astype(np.float32))
    arrays = [out, dx, *bn.params.values(), *bn.grads.values(), bn.running_mean, bn.running_var]
    assert all(a.dtype == np.float32 for a in arrays)


def test_training_output_is_normalised_per_feature():
    rng = np.random.default_rng(131)
    bn = BatchNormModule(6)
    x = random_input(rng, 50, 6)
    out = bn.forward(x)
    assert_close(out.mean(axis=0), 0, atol=1e-12)
    var = x.var(axis=0)
    assert_close(out.var(axis=0), var / (var + bn.eps))  # ε in the denominator: 1 only as ε/var -> 0


def test_running_statistics_follow_the_pytorch_convention():
    rng = np.random.default_rng(132)
    bn = BatchNormModule(3, momentum=0.3)
    mean, var = np.zeros((1, 3)), np.ones((1, 3))
    for _ in range(4):
        x = random_input(rng, 10, 3)
        bn.forward(x)
        mean = 0.7 * mean + 0.3 * x.mean(axis=0, keepdims=True)
        var = 0.7 * var + 0.3 * x.var(axis=0, ddof=1, keepdims=True)  # unbiased in the estimate
    assert_close(bn.running_mean, mean)
    assert_close(bn.running_var, var)


def test_eval_mode_uses_and_keeps_the_running_statistics():
    rng = np.random.default_rng(133)
    bn = random_batch_norm(rng, 3)
    for _ in range(3):
        bn.forward(random_input(rng, 10, 3))
    mean, var = bn.running_mean.copy(), bn.running_var.copy()
    bn.eval()
    x = random_input(rng, 5, 3)
    out = bn.forward(x)
    assert_close(out, bn.params["weight"] * (x - mean) / np.sqrt(var + bn.eps) + bn.params["bias"])
    np.testing.assert_array_equal(bn.running_mean, mean)
    np.testing.assert_array_equal(bn.running_var, var)
    assert_close(bn.forward(x[2:3]), out[2:3])  # each sample on its own


# ------------------------------------------------------------------ 3. against PyTorch


def test_matches_torch_batch_norm_1d_in_both_modes():
    """Training-mode output and all gradients, running statistics after several steps, eval output."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(140)
    n, eps, momentum = 5, 1e-3, 0.2
    bn = random_batch_norm(rng, n, eps=eps, momentum=momentum)
    ref = torch.nn.BatchNorm1d(n, eps=eps, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(bn.params["weight"].ravel()))
        ref.bias.copy_(torch.from_numpy(bn.params["bias"].ravel()))

    batch_sizes = [8, 16, 3, 32, 8]  # they vary, so the S/(S-1) of the unbiased variance counts
    for s in batch_sizes:
        x, dout = random_input(rng, s, n), rng.standard_normal((s, n))
        out = bn.forward(x)
        dx = bn.backward(dout)

        xt = torch.tensor(x, requires_grad=True)
        out_t = ref(xt)
        ref.zero_grad()
        out_t.backward(torch.from_numpy(dout))

        assert_close(out, out_t.detach().numpy())
        assert_close(dx, xt.grad.numpy())
        assert_close(bn.grads["weight"].ravel(), ref.weight.grad.numpy())
        assert_close(bn.grads["bias"].ravel(), ref.bias.grad.numpy())
        assert_close(bn.running_mean.ravel(), ref.running_mean.numpy())
        assert_close(bn.running_var.ravel(), ref.running_var.numpy())
    assert ref.num_batches_tracked.item() == len(batch_sizes)

    bn.eval()
    ref.eval()
    x, dout = random_input(rng, 7, n), rng.standard_normal((7, n))
    out = bn.forward(x)
    dx = bn.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    out_t = ref(xt)
    out_t.backward(torch.from_numpy(dout))
    assert_close(out, out_t.detach().numpy())
    assert_close(dx, xt.grad.numpy())


def test_numpy_and_pytorch_mlps_with_batch_norm_follow_the_same_loss_for_20_sgd_steps():
    """Same weights in, same mini-batches, plain SGD on both sides: the losses, the final weights and
    the running statistics agree to float64 precision, and the eval-mode predictions afterwards too."""
    torch = pytest.importorskip("torch")
    mlp_pytorch = pytest.importorskip("mlp_pytorch")
    rng = np.random.default_rng(150)
    n_inputs, n_hidden, n_classes, lr = 20, [16, 12], 5, 0.1
    model = MLP(n_inputs, n_hidden, n_classes, use_batch_norm=True, rng=rng)
    ref = mlp_pytorch.MLP(n_inputs, n_hidden, n_classes, use_batch_norm=True).to(torch.float64)

    numpy_layers = [layer for layer in model.layers if hasattr(layer, "params")]
    torch_layers = [module for module in ref.layers if list(module.parameters())]
    assert len(numpy_layers) == len(torch_layers) == 5  # Linear, BN, Linear, BN, Linear
    assert [lin.weight.shape[::-1] for lin in ref.linears()] == [
        (n_inputs, 16),
        (16, 12),
        (12, n_classes),
    ]
    for layer, module in zip(numpy_layers, torch_layers, strict=True):
        for name, value in layer.params.items():
            value += 0.1 * rng.standard_normal(value.shape)  # γ ≠ 1, β ≠ 0, biases ≠ 0
            with torch.no_grad():
                getattr(module, name).copy_(torch.from_numpy(value).reshape(getattr(module, name).shape))

    loss_module = CrossEntropyModule()
    losses, losses_t = [], []
    for _ in range(20):
        x = rng.standard_normal((24, n_inputs))
        y = rng.integers(n_classes, size=24)

        probs = model.forward(x)
        losses.append(loss_module.forward(probs, y))
        model.backward(loss_module.backward(probs, y))
        for layer in model.layers:
            if hasattr(layer, "params"):
                for name, param in layer.params.items():
                    param -= lr * layer.grads[name]

        ref.zero_grad()
        loss_t = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
        loss_t.backward()
        with torch.no_grad():
            for p in ref.parameters():
                p -= lr * p.grad
        losses_t.append(loss_t.item())

    assert_close(losses, losses_t, rtol=1e-9)
    assert losses[-1] < losses[0]  # it learns something, so the gradients were not all zero
    for layer, module in zip(numpy_layers, torch_layers, strict=True):
        for name, value in layer.params.items():
            assert_close(value.ravel(), getattr(module, name).detach().numpy().ravel(), rtol=1e-9)
        if isinstance(layer, BatchNormModule):
            assert_close(layer.running_mean.ravel(), module.running_mean.numpy(), rtol=1e-9)
            assert_close(layer.running_var.ravel(), module.running_var.numpy(), rtol=1e-9)

    model.eval()
    ref.eval()
    x = rng.standard_normal((9, n_inputs))
    with torch.no_grad():
        probs_t = torch.softmax(ref(torch.from_numpy(x)), dim=1).numpy()
    assert_close(model.forward(x), probs_t, rtol=1e-9)

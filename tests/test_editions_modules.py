"""The modules of the other editions (ELU, LeakyReLU, LayerNorm, Dropout) and the MLP's keywords for them.

Each module is checked three ways, in float64 with a random upstream gradient: central differences
(input and parameters), PyTorch (F.elu, F.leaky_relu, F.layer_norm, and x ∘ mask / (1 − p) through
autograd for dropout), and, for dropout, its statistics. Each check is shown to fail on a planted
bug: ELU's derivative written as α(exp(x) − 1), layer norm over the batch instead of the features,
dropout not rescaled in training or rescaled in eval.
"""

import numpy as np
import pytest

from mlp_numpy import MLP
from modules import (
    CrossEntropyModule,
    DropoutModule,
    ELUModule,
    LayerNormModule,
    LeakyReLUModule,
    LinearModule,
    ReLUModule,
    SoftMaxModule,
)
from unittests import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

GRAD_TOL = 1e-6  # relative error of a backward against central differences
TORCH_TOL = 1e-10  # max |ours − torch's| on O(1) values


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def away_from_zero(rng, shape):
    """Standard normal entries at least 0.1 from 0, where the activations have their kink."""
    x = rng.standard_normal(shape)
    return x + np.sign(x) * 0.1


def reseeded(layer, seed=7):
    """layer.forward with its rng reset first: every call draws the same dropout mask."""

    def forward(x):
        layer.rng = np.random.default_rng(seed)
        return layer.forward(x)

    return forward


def gradient_errors(layer, x, dout, forward=None):
    """Relative error of backward(dout) against central differences: {'input': ..., each param: ...}."""
    forward = layer.forward if forward is None else forward
    forward(x)
    dx = layer.backward(dout)
    errors = {"input": rel_error(dx, eval_numerical_gradient_array(forward, x, dout))}
    for name, param in getattr(layer, "params", {}).items():
        numeric = eval_numerical_gradient_array(lambda _: forward(x), param, dout)
        errors[name] = rel_error(layer.grads[name], numeric)
    return errors


def torch_deviation(torch, layer, torch_forward, x, dout):
    """max |ours − torch's| over Y, dL/dX and every dL/dparam; torch_forward(x, **params) in float64."""
    params = {
        name: torch.tensor(p.copy(), requires_grad=True) for name, p in getattr(layer, "params", {}).items()
    }
    xt = torch.tensor(x.copy(), requires_grad=True)
    yt = torch_forward(xt, **params)
    yt.backward(torch.tensor(dout))
    y = layer.forward(x)
    dx = layer.backward(dout)
    pairs = [(y, yt), (dx, xt.grad)] + [(layer.grads[name], params[name].grad) for name in params]
    return max(np.abs(ours - theirs.detach().numpy()).max() for ours, theirs in pairs)


def random_layer_norm(rng, n, layer_class=LayerNormModule):
    """γ ≠ 1 and β ≠ 0, so both matter."""
    layer = layer_class(n)
    layer.params["weight"] += rng.standard_normal((1, n))
    layer.params["bias"] += rng.standard_normal((1, n))
    return layer


# ---------------------------------------------------------------- numerical gradients


ACTIVATIONS = {
    "elu": ELUModule,
    "elu_alpha_0.5": lambda: ELUModule(alpha=0.5),
    "leaky_relu": LeakyReLUModule,
    "leaky_relu_0.3": lambda: LeakyReLUModule(neg_slope=0.3),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_match_central_differences(name):
    rng = np.random.default_rng(0)
    for s, n in [(1, 1), (5, 7), (16, 30)]:
        errors = gradient_errors(
            ACTIVATIONS[name](), away_from_zero(rng, (s, n)), rng.standard_normal((s, n))
        )
        assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize(("s", "n"), [(1, 6), (2, 4), (8, 13)])
def test_layer_norm_matches_central_differences(s, n):
    rng = np.random.default_rng(s)
    x = 2.0 * rng.standard_normal((s, n)) + rng.standard_normal((s, 1))
    errors = gradient_errors(random_layer_norm(rng, n), x, rng.standard_normal((s, n)))
    assert set(errors) == {"input", "weight", "bias"} and max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8])
def test_dropout_matches_central_differences_with_its_mask_held(p):
    rng = np.random.default_rng(1)
    layer = DropoutModule(p)
    errors = gradient_errors(layer, rng.standard_normal((6, 9)), rng.standard_normal((6, 9)), reseeded(layer))
    assert errors["input"] < GRAD_TOL
    layer.eval()
    assert (
        gradient_errors(layer, rng.standard_normal((6, 9)), rng.standard_normal((6, 9)))["input"] < GRAD_TOL
    )


class ELUWithTheForwardAsDerivative(ELUModule):
    """The planted bug: h'(x) = α(exp(x) − 1) for x < 0, the forward's formula, instead of α exp(x)."""

    def backward(self, dout):
        x = self.x
        return dout * np.where(x > 0, 1.0, self.alpha * np.expm1(np.minimum(x, 0)))


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_central_differences_catch_elus_derivative_written_as_its_forward(alpha):
    rng = np.random.default_rng(2)
    x, dout = away_from_zero(rng, (8, 10)), rng.standard_normal((8, 10))
    assert gradient_errors(ELUModule(alpha), x, dout)["input"] < GRAD_TOL
    assert gradient_errors(ELUWithTheForwardAsDerivative(alpha), x, dout)["input"] > 0.1


# ---------------------------------------------------------------- PyTorch, float64


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_elu_matches_torch(torch, alpha):
    rng = np.random.default_rng(3)
    x, dout = 3.0 * rng.standard_normal((9, 11)), rng.standard_normal((9, 11))
    elu = lambda xt: torch.nn.functional.elu(xt, alpha=alpha)  # noqa: E731
    assert torch_deviation(torch, ELUModule(alpha), elu, x, dout) < TORCH_TOL
    assert torch_deviation(torch, ELUWithTheForwardAsDerivative(alpha), elu, x, dout) > 0.1


@pytest.mark.parametrize("neg_slope", [0.01, 0.2])
def test_leaky_relu_matches_torch_zero_included(torch, neg_slope):
    rng = np.random.default_rng(4)
    x, dout = rng.standard_normal((9, 11)), rng.standard_normal((9, 11))
    x[0, :3] = 0.0  # h'(0): torch's choice, neg_slope
    leaky = lambda xt: torch.nn.functional.leaky_relu(xt, negative_slope=neg_slope)  # noqa: E731
    assert torch_deviation(torch, LeakyReLUModule(neg_slope), leaky, x, dout) < TORCH_TOL


class LayerNormOverTheBatch(LayerNormModule):
    """The planted bug: each feature normalised over the batch (batch norm without running estimates)."""

    def forward(self, x):
        centred = x - x.mean(axis=0, keepdims=True)
        self.inv_std = 1.0 / np.sqrt((centred**2).mean(axis=0, keepdims=True) + self.eps)
        self.x_hat = centred * self.inv_std
        return self.params["weight"] * self.x_hat + self.params["bias"]

    def backward(self, dout):
        self.grads["weight"] = (dout * self.x_hat).sum(axis=0, keepdims=True)
        self.grads["bias"] = dout.sum(axis=0, keepdims=True)
        d = dout * self.params["weight"]
        mean_d, mean_dx = d.mean(axis=0, keepdims=True), (d * self.x_hat).mean(axis=0, keepdims=True)
        return (d - mean_d - self.x_hat * mean_dx) * self.inv_std


@pytest.mark.parametrize(("s", "n", "eps"), [(1, 5, 1e-5), (7, 12, 1e-5), (12, 7, 1e-3)])
def test_layer_norm_matches_torch(torch, s, n, eps):
    rng = np.random.default_rng(5)
    x, dout = 2.0 * rng.standard_normal((s, n)) + 1.0, rng.standard_normal((s, n))

    def layer_norm(xt, weight, bias):
        return torch.nn.functional.layer_norm(xt, (n,), weight.view(-1), bias.view(-1), eps)

    layer = random_layer_norm(rng, n)
    layer.eps = eps
    assert torch_deviation(torch, layer, layer_norm, x, dout) < TORCH_TOL


def test_torch_catches_layer_norm_over_the_batch(torch):
    rng = np.random.default_rng(6)
    x, dout = 2.0 * rng.standard_normal((7, 12)) + 1.0, rng.standard_normal((7, 12))
    layer = random_layer_norm(rng, 12, LayerNormOverTheBatch)
    # self-consistent, so central differences pass it: only the reference can tell
    assert max(gradient_errors(layer, x, dout).values()) < 1e-5

    def layer_norm(xt, weight, bias):
        return torch.nn.functional.layer_norm(xt, (12,), weight.view(-1), bias.view(-1))

    assert torch_deviation(torch, layer, layer_norm, x, dout) > 0.1


def dropout_torch_deviation(torch, layer, x, dout):
    """The module against x ∘ M / (1 − p) by autograd (x in eval mode), M the mask the module draws."""
    p = layer.p
    mask = reseeded(layer)(np.ones_like(x)) != 0
    reference = (lambda xt: xt * torch.tensor(mask) / (1 - p)) if layer.training else (lambda xt: xt * 1)
    layer.rng = np.random.default_rng(7)  # the same mask again
    return torch_deviation(torch, layer, reference, x, dout)


class DropoutNotRescaled(DropoutModule):
    """The planted bug: Y = X ∘ M, so E[Y] = (1 − p) X and eval sees larger activations than training."""

    def forward(self, x):
        y = super().forward(x)
        return y * (1 - self.p) if self.training else y

    def backward(self, dout):
        dx = super().backward(dout)
        return dx * (1 - self.p) if self.training else dx


class DropoutRescaledInEval(DropoutModule):
    """The planted bug: eval divides by 1 − p too (inverted and classic dropout mixed)."""

    def forward(self, x):
        return super().forward(x) if self.training else x / (1 - self.p)

    def backward(self, dout):
        return super().backward(dout) if self.training else dout / (1 - self.p)


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.9])
def test_dropout_matches_torch_with_the_same_mask(torch, p):
    rng = np.random.default_rng(8)
    x, dout = rng.standard_normal((10, 20)), rng.standard_normal((10, 20))
    assert dropout_torch_deviation(torch, DropoutModule(p), x, dout) < TORCH_TOL
    assert dropout_torch_deviation(torch, DropoutModule(p).eval(), x, dout) < TORCH_TOL
    if p > 0:
        assert dropout_torch_deviation(torch, DropoutNotRescaled(p), x, dout) > 0.1
        assert dropout_torch_deviation(torch, DropoutRescaledInEval(p).eval(), x, dout) > 0.1


# ---------------------------------------------------------------- dropout's statistics


def dropout_statistics(layer, shape=(2000, 500), seed=0):
    """(mean of Y / mean of X on X = 1 in training, fraction of zeros, whether eval is the identity)."""
    x = np.ones(shape)
    layer.rng = np.random.default_rng(seed)
    layer.train()
    y = layer.forward(x)
    layer.eval()
    x_eval = np.random.default_rng(seed).standard_normal((50, 40))
    eval_is_identity = np.array_equal(layer.forward(x_eval), x_eval) and np.array_equal(
        layer.backward(x_eval), x_eval
    )
    return y.mean(), np.mean(y == 0), eval_is_identity


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_the_mean_drops_a_fraction_p_and_eval_is_the_identity(p):
    # 10^6 entries: the mean's standard error is sqrt(p / (1 − p)) / 1000 <= 0.002
    mean, zeros, eval_is_identity = dropout_statistics(DropoutModule(p))
    assert abs(mean - 1) < 0.01 and abs(zeros - p) < 0.005 and eval_is_identity


@pytest.mark.parametrize("bug", [DropoutNotRescaled, DropoutRescaledInEval])
def test_dropouts_statistics_catch_the_planted_bugs(bug):
    mean, _, eval_is_identity = dropout_statistics(bug(0.5))
    assert abs(mean - 1) > 0.01 or not eval_is_identity


def test_dropout_zero_is_the_identity_in_training_and_draws_nothing():
    rng = np.random.default_rng(9)
    x, dout = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    layer = DropoutModule(0.0, rng=rng)
    state = rng.bit_generator.state
    assert np.array_equal(layer.forward(x), x) and np.array_equal(layer.backward(dout), dout)
    assert rng.bit_generator.state == state


def test_dropout_masks_follow_the_rng_and_backward_uses_the_forwards_mask():
    x = np.ones((30, 40))
    first, second = (DropoutModule(0.5, rng=np.random.default_rng(1)) for _ in range(2))
    y1 = first.forward(x)
    assert np.array_equal(second.forward(x), y1)
    assert not np.array_equal(DropoutModule(0.5, rng=np.random.default_rng(2)).forward(x), y1)
    y = first.forward(x)
    assert not np.array_equal(y, y1)  # a new mask at each forward
    assert np.array_equal(first.backward(x), y)  # and backward uses the last one (x = 1: Y is M / (1 − p))


def test_dropout_without_rng_uses_numpys_global_rng():
    x = np.ones((20, 30))
    np.random.seed(11)  # noqa: NPY002 (the global RNG is what is tested)
    y1 = DropoutModule(0.5).forward(x)
    np.random.seed(11)  # noqa: NPY002
    assert np.array_equal(DropoutModule(0.5).forward(x), y1)


def test_dropout_train_and_eval():
    layer = DropoutModule(0.3)
    assert layer.training and layer.p == 0.3
    assert layer.eval() is layer and not layer.training
    assert layer.train() is layer and layer.training
    assert not layer.train(False).training
    assert repr(layer) == "DropoutModule(p=0.3, training=False)"


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, float("nan")])
def test_dropout_refuses_p_outside_0_1(p):
    with pytest.raises(ValueError, match=r"0 <= p < 1") as raised:
        DropoutModule(p)
    assert "\n" not in str(raised.value)


# ---------------------------------------------------------------- the modules' contract


NEW_MODULES = {
    "elu": lambda n, dtype: ELUModule(0.5),
    "leaky_relu": lambda n, dtype: LeakyReLUModule(),
    "layer_norm": lambda n, dtype: LayerNormModule(n, dtype=dtype),
    "dropout": lambda n, dtype: DropoutModule(0.5, rng=np.random.default_rng(0)),
}


@pytest.mark.parametrize("name", NEW_MODULES)
def test_float32_stays_float32_and_float64_is_the_default(name):
    rng = np.random.default_rng(10)
    for dtype in (np.float32, np.float64):
        layer = NEW_MODULES[name](6, dtype)
        x = rng.standard_normal((4, 6)).astype(dtype)
        y = layer.forward(x)
        dx = layer.backward(np.ones_like(y))
        assert y.dtype == dx.dtype == dtype
        assert all(g.dtype == dtype for g in getattr(layer, "grads", {}).values())
    assert all(p.dtype == np.float64 for p in LayerNormModule(3).params.values())


@pytest.mark.parametrize("name", NEW_MODULES)
def test_misuse_is_a_one_line_value_error(name):
    layer = NEW_MODULES[name](6, np.float64)
    with pytest.raises(ValueError, match="before forward"):
        layer.backward(np.ones((2, 6)))
    for bad in (np.ones(6), np.ones((0, 6))):
        with pytest.raises(ValueError, match="batch"):
            layer.forward(bad)
    layer.forward(np.ones((2, 6)))
    with pytest.raises(ValueError, match="dout of the forward output's shape"):
        layer.backward(np.ones((3, 6)))
    layer.clear_cache()
    with pytest.raises(ValueError, match="before forward"):
        layer.backward(np.ones((2, 6)))


def test_layer_norm_refuses_the_wrong_width_and_has_its_params():
    layer = LayerNormModule(5)
    with pytest.raises(ValueError, match="expects 5 features"):
        layer.forward(np.ones((3, 4)))
    assert np.array_equal(layer.params["weight"], np.ones((1, 5)))
    assert np.array_equal(layer.params["bias"], np.zeros((1, 5)))
    assert {name: g.shape for name, g in layer.grads.items()} == {"weight": (1, 5), "bias": (1, 5)}
    assert repr(layer) == "LayerNormModule(n_features=5, eps=1e-05, dtype=float64)"


def test_layer_norm_normalises_each_sample_alone_and_a_constant_row_is_finite():
    rng = np.random.default_rng(12)
    x = 5.0 * rng.standard_normal((6, 9)) + 3.0
    x[2] = 4.0
    y = LayerNormModule(9).forward(x)
    assert np.all(np.isfinite(y)) and np.array_equal(y[2], np.zeros(9))
    rows = np.concatenate([LayerNormModule(9).forward(x[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(y, rows, rtol=0, atol=1e-14)
    others = [i for i in range(6) if i != 2]
    np.testing.assert_allclose(y[others].mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(y[others].var(axis=1), 1, atol=1e-5)  # 1 − ε/σ² to first order


def test_elu_is_finite_far_from_zero_and_reprs():
    x = np.array([[-1000.0, -1.0, 0.0, 1.0, 1000.0]])
    layer = ELUModule(alpha=0.5)
    np.testing.assert_array_equal(layer.forward(x), [[-0.5, 0.5 * np.expm1(-1.0), 0.0, 1.0, 1000.0]])
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), [[0.0, 0.5 * np.exp(-1.0), 0.5, 1.0, 1.0]])
    assert (repr(ELUModule()), repr(LeakyReLUModule(0.2))) == (
        "ELUModule(alpha=1.0)",
        "LeakyReLUModule(neg_slope=0.2)",
    )


# ---------------------------------------------------------------- MLP keywords


def kinds(model):
    return [type(layer).__name__.removesuffix("Module") for layer in model.layers]


def test_mlp_keywords_build_their_layers():
    model = MLP(6, [5, 4], 3, activation="elu", alpha=0.5, use_layer_norm=True, dropout=0.2)
    hidden = ["Linear", "LayerNorm", "ELU", "Dropout"]
    assert kinds(model) == hidden * 2 + ["Linear", "SoftMax"]
    assert [layer.alpha for layer in model.layers if isinstance(layer, ELUModule)] == [0.5, 0.5]
    assert [layer.n_features for layer in model.layers if isinstance(layer, LayerNormModule)] == [5, 4]
    assert [layer.p for layer in model.layers if isinstance(layer, DropoutModule)] == [0.2, 0.2]
    leaky = MLP(6, [5], 3, use_batch_norm=True, activation="leaky_relu", neg_slope=0.1)
    assert kinds(leaky) == ["Linear", "BatchNorm", "LeakyReLU", "Linear", "SoftMax"]
    assert leaky.layers[2].neg_slope == 0.1
    assert kinds(MLP(6, [], 3, dropout=0.5, use_layer_norm=True)) == ["Linear", "SoftMax"]


def test_mlp_defaults_are_2021s_network_bit_for_bit():
    """MLP(...) without the keywords, with them at their defaults, and 2021's layers built by hand."""
    rng = np.random.default_rng(13)
    x, dout = rng.standard_normal((5, 10)), rng.standard_normal((5, 4))
    plain = MLP(10, [8, 6], 4, rng=np.random.default_rng(1))
    explicit = MLP(10, [8, 6], 4, rng=np.random.default_rng(1), activation="relu", alpha=1.0,
                   neg_slope=0.01, use_layer_norm=False, dropout=0.0)  # fmt: skip
    by_hand_rng = np.random.default_rng(1)
    linears = [LinearModule(m, n, input_layer=m == 10, rng=by_hand_rng) for m, n in [(10, 8), (8, 6), (6, 4)]]
    by_hand = [linears[0], ReLUModule(), linears[1], ReLUModule(), linears[2], SoftMaxModule()]
    assert kinds(plain) == kinds(explicit) == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "SoftMax"]
    assert repr(plain) == repr(explicit)
    out = x
    for layer in by_hand:
        out = layer.forward(out)
    for model in (plain, explicit):
        assert np.array_equal(model.forward(x), out)
        for layer, reference in zip(model.layers, by_hand, strict=True):
            for name, param in getattr(layer, "params", {}).items():
                assert np.array_equal(param, reference.params[name])
    plain.backward(dout)
    explicit.backward(dout)
    for a, b in zip(plain.linears, explicit.linears, strict=True):
        assert all(np.array_equal(a.grads[name], b.grads[name]) for name in a.grads)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"activation": "tanh"}, "activation must be one of relu, elu, leaky_relu, got 'tanh'"),
        ({"use_batch_norm": True, "use_layer_norm": True}, "exclude each other"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_mlp_refuses_bad_keywords_in_one_line(options, message):
    for n_hidden in ([5], []):  # refused even where no hidden layer would use them
        with pytest.raises(ValueError, match=message) as raised:
            MLP(6, n_hidden, 3, **options)
        assert "\n" not in str(raised.value)


def test_mlp_extras_are_keyword_only():
    with pytest.raises(TypeError):
        MLP(6, [5], 3, False, np.float64, None, "elu")


def test_mlp_dropout_masks_come_from_its_rng_and_eval_turns_them_off():
    x = np.random.default_rng(14).standard_normal((8, 6))
    rng = np.random.default_rng(3)
    a, b = (
        MLP(6, [16, 16], 3, dropout=0.5, rng=rng),
        MLP(6, [16, 16], 3, dropout=0.5, rng=np.random.default_rng(3)),
    )
    assert [layer.rng for layer in a.layers if isinstance(layer, DropoutModule)] == [rng, rng]
    for _ in range(3):  # the same seed, the same masks, batch after batch
        assert np.array_equal(a.forward(x), b.forward(x))
    assert not np.array_equal(a.forward(x), a.forward(x))
    without = MLP(6, [16, 16], 3, rng=np.random.default_rng(3))  # the weights are drawn before any mask
    assert a.eval() is a and not any(layer.training for layer in a.layers if isinstance(layer, DropoutModule))
    assert np.array_equal(a.forward(x), without.forward(x))
    a.train()
    assert all(layer.training for layer in a.layers if isinstance(layer, DropoutModule))
    np.random.seed(5)  # noqa: NPY002 (rng=None: NumPy's global RNG, weights and masks alike)
    c = MLP(6, [16], 3, dropout=0.5).forward(x)
    np.random.seed(5)  # noqa: NPY002
    assert np.array_equal(MLP(6, [16], 3, dropout=0.5).forward(x), c)


def test_layer_norm_mlp_gives_the_same_in_training_and_eval():
    model = MLP(6, [7, 5], 3, use_layer_norm=True, activation="leaky_relu", rng=np.random.default_rng(4))
    x = np.random.default_rng(15).standard_normal((4, 6))
    train_out = model.forward(x)
    assert np.array_equal(model.eval().forward(x), train_out)
    np.testing.assert_allclose(model.forward(x[:1]), train_out[:1], rtol=0, atol=1e-15)


def test_whole_mlp_gradients_with_every_new_module():
    """Cross-entropy of an MLP with ELU, layer norm and dropout (masks held), every parameter."""
    rng = np.random.default_rng(16)
    x, y = rng.standard_normal((6, 10)), rng.integers(4, size=6)
    model = MLP(10, [8, 6], 4, activation="elu", alpha=0.5, use_layer_norm=True, dropout=0.3, rng=rng)
    dropouts = [layer for layer in model.layers if isinstance(layer, DropoutModule)]
    loss = CrossEntropyModule()

    def loss_of_model(_):
        for i, layer in enumerate(dropouts):
            layer.rng = np.random.default_rng(i)
        return loss.forward(model.forward(x), y)

    for layer in model.layers:
        for param in getattr(layer, "params", {}).values():
            param += 0.1 * rng.standard_normal(param.shape)
    for i, layer in enumerate(dropouts):
        layer.rng = np.random.default_rng(i)
    probs = model.forward(x)
    model.backward(loss.backward(probs, y))
    for layer in (layer for layer in model.layers if hasattr(layer, "params")):
        for name, param in layer.params.items():
            numeric = eval_numerical_gradient(loss_of_model, param, verbose=False)
            assert rel_error(layer.grads[name], numeric) < 1e-5, (layer, name)

"""optim.py: every rule takes torch.optim's steps, for 50 steps in float64, over a grid of settings.

The same parameters and the same random gradients go to optim.X and to torch.optim.X; the
parameters are compared after every step. Torch's CPU kernels round a fused multiply-add once
where NumPy rounds twice, so the two agree to a few units in the last place, not bit for bit;
the tolerance below is a thousand times that, and each planted bug misses it by far more.
"""

import numpy as np
import pytest

import optim
from mlp_numpy import MLP
from modules import CrossEntropyModule, ReLUModule

STEPS = 50
TOL = 1e-12  # max |ours − torch's| over all steps; parameters are O(1)
SHAPES = [[(4, 3), (1, 4)], [(2, 5)], [(7,)]]  # a linear's weight and bias, another matrix, a vector


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


class Layer:
    """A module with params and grads, as optim sees LinearModule or BatchNormModule."""

    def __init__(self, shapes, rng):
        self.params = {f"p{i}": rng.standard_normal(shape) for i, shape in enumerate(shapes)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}


def make_layers(rng):
    """model.layers-like: layers with params, and a ReLU (no params) in between."""
    return [Layer(SHAPES[0], rng), ReLUModule(), Layer(SHAPES[1], rng), Layer(SHAPES[2], rng)]


def params_of(layers):
    return [p for layer in layers if hasattr(layer, "params") for p in layer.params.values()]


def grads_of(layers):
    return [layer.grads[name] for layer in layers if hasattr(layer, "params") for name in layer.params]


def deviation_from_torch(torch, rule, options, steps=STEPS, seed=0):
    """max |θ_ours − θ_torch| over every step, the same θ₀ and gradients given to both rules.
    New gradient arrays each step, as backward leaves them; the parameters must stay the same arrays.
    The reference is torch.optim's class of the rule's name (a planted bug's: its parent's)."""
    rng = np.random.default_rng(seed)
    layers = make_layers(rng)
    ours = params_of(layers)
    theirs = [torch.tensor(p.copy(), requires_grad=True) for p in ours]
    torch_rule = next(
        getattr(torch.optim, c.__name__) for c in rule.__mro__ if hasattr(torch.optim, c.__name__)
    )
    optimizer, reference = rule(layers, **options), torch_rule(theirs, **options)
    worst = 0.0
    for _ in range(steps):
        for layer in layers:
            if hasattr(layer, "params"):
                layer.grads = {name: rng.standard_normal(p.shape) for name, p in layer.params.items()}
        for param, grad in zip(theirs, grads_of(layers), strict=True):
            param.grad = torch.tensor(grad.copy())
        optimizer.step()
        reference.step()
        worst = max(worst, *(np.abs(p - t.detach().numpy()).max() for p, t in zip(ours, theirs, strict=True)))
    assert all(a is b for a, b in zip(params_of(layers), ours, strict=True)), (
        "params must be updated in place"
    )
    return worst


SGD_GRID = [
    dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay)
    for lr in (0.1, 0.01)
    for momentum in (0.0, 0.5, 0.9)
    for dampening in (0.0, 0.3)
    for nesterov in (False, True)
    for weight_decay in (0.0, 0.05)
    if not nesterov or (momentum > 0 and dampening == 0)
]
RMSPROP_GRID = [
    dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay)
    for lr in (1e-2, 1e-3)
    for alpha in (0.99, 0.6)
    for eps in (1e-8, 1e-3)
    for momentum in (0.0, 0.9)
    for weight_decay in (0.0, 0.1)
]
ADAM_GRID = [
    dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    for lr in (1e-3, 3e-2)
    for betas in ((0.9, 0.999), (0.5, 0.9), (0.0, 0.99))
    for eps in (1e-8, 1e-2)
    for weight_decay in (0.0, 0.1)
]
GRID = (
    [(optim.SGD, o) for o in SGD_GRID]
    + [(optim.RMSprop, o) for o in RMSPROP_GRID]
    + [(optim.Adam, o) for o in ADAM_GRID]
)


@pytest.mark.parametrize(("rule", "options"), GRID, ids=[f"{r.__name__}-{o}" for r, o in GRID])
def test_each_rule_takes_torch_optims_steps(torch, rule, options):
    assert deviation_from_torch(torch, rule, options) < TOL


def test_defaults_match_torchs_defaults(torch):
    for rule in (optim.RMSprop, optim.Adam):
        assert deviation_from_torch(torch, rule, {}) < TOL
    assert deviation_from_torch(torch, optim.SGD, {"lr": 0.1}) < TOL


class AdamWithoutBiasCorrection(optim.Adam):
    def update(self, param, grad, state):
        beta1, beta2 = self.betas
        if not state:
            state.update(exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
        state["exp_avg"][...] = beta1 * state["exp_avg"] + (1 - beta1) * grad
        state["exp_avg_sq"][...] = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad**2
        param -= self.lr * state["exp_avg"] / (np.sqrt(state["exp_avg_sq"]) + self.eps)


class SGDIgnoringMomentum(optim.SGD):
    def update(self, param, grad, state):
        param -= self.lr * grad


class SGDWithMomentumOfTheWrongSign(optim.SGD):
    def update(self, param, grad, state):
        buf = state.setdefault("momentum_buffer", np.zeros_like(param))
        buf[...] = grad - self.momentum * buf
        param -= self.lr * buf


@pytest.mark.parametrize(
    ("bug", "options"),
    [
        (AdamWithoutBiasCorrection, {"lr": 1e-2}),
        (SGDIgnoringMomentum, {"lr": 0.1, "momentum": 0.9}),
        (SGDWithMomentumOfTheWrongSign, {"lr": 0.1, "momentum": 0.9}),
    ],
)
def test_the_comparison_catches_planted_bugs(torch, bug, options):
    assert deviation_from_torch(torch, bug, options) > 1e3 * TOL


def test_plain_sgd_is_the_2021_update_bit_for_bit():
    """optim.SGD(lr) on a float32 MLP after a backward: the trainer's old loop, p -= lr * g."""
    rng = np.random.default_rng(3)
    models = [
        MLP(12, [8, 6], 4, use_batch_norm=True, dtype=np.float32, rng=np.random.default_rng(1)) for _ in "ab"
    ]
    x, y = rng.standard_normal((5, 12)), rng.integers(4, size=5)
    sgd = optim.SGD(models[0].layers, lr=0.1)
    for _ in range(3):
        for model in models:
            model.backward(CrossEntropyModule().backward(model.forward(x), y))
        sgd.step()
        for layer in models[1].layers:
            if hasattr(layer, "params"):
                for name, param in layer.params.items():
                    param -= 0.1 * layer.grads[name]
    for ours, old in zip(params_of(models[0].layers), params_of(models[1].layers), strict=True):
        assert ours.dtype == np.float32 and np.array_equal(ours, old)


@pytest.mark.parametrize(
    ("rule", "options"),
    [
        (optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
        (optim.RMSprop, {"momentum": 0.5}),
        (optim.Adam, {"weight_decay": 0.1}),
    ],
)
def test_gradients_are_read_not_written_and_float32_stays_float32(rule, options):
    """The same grad arrays left for two steps (no new backward) are unchanged: no state aliases them."""
    rng = np.random.default_rng(0)
    layers = make_layers(rng)
    for layer in [layer for layer in layers if hasattr(layer, "params")]:
        layer.params = {name: p.astype(np.float32) for name, p in layer.params.items()}
        layer.grads = {
            name: rng.standard_normal(p.shape).astype(np.float32) for name, p in layer.params.items()
        }
    grads = [g.copy() for g in grads_of(layers)]
    optimizer = rule(layers, **options)
    optimizer.step()
    optimizer.step()
    assert all(np.array_equal(a, b) for a, b in zip(grads_of(layers), grads, strict=True))
    assert all(p.dtype == np.float32 for p in params_of(layers))
    assert all(
        a.dtype == np.float32 for s in optimizer.state for a in s.values() if isinstance(a, np.ndarray)
    )
    assert len(optimizer.state) == sum(len(layer.params) for layer in layers if hasattr(layer, "params"))


def test_the_trainer_keywords_build_every_rule_on_an_mlp_with_layer_norm():
    model = MLP(6, [5], 3, use_layer_norm=True, dropout=0.2, rng=np.random.default_rng(0))
    for name, options in [("SGD", {"momentum": 0.9}), ("RMSprop", {}), ("Adam", {"weight_decay": 1e-4})]:
        optimizer = getattr(optim, name)(model.layers, lr=1e-2, **options)
        assert [layer for layer, _ in optimizer.slots] == [model.layers[0]] * 2 + [model.layers[1]] * 2 + [
            model.linears[-1]
        ] * 2
        assert name in repr(optimizer)


BAD_SETTINGS = [
    ("SGD", {"lr": -0.1}, "Invalid learning rate"),
    ("SGD", {"lr": float("nan")}, "Invalid learning rate"),
    ("SGD", {"lr": 0.1, "momentum": -0.5}, "Invalid momentum value"),
    ("SGD", {"lr": 0.1, "weight_decay": -1e-4}, "Invalid weight_decay value"),
    ("SGD", {"lr": 0.1, "nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}, "Nesterov momentum requires"),
    ("RMSprop", {"alpha": -0.1}, "Invalid alpha value"),
    ("RMSprop", {"eps": -1e-8}, "Invalid epsilon value"),
    ("RMSprop", {"momentum": -0.9}, "Invalid momentum value"),
    ("Adam", {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0"),
    ("Adam", {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1"),
    ("Adam", {"eps": -1.0}, "Invalid epsilon value"),
    ("Adam", {"lr": -1e-3}, "Invalid learning rate"),
]


@pytest.mark.parametrize(("name", "options", "message"), BAD_SETTINGS)
def test_bad_settings_are_one_line_value_errors_where_torch_refuses_them(torch, name, options, message):
    with pytest.raises(ValueError, match=message) as raised:
        getattr(optim, name)(make_layers(np.random.default_rng(0)), **options)
    assert "\n" not in str(raised.value)
    if not np.isnan(options.get("lr", 0.0)):  # torch's lr < 0 lets NaN through
        with pytest.raises(ValueError, match=message):
            getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **options)


def test_layers_without_params_are_an_empty_parameter_list():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([ReLUModule(), ReLUModule()], lr=0.1)

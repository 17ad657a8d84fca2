"""Behaviour of the NumPy modules (modules.py) and of the NumPy MLP (mlp_numpy.py).

Forward and backward passes are compared with PyTorch autograd on identical float64
inputs (skipped when torch is absent); the rest checks the interface contract of
SPEC.md: label formats, numerical safety, dtypes, cache clearing, initialisation
and the layer structure of the MLP.
"""

import copy
import warnings
from contextlib import contextmanager

import numpy as np
import pytest

from mlp_numpy import MLP
from modules import CrossEntropyModule, LinearModule, ReLUModule, SoftMaxModule

RTOL = 1e-10
ATOL = 1e-12


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def to_torch(torch, array, requires_grad=False):
    return torch.tensor(np.array(array, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)


def random_probs(rng, s, c, low=0.05):
    x = rng.uniform(low, 1.0, size=(s, c))
    return x / x.sum(axis=1, keepdims=True)


@contextmanager
def no_numpy_warnings():
    """Overflow, division by zero and invalid operations raise; any warning is an error.

    Underflow is left alone: a softmax probability of exp(-2e4) must underflow to 0,
    which is the very situation the clamp in CrossEntropyModule is there for.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
            yield


def arrays_in(obj, seen=None):
    """Every distinct ndarray reachable from obj through attributes, dicts, lists and tuples."""
    seen = {} if seen is None else seen
    if isinstance(obj, np.ndarray):
        seen.setdefault(id(obj), obj)
    elif isinstance(obj, dict):
        for value in obj.values():
            arrays_in(value, seen)
    elif isinstance(obj, (list, tuple, set)):
        for value in obj:
            arrays_in(value, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        arrays_in(vars(obj), seen)
    return seen


def total_nbytes(obj):
    return sum(a.nbytes for a in arrays_in(obj).values())


def cached_arrays(module):
    """Arrays held by a module's attributes other than params and grads."""
    return {
        key: value
        for key, value in vars(module).items()
        if key not in ("params", "grads") and arrays_in(value)
    }


# ------------------------------------------------------------------ against PyTorch autograd


@pytest.mark.parametrize("input_layer", [False, True])
def test_linear_matches_torch(input_layer):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    s, m, n = 7, 9, 5
    layer = LinearModule(m, n, input_layer=input_layer)
    layer.params["bias"] += rng.standard_normal((1, n))  # nonzero bias, so it counts
    x = rng.standard_normal((s, m))
    dout = rng.standard_normal((s, n))

    out = layer.forward(x)
    dx = layer.backward(dout)

    xt = to_torch(torch, x, requires_grad=True)
    wt = to_torch(torch, layer.params["weight"], requires_grad=True)
    bt = to_torch(torch, layer.params["bias"], requires_grad=True)
    out_t = xt @ wt.T + bt
    out_t.backward(to_torch(torch, dout))

    assert out.shape == (s, n) and dx.shape == (s, m)
    assert_close(out, out_t.detach().numpy())
    assert_close(dx, xt.grad.numpy())
    assert_close(layer.grads["weight"], wt.grad.numpy())
    assert_close(layer.grads["bias"], bt.grad.numpy())


def test_linear_backward_overwrites_grads_each_call():
    """grads hold the gradient of the last backward, not a running sum."""
    rng = np.random.default_rng(11)
    layer = LinearModule(4, 3)
    x = rng.standard_normal((5, 4))
    dout = rng.standard_normal((5, 3))
    layer.forward(x)
    layer.backward(dout)
    layer.backward(dout)
    assert_close(layer.grads["weight"], dout.T @ x)
    assert_close(layer.grads["bias"], dout.sum(axis=0, keepdims=True))


def test_default_linear_weight_is_row_major_so_a_flattened_weight_is_a_view():
    """Graders may perturb params['weight'].reshape(-1)[i]: that must reach the layer."""
    layer = LinearModule(6, 4)
    layer.params["weight"].reshape(-1)[13] += 1.0
    assert layer.params["weight"][2, 1] != 0 and layer.params["weight"].flags.c_contiguous
    assert "column_major=False" in repr(layer)


def test_column_major_linear_has_the_seeded_values_and_the_same_gradients():
    """The layout the trainer uses for speed changes neither values nor results."""
    row, col = (LinearModule(6, 4, rng=np.random.default_rng(3), column_major=cm) for cm in (False, True))
    np.testing.assert_array_equal(col.params["weight"], row.params["weight"])
    x, dout = (
        np.random.default_rng(4).standard_normal((5, 6)),
        np.random.default_rng(5).standard_normal((5, 4)),
    )
    for layer in (row, col):
        assert_close(layer.forward(x), x @ row.params["weight"].T)
        assert_close(layer.backward(dout), dout @ row.params["weight"])
        assert_close(layer.grads["weight"], dout.T @ x)
    for array in (col.params["weight"], col.grads["weight"]):
        assert array.flags.f_contiguous and not array.flags.c_contiguous
    col.params["weight"][2, 5] += 1.0  # an in-place edit by index still reaches the layer
    bumped = row.params["weight"].copy()
    bumped[2, 5] += 1.0
    assert_close(col.forward(x), x @ bumped.T)


def test_relu_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    x = rng.standard_normal((8, 6))
    x[0, :3] = 0.0  # the kink: both treat the derivative at 0 as 0
    dout = rng.standard_normal((8, 6))
    relu = ReLUModule()
    out = relu.forward(x)
    dx = relu.backward(dout)

    xt = to_torch(torch, x, requires_grad=True)
    out_t = torch.relu(xt)
    out_t.backward(to_torch(torch, dout))

    assert_close(out, out_t.detach().numpy())
    assert_close(dx, xt.grad.numpy())
    assert np.all(dx[x <= 0] == 0)


def test_softmax_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    x = 3.0 * rng.standard_normal((9, 5))
    dout = rng.standard_normal((9, 5))
    softmax = SoftMaxModule()
    out = softmax.forward(x)
    dx = softmax.backward(dout)

    xt = to_torch(torch, x, requires_grad=True)
    out_t = torch.softmax(xt, dim=1)
    out_t.backward(to_torch(torch, dout))

    assert_close(out, out_t.detach().numpy())
    assert_close(out.sum(axis=1), np.ones(9))
    assert_close(dx, xt.grad.numpy())


def test_softmax_does_not_modify_its_input():
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    before = x.copy()
    SoftMaxModule().forward(x)
    np.testing.assert_array_equal(x, before)


def _torch_cross_entropy(torch, x, targets):
    xt = to_torch(torch, x, requires_grad=True)
    loss = -(to_torch(torch, targets) * torch.log(xt)).sum() / len(x)
    loss.backward()
    return loss.item(), xt.grad.numpy()


def test_cross_entropy_labels_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    s, c = 11, 6
    x = random_probs(rng, s, c)
    y = rng.integers(c, size=s)
    ce = CrossEntropyModule()
    loss = ce.forward(x, y)
    dx = ce.backward(x, y)

    loss_t, dx_t = _torch_cross_entropy(torch, x, np.eye(c)[y])
    assert np.ndim(loss) == 0
    assert_close(loss, loss_t)
    assert dx.shape == (s, c)
    assert_close(dx, dx_t)


def test_cross_entropy_soft_targets_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(15)
    s, c = 8, 5
    x = random_probs(rng, s, c)
    t = rng.uniform(size=(s, c))
    t /= t.sum(axis=1, keepdims=True)
    ce = CrossEntropyModule()
    loss = ce.forward(x, t)
    dx = ce.backward(x, t)

    loss_t, dx_t = _torch_cross_entropy(torch, x, t)
    assert_close(loss, loss_t)
    assert_close(dx, dx_t)


def _torch_mlp(torch, model, x, targets):
    """The same network in torch with the model's weights: probabilities, loss, parameter tensors."""
    tensors = [
        (to_torch(torch, lin.params["weight"], True), to_torch(torch, lin.params["bias"], True))
        for lin in model.linears
    ]
    h = to_torch(torch, x)
    for i, (w, b) in enumerate(tensors):
        h = h @ w.T + b
        if i < len(tensors) - 1:
            h = torch.relu(h)
    probs = torch.softmax(h, dim=1)
    loss = -(to_torch(torch, targets) * torch.log(probs)).sum() / len(x)
    loss.backward()
    return probs.detach().numpy(), loss.item(), tensors


@pytest.mark.parametrize("n_hidden", [[], [7], [16, 8]])
def test_mlp_matches_torch(n_hidden):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(16 + len(n_hidden))
    s, n_inputs, n_classes = 10, 12, 4
    model = MLP(n_inputs, n_hidden, n_classes)
    for lin in model.linears:
        lin.params["bias"] += 0.1 * rng.standard_normal(lin.params["bias"].shape)
    x = rng.standard_normal((s, n_inputs))
    y = rng.integers(n_classes, size=s)
    ce = CrossEntropyModule()

    probs = model.forward(x)
    loss = ce.forward(probs, y)
    model.backward(ce.backward(probs, y))

    probs_t, loss_t, tensors = _torch_mlp(torch, model, x, np.eye(n_classes)[y])
    assert len(model.linears) == len(n_hidden) + 1
    assert_close(probs, probs_t)
    assert_close(loss, loss_t)
    for lin, (w, b) in zip(model.linears, tensors, strict=True):
        assert_close(lin.grads["weight"], w.grad.numpy())
        assert_close(lin.grads["bias"], b.grad.numpy())
        assert np.any(lin.grads["weight"] != 0)


# ------------------------------------------------------------------ label formats


@pytest.mark.parametrize("onehot_dtype", [np.float64, np.int64])
def test_cross_entropy_labels_and_one_hot_agree(onehot_dtype):
    rng = np.random.default_rng(20)
    s, c = 13, 7
    x = random_probs(rng, s, c)
    y = rng.integers(c, size=s)
    t = np.eye(c, dtype=onehot_dtype)[y]
    ce = CrossEntropyModule()

    expected = -np.log(x[np.arange(s), y]).mean()
    assert_close(ce.forward(x, y), expected)
    assert_close(ce.forward(x, t), expected)
    dx_labels, dx_onehot = ce.backward(x, y), ce.backward(x, t)
    assert dx_labels.shape == dx_onehot.shape == (s, c)
    assert_close(dx_labels, dx_onehot)
    assert_close(dx_labels[np.arange(s), y], -1.0 / (s * x[np.arange(s), y]))
    assert np.count_nonzero(dx_labels) == s


@pytest.mark.parametrize(
    "targets",
    [
        np.array([[0], [1], [2], [1]]),  # labels as a column: would broadcast over the classes
        np.array([0, 1, -1, 2]),  # -1 would index the last class
        np.array([0, 1, 3, 2]),  # no class 3
        np.array([0.0, 1.0, 2.0, 1.0]),  # float labels
        np.array([0, 1, 2]),  # one label short
        np.eye(3)[[0, 1, 2]],  # targets for 3 rows, not 4
    ],
)
@pytest.mark.parametrize("method", ["forward", "backward"])
def test_cross_entropy_refuses_misreadable_targets(targets, method):
    x = random_probs(np.random.default_rng(21), 4, 3)
    with pytest.raises(ValueError, match="labels|targets"):
        getattr(CrossEntropyModule(), method)(x, targets)


# ------------------------------------------------------------------ numerical safety

BIG_LOGITS = [[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [-1e4, 1e4, 1e4]]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_huge_logits_are_finite(dtype):
    x = np.array(BIG_LOGITS, dtype=dtype)
    with no_numpy_warnings():
        y = SoftMaxModule().forward(x)
    assert y.dtype == dtype
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y, [[1, 0, 0], [1 / 3] * 3, [0, 0.5, 0.5]], rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_zero_probability_is_finite(dtype):
    x = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], dtype=dtype)
    y = np.array([0, 2])
    ce = CrossEntropyModule()
    with no_numpy_warnings():
        loss_labels = ce.forward(x, y)
        loss_onehot = ce.forward(x, np.eye(3, dtype=dtype)[y])
        dx_labels = ce.backward(x, y)
        dx_onehot = ce.backward(x, np.eye(3, dtype=dtype)[y])
    expected = (-np.log(1e-30) - np.log(0.5)) / 2
    assert np.isclose(-np.log(1e-30), 69.0776, atol=1e-4)
    for loss in (loss_labels, loss_onehot):
        assert np.isfinite(loss)
        np.testing.assert_allclose(loss, expected, rtol=1e-6)
    for dx in (dx_labels, dx_onehot):
        assert dx.dtype == dtype
        assert np.all(np.isfinite(dx))
        assert dx[0, 0] < -1e29  # large, pointing the right way, but finite
        np.testing.assert_allclose(dx[1, 2], -1.0 / (0.5 * 2), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_cross_entropy_chain_is_finite(dtype):
    logits = np.array([[-1e4, 1e4, 0.0], [1.0, 2.0, 3.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    y = np.array([0, 1, 2])  # sample 0: true-class probability underflows to exactly 0
    softmax, ce = SoftMaxModule(), CrossEntropyModule()
    with no_numpy_warnings():
        probs = softmax.forward(logits)
        assert probs[0, 0] == 0.0
        loss = ce.forward(probs, y)
        dprobs = ce.backward(probs, y)
        dlogits = softmax.backward(dprobs)
    assert np.isfinite(loss) and loss > 69.0776 / 3
    assert np.all(np.isfinite(dprobs))
    assert np.all(np.isfinite(dlogits))
    assert dlogits.dtype == dtype
    # the ordinary rows still get softmax - onehot, divided by S
    expected = (probs[1:] - np.eye(3, dtype=dtype)[y[1:]]) / 3
    np.testing.assert_allclose(dlogits[1:], expected, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ dtypes


def _all_arrays_of(model_or_layer):
    layers = model_or_layer.linears if isinstance(model_or_layer, MLP) else [model_or_layer]
    return [a for lin in layers for d in (lin.params, lin.grads) for a in d.values()]


def test_default_linear_is_float64():
    rng = np.random.default_rng(30)
    layer = LinearModule(5, 3)
    assert all(a.dtype == np.float64 for a in _all_arrays_of(layer))
    out = layer.forward(rng.standard_normal((4, 5)))
    dx = layer.backward(rng.standard_normal((4, 3)))
    assert out.dtype == dx.dtype == np.float64
    assert all(a.dtype == np.float64 for a in _all_arrays_of(layer))


@pytest.mark.parametrize("input_dtype", [np.float64, np.float32])
def test_default_mlp_is_float64_end_to_end(input_dtype):
    rng = np.random.default_rng(31)
    model = MLP(6, [5, 4], 3)
    assert all(a.dtype == np.float64 for a in _all_arrays_of(model))
    x = rng.standard_normal((7, 6)).astype(input_dtype)
    y = rng.integers(3, size=7)
    ce = CrossEntropyModule()
    probs = model.forward(x)
    assert probs.dtype == np.float64
    loss = ce.forward(probs, y)
    assert np.asarray(loss).dtype == np.float64
    dprobs = ce.backward(probs, y)
    assert dprobs.dtype == np.float64
    model.backward(dprobs)
    assert all(a.dtype == np.float64 for a in _all_arrays_of(model))
    # float32 input is widened, not kept: results equal those of the same input in float64
    np.testing.assert_array_equal(probs, model.forward(x.astype(np.float64)))


def test_linear_float32_stays_float32():
    rng = np.random.default_rng(32)
    layer = LinearModule(5, 3, dtype=np.float32)
    assert all(a.dtype == np.float32 for a in _all_arrays_of(layer))
    out = layer.forward(rng.standard_normal((4, 5)).astype(np.float32))
    dx = layer.backward(rng.standard_normal((4, 3)).astype(np.float32))
    assert out.dtype == dx.dtype == np.float32
    assert all(a.dtype == np.float32 for a in _all_arrays_of(layer))


@pytest.mark.parametrize("input_dtype", [np.float64, np.float32])
def test_mlp_float32_stays_float32(input_dtype):
    rng = np.random.default_rng(33)
    model = MLP(6, [5, 4], 3, dtype=np.float32)
    assert all(a.dtype == np.float32 for a in _all_arrays_of(model))
    x = rng.standard_normal((7, 6)).astype(input_dtype)
    y = rng.integers(3, size=7)
    ce = CrossEntropyModule()
    probs = model.forward(x)
    assert probs.dtype == np.float32
    dprobs = ce.backward(probs, y)
    assert dprobs.dtype == np.float32
    model.backward(dprobs)
    assert all(a.dtype == np.float32 for a in _all_arrays_of(model))
    assert all(np.any(lin.grads["weight"] != 0) for lin in model.linears)


# ------------------------------------------------------------------ clear_cache


@pytest.mark.parametrize(
    "make, shape",
    [(lambda: LinearModule(6, 4), (5, 6)), (ReLUModule, (5, 6)), (SoftMaxModule, (5, 6))],
    ids=["linear", "relu", "softmax"],
)
def test_clear_cache_drops_arrays(make, shape):
    rng = np.random.default_rng(40)
    module = make()
    out = module.forward(rng.standard_normal(shape))
    module.backward(rng.standard_normal(out.shape))
    assert cached_arrays(module), "forward should keep something for backward"
    module.clear_cache()
    assert cached_arrays(module) == {}


def test_mlp_clear_cache_and_deepcopy_size():
    rng = np.random.default_rng(41)
    model = MLP(3072, [64, 32], 10)
    x = rng.standard_normal((256, 3, 32, 32))
    probs = model.forward(x)
    model.backward(CrossEntropyModule().backward(probs, rng.integers(10, size=256)))
    params_bytes = sum(a.nbytes for a in _all_arrays_of(model))
    assert any(cached_arrays(m) for m in model.modules)
    assert total_nbytes(copy.deepcopy(model)) > params_bytes + x.nbytes  # the cache holds the input

    model.clear_cache()
    for module in model.modules:
        assert cached_arrays(module) == {}, module
    clone = copy.deepcopy(model)
    assert total_nbytes(clone) == params_bytes
    # the clone still works and computes the same thing
    np.testing.assert_array_equal(clone.forward(x[:8]), model.forward(x[:8]))


# ------------------------------------------------------------------ initialisation


@pytest.mark.parametrize("input_layer", [False, True])
def test_linear_shapes_and_zero_init(input_layer):
    layer = LinearModule(11, 4, input_layer=input_layer)
    assert set(layer.params) == set(layer.grads) == {"weight", "bias"}
    assert layer.params["weight"].shape == (4, 11)
    assert layer.params["bias"].shape == (1, 4)
    np.testing.assert_array_equal(layer.params["bias"], 0)
    for name in ("weight", "bias"):
        assert layer.grads[name].shape == layer.params[name].shape
        np.testing.assert_array_equal(layer.grads[name], 0)
        assert layer.grads[name] is not layer.params[name]
    assert np.any(layer.params["weight"] != 0)


@pytest.mark.parametrize("input_layer, gain", [(False, 2.0), (True, 1.0)])
def test_kaiming_variance(input_layer, gain):
    # unseeded on purpose (the plain constructor, NumPy's global RNG): with 1e6 draws the bounds below
    # sit 5 to 20 standard errors away, so a false failure is practically impossible
    fan_in, fan_out = 500, 2000
    w = LinearModule(fan_in, fan_out, input_layer=input_layer).params["weight"]
    assert w.shape == (fan_out, fan_in)
    expected_var = gain / fan_in
    # 1e6 samples: the relative std error of the variance is ~0.14%, of the mean ~1e-3 sigma
    assert abs(w.var() / expected_var - 1) < 0.03
    assert abs(w.mean()) < 5 * np.sqrt(expected_var / w.size)
    # normal, not uniform: about 68.3% within one standard deviation
    assert abs(np.mean(np.abs(w) < np.sqrt(expected_var)) - 0.6827) < 0.01


# ------------------------------------------------------------------ MLP structure


def test_mlp_without_hidden_layers_is_logistic_regression():
    model = MLP(10, [], 4)
    assert [type(m) for m in model.modules] == [LinearModule, SoftMaxModule]
    lin = model.modules[0]
    assert lin.params["weight"].shape == (4, 10)
    assert lin.input_layer


def test_mlp_layer_order():
    model = MLP(10, [6, 5], 3)
    assert [type(m) for m in model.modules] == [
        LinearModule,
        ReLUModule,
        LinearModule,
        ReLUModule,
        LinearModule,
        SoftMaxModule,
    ]
    shapes = [m.params["weight"].shape for m in model.modules if isinstance(m, LinearModule)]
    assert shapes == [(6, 10), (5, 6), (3, 5)]
    assert [m.input_layer for m in model.modules if isinstance(m, LinearModule)] == [True, False, False]
    relus = [m for m in model.modules if isinstance(m, ReLUModule)]
    assert relus[0] is not relus[1]


def test_mlp_accepts_images_and_flat_vectors():
    rng = np.random.default_rng(60)
    model = MLP(3072, [16], 10)
    images = rng.standard_normal((5, 3, 32, 32))
    flat = images.reshape(5, 3072)
    y = rng.integers(10, size=5)
    ce = CrossEntropyModule()

    probs_images = model.forward(images)
    model.backward(ce.backward(probs_images, y))
    grads_images = [lin.grads["weight"].copy() for lin in model.linears]

    probs_flat = model.forward(flat)
    model.backward(ce.backward(probs_flat, y))
    assert probs_images.shape == (5, 10)
    np.testing.assert_array_equal(probs_images, probs_flat)
    for before, lin in zip(grads_images, model.linears, strict=True):
        np.testing.assert_array_equal(before, lin.grads["weight"])


def test_mlp_backward_skips_input_gradient_of_first_layer(monkeypatch):
    rng = np.random.default_rng(61)
    model = MLP(8, [6], 3)
    calls = {}

    def spy(name, layer):
        original = layer.backward

        def backward(dout, *args, **kwargs):
            result = original(dout, *args, **kwargs)
            calls[name] = (args, kwargs, result)
            return result

        monkeypatch.setattr(layer, "backward", backward)

    spy("first", model.modules[0])
    spy("last", model.modules[2])
    probs = model.forward(rng.standard_normal((4, 8)))
    model.backward(CrossEntropyModule().backward(probs, rng.integers(3, size=4)))

    args, kwargs, result = calls["first"]
    input_grad = kwargs.get("input_grad", args[0] if args else True)
    assert input_grad is False
    assert result is None
    assert np.any(model.modules[0].grads["weight"] != 0)
    # later layers do pass dL/dX on
    _, _, result = calls["last"]
    assert isinstance(result, np.ndarray) and result.shape == (4, 6)


def test_linear_backward_without_input_grad_still_fills_grads():
    rng = np.random.default_rng(62)
    x = rng.standard_normal((5, 4))
    dout = rng.standard_normal((5, 3))
    layer = LinearModule(4, 3)
    layer.forward(x)
    assert layer.backward(dout, input_grad=False) is None
    assert_close(layer.grads["weight"], dout.T @ x)
    assert_close(layer.grads["bias"], dout.sum(axis=0, keepdims=True))
    full = LinearModule(4, 3)
    full.params["weight"] = layer.params["weight"].copy()
    full.forward(x)
    assert_close(full.backward(dout), dout @ layer.params["weight"])
    assert_close(full.grads["weight"], layer.grads["weight"])

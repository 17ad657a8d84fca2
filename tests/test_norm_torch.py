"""norm_torch.LayerNormFunction and LayerNorm against autograd and nn.LayerNorm, and the PyTorch MLP's
keywords beyond 2021 (activation, layer norm, dropout, init_scale)."""

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from mlp_pytorch import MLP  # noqa: E402
from norm_torch import LayerNorm, LayerNormFunction  # noqa: E402


def float64_inputs(s=6, f=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(s, f, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_()
    weight = torch.randn(f, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(f, generator=g, dtype=torch.float64).requires_grad_()
    return x, weight, bias


def test_layer_norm_function_passes_gradcheck_in_float64():
    x, weight, bias = float64_inputs()
    assert torch.autograd.gradcheck(lambda *a: LayerNormFunction.apply(*a, 1e-5), (x, weight, bias), eps=1e-6)


def agrees_with_torch(function, s=6, f=5):
    """Forward and every gradient of function(x, weight, bias, eps) equal F.layer_norm's in float64."""
    x, weight, bias = float64_inputs(s, f)
    dout = torch.randn(s, f, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = function(x, weight, bias, 1e-5)
    grads = torch.autograd.grad(ours, (x, weight, bias), dout)
    theirs = F.layer_norm(x, (f,), weight, bias, 1e-5)
    expected = torch.autograd.grad(theirs, (x, weight, bias), dout)
    return torch.allclose(ours, theirs, atol=1e-12) and all(
        torch.allclose(a, b, atol=1e-10) for a, b in zip(grads, expected, strict=True)
    )


@pytest.mark.parametrize("s", [1, 2, 7])
def test_layer_norm_function_agrees_with_torch_for_any_batch_size(s):
    assert agrees_with_torch(LayerNormFunction.apply, s=s)


def test_layer_norm_over_the_batch_instead_of_the_features_is_caught():
    def over_the_batch(x, weight, bias, eps):  # the planted bug: batch norm's axis
        x_hat = (x - x.mean(dim=0)) / torch.sqrt(x.var(dim=0, correction=0) + eps)
        return x_hat * weight + bias

    assert not agrees_with_torch(over_the_batch)
    assert agrees_with_torch(LayerNormFunction.apply)


def test_layer_norm_module_is_a_drop_in_for_nn_layer_norm():
    ours, theirs = LayerNorm(5).double(), nn.LayerNorm(5).double()
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(ours.state_dict()[k].shape == theirs.state_dict()[k].shape for k in ours.state_dict())
    with torch.no_grad():
        theirs.weight.normal_(), theirs.bias.normal_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x))
    assert type(ours(x).grad_fn).__name__ == "LayerNormFunctionBackward"
    with pytest.raises(ValueError, match=r"LayerNorm\(5\) expects input \(S, 5\)"):
        ours(torch.zeros(4, 6, dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "types"),
    [
        ({}, [nn.Linear, nn.ReLU, nn.Linear]),
        ({"activation": "elu"}, [nn.Linear, nn.ELU, nn.Linear]),
        ({"activation": "leaky_relu"}, [nn.Linear, nn.LeakyReLU, nn.Linear]),
        ({"use_layer_norm": True}, [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear]),
        ({"use_layer_norm": True, "layer_norm": "manual"}, [nn.Linear, LayerNorm, nn.ReLU, nn.Linear]),
        ({"dropout": 0.3}, [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]),
    ],
)
def test_mlp_builds_the_layers_it_is_asked_for(kwargs, types):
    assert [type(m) for m in MLP(12, [4], 3, **kwargs).layers] == types


def test_new_keywords_leave_the_weights_of_2021():
    torch.manual_seed(3)
    plain = MLP(12, [8, 4], 3)
    torch.manual_seed(3)
    other = MLP(12, [8, 4], 3, activation="elu", use_layer_norm=True, dropout=0.5)
    for a, b in zip(plain.linears(), other.linears(), strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_elu_and_leaky_relu_mlps_compute_what_a_hand_built_sequential_does():
    x = torch.randn(5, 12)
    for kwargs, act in (({"activation": "elu", "alpha": 0.5}, nn.ELU(0.5)),
                        ({"activation": "leaky_relu", "neg_slope": 0.2}, nn.LeakyReLU(0.2))):  # fmt: skip
        model = MLP(12, [6], 3, **kwargs)
        first, last = model.linears()
        torch.testing.assert_close(model(x), last(act(first(x))))


def test_dropout_acts_in_training_mode_only():
    model = MLP(12, [64], 3, dropout=0.5)
    x = torch.randn(5, 12)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model(x), model(x))


def test_init_scale_multiplies_every_linear_weight():
    torch.manual_seed(0)
    base = MLP(300, [50, 20], 3)
    torch.manual_seed(0)
    scaled = MLP(300, [50, 20], 3, init_scale=0.1)
    for a, b in zip(base.linears(), scaled.linears(), strict=True):
        torch.testing.assert_close(b.weight, 0.1 * a.weight)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "tanh"}, "activation must be one of"),
        ({"use_batch_norm": True, "use_layer_norm": True}, "exclude each other"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"layer_norm": "numpy"}, "layer_norm must be one of"),
    ],
)
def test_bad_keywords_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(12, [4], 3, **kwargs)

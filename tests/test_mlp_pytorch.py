"""mlp_pytorch.py and norm_torch.py: the hand-written batch norm (BatchNormFunction, BatchNorm)
against autograd and nn.BatchNorm1d, and the MLP's plain nn.Linear weights as a student's own code
sees them.

Everything is small and in float64 on the CPU, so agreement is checked to near machine precision.
"""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from mlp_pytorch import MLP  # noqa: E402
from norm_torch import BatchNorm, BatchNormFunction  # noqa: E402

F64 = torch.float64


def make_pair(n_features, seed=0):
    """A BatchNorm and an nn.BatchNorm1d in float64 with the same random (not 1/0) gamma and beta."""
    torch.manual_seed(seed)
    ours, theirs = BatchNorm(n_features).double(), nn.BatchNorm1d(n_features).double()
    with torch.no_grad():
        gamma, beta = torch.randn(n_features, dtype=F64) + 1, torch.randn(n_features, dtype=F64)
        for bn in (ours, theirs):
            bn.weight.copy_(gamma)
            bn.bias.copy_(beta)
    return ours, theirs


def forward_backward(bn, x, dout):
    """Output and the gradients of <out, dout> w.r.t. the input, weight and bias."""
    x = x.clone().requires_grad_(True)
    bn.zero_grad()
    out = bn(x)
    out.backward(dout)
    return out.detach(), x.grad, bn.weight.grad.clone(), bn.bias.grad.clone()


class StudentMLP(nn.Module):
    """An MLP as a student writes it from the skeleton: nn.Linear layers in an nn.Sequential."""

    def __init__(self, n_inputs, n_hidden, n_classes, use_batch_norm=False):
        super().__init__()
        layers, width = [], n_inputs
        for n in n_hidden:
            layers += [nn.Linear(width, n), *([nn.BatchNorm1d(n)] if use_batch_norm else []), nn.ReLU()]
            width = n
        self.layers = nn.Sequential(*layers, nn.Linear(width, n_classes))

    def forward(self, x):
        return self.layers(x.flatten(1))


# ---------------------------------------------------------------- BatchNormFunction


@pytest.mark.parametrize("shape", [(2, 1), (7, 5), (16, 3)], ids=str)
def test_batch_norm_function_passes_gradcheck_in_float64(shape):
    torch.manual_seed(0)
    n_features = shape[1]
    # a non-zero mean and unequal scales per feature, so no term of the backward vanishes by symmetry
    x = (torch.randn(shape, dtype=F64) * torch.linspace(0.5, 3, n_features, dtype=F64) + 2).requires_grad_()
    weight = (torch.randn(n_features, dtype=F64) + 1).requires_grad_()
    bias = torch.randn(n_features, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, w, b: BatchNormFunction.apply(x, w, b, 1e-5), (x, weight, bias), eps=1e-6, atol=1e-8
    )


def test_batch_norm_function_uses_its_own_backward_and_matches_autograd_of_the_forward_formula():
    torch.manual_seed(1)
    x = (torch.randn(9, 4, dtype=F64) * 3 - 1).requires_grad_()
    weight = torch.randn(4, dtype=F64).requires_grad_()
    bias = torch.randn(4, dtype=F64).requires_grad_()
    dout = torch.randn(9, 4, dtype=F64)

    out = BatchNormFunction.apply(x, weight, bias, 1e-5)
    assert type(out.grad_fn).__name__ == "BatchNormFunctionBackward"  # not autograd's own graph
    ours = torch.autograd.grad(out, (x, weight, bias), dout)

    mean, var = x.mean(0), x.var(0, correction=0)  # the staged forward, differentiated by autograd
    reference = (x - mean) / torch.sqrt(var + 1e-5) * weight + bias
    expected = torch.autograd.grad(reference, (x, weight, bias), dout)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- BatchNorm against nn.BatchNorm1d


def test_batch_norm_matches_nn_batchnorm1d_in_training_then_eval_mode():
    ours, theirs = make_pair(6)
    torch.manual_seed(2)
    for step in range(5):  # several steps, so the running statistics move far from 0 / 1
        x = torch.randn(10 + step, 6, dtype=F64) * (step + 1) + 3 * step
        dout = torch.randn_like(x)
        for got, want in zip(forward_backward(ours, x, dout), forward_backward(theirs, x, dout), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours.running_mean, theirs.running_mean, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-12, atol=1e-14)
    assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item() == 5
    assert not torch.allclose(ours.running_var, torch.ones(6, dtype=F64), atol=0.5)  # the check can fail

    ours.eval()
    theirs.eval()
    x = torch.randn(4, 6, dtype=F64) * 5
    dout = torch.randn_like(x)
    for got, want in zip(forward_backward(ours, x, dout), forward_backward(theirs, x, dout), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    running = ours.running_mean.clone()
    ours(x)
    assert torch.equal(ours.running_mean, running)  # eval mode leaves the running statistics alone
    torch.testing.assert_close(ours(x[:1]), ours(x)[:1], rtol=1e-12, atol=1e-12)  # batch-independent


def test_batch_norm_running_statistics_follow_pytorchs_momentum_convention():
    bn = BatchNorm(3, momentum=0.25).double()
    x = torch.tensor([[1.0, 0.0, 2.0], [3.0, 4.0, 2.0], [5.0, 8.0, 2.0]], dtype=F64)
    bn(x)
    # new = (1 - momentum) old + momentum * batch statistic; unbiased variance (divides by S - 1 = 2)
    torch.testing.assert_close(bn.running_mean, 0.25 * torch.tensor([3.0, 4.0, 2.0], dtype=F64))
    torch.testing.assert_close(bn.running_var, 0.75 + 0.25 * torch.tensor([4.0, 16.0, 0.0], dtype=F64))


def test_batch_norm_state_dict_is_interchangeable_with_nn_batchnorm1d():
    ours, theirs = make_pair(5)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in theirs.state_dict().items():
        assert ours.state_dict()[name].shape == value.shape, name
        assert ours.state_dict()[name].dtype == value.dtype, name
    ours(torch.randn(8, 5, dtype=F64))
    fresh = nn.BatchNorm1d(5).double()
    fresh.load_state_dict(ours.state_dict())
    back = BatchNorm(5).double()
    back.load_state_dict(fresh.state_dict())
    for name, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name
    assert {n for n, _ in ours.named_parameters()} == {"weight", "bias"}
    assert {n for n, _ in ours.named_buffers()} == {"running_mean", "running_var", "num_batches_tracked"}


def test_batch_norm_rejects_inputs_it_cannot_normalise_with_one_line_errors():
    bn = BatchNorm(4)
    for x in (torch.randn(4), torch.randn(3, 5), torch.randn(3, 4, 2)):
        with pytest.raises(ValueError, match=r"expects input \(S, 4\)") as info:
            bn(x)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="at least 2 samples"):
        bn(torch.randn(1, 4))
    assert bn.eval()(torch.randn(1, 4)).shape == (1, 4)  # one sample is fine with running statistics
    for bad in ({"momentum": 1.5}, {"momentum": -0.1}, {"eps": 0.0}):
        with pytest.raises(ValueError, match="momentum|eps"):
            BatchNorm(4, **bad)


def test_batch_norm_repr_and_initial_state():
    bn = BatchNorm(7, eps=1e-3, momentum=0.2)
    assert "BatchNorm(7, eps=0.001, momentum=0.2)" in repr(bn)
    assert bn.num_features == 7 and bn.training
    assert torch.equal(bn.weight, torch.ones(7)) and torch.equal(bn.bias, torch.zeros(7))
    assert torch.equal(bn.running_mean, torch.zeros(7)) and torch.equal(bn.running_var, torch.ones(7))


# ---------------------------------------------------------------- MLP with either batch norm


def test_manual_and_torch_batch_norm_mlps_follow_the_same_losses_for_10_sgd_steps():
    torch.manual_seed(3)
    torch_bn = MLP(20, [12, 8], 4, use_batch_norm=True, batch_norm="torch").double()
    torch.manual_seed(3)
    manual_bn = MLP(20, [12, 8], 4, use_batch_norm=True, batch_norm="manual").double()
    assert [type(m) for m in manual_bn.layers] == [nn.Linear, BatchNorm, nn.ReLU] * 2 + [nn.Linear]
    manual_bn.load_state_dict(torch_bn.state_dict())  # the same weights, so both runs start equal

    torch.manual_seed(4)
    # two batches taken in turn, labelled by a fixed linear rule, so that SGD can lower the loss
    rule = torch.randn(20, 4, dtype=F64)
    batches = [torch.randn(16, 20, dtype=F64) * 2 + 1 for _ in range(2)]
    data = [(x, (x @ rule).argmax(1)) for x in batches] * 5
    losses = {}
    for name, model in (("torch", torch_bn), ("manual", manual_bn)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        losses[name] = []
        for x, y in data:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
    assert losses["manual"] == pytest.approx(losses["torch"], rel=1e-10)
    assert losses["torch"][-1] < losses["torch"][0]  # it trained, so later steps test more than the first
    for (name, got), want in zip(manual_bn.state_dict().items(), torch_bn.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name)

    x = torch.randn(5, 20, dtype=F64)
    torch.testing.assert_close(manual_bn.eval()(x), torch_bn.eval()(x), rtol=1e-10, atol=1e-12)


def test_mlp_refuses_an_unknown_batch_norm_kind():
    for bad in ("numpy", "Manual", None):
        with pytest.raises(ValueError, match="batch_norm must be one of"):
            MLP(10, [5], 3, use_batch_norm=True, batch_norm=bad)


def test_mlp_repr_names_its_batch_norm():
    assert "use_batch_norm=True, batch_norm='manual'" in repr(MLP(10, [5], 3, True, batch_norm="manual"))
    assert "use_batch_norm=False, batch_norm='torch'" in repr(MLP(10, [5], 3))


# ---------------------------------------------------------------- plain nn.Linear weights


@pytest.mark.parametrize("batch_norm", ["torch", "manual"])
def test_weights_are_plain_contiguous_nn_linear_parameters(batch_norm):
    model = MLP(12, [8, 6], 3, use_batch_norm=True, batch_norm=batch_norm)
    model(torch.randn(4, 12)).square().sum().backward()
    for lin in model.linears():
        assert type(lin) is nn.Linear
        assert lin.weight.shape == (lin.out_features, lin.in_features)
        assert lin.weight.is_contiguous() and lin.weight.stride() == (lin.in_features, 1)
        assert lin.weight.grad.is_contiguous()
        assert lin.weight.view(-1).shape == (lin.out_features * lin.in_features,)  # raises if not contiguous
    assert all(p.is_contiguous() for p in model.parameters())


def test_parameters_to_vector_and_back_round_trip():
    torch.manual_seed(5)
    model = MLP(12, [8, 6], 3, use_batch_norm=True)
    params = [p.detach().clone() for p in model.parameters()]
    vector = nn.utils.parameters_to_vector(model.parameters())
    assert vector.shape == (sum(p.numel() for p in params),)
    assert torch.equal(vector[: 8 * 12], model.layers[0].weight.reshape(-1))  # row by row, as nn.Linear

    nn.utils.vector_to_parameters(vector * 2, model.parameters())
    assert all(torch.equal(p, 2 * q) for p, q in zip(model.parameters(), params, strict=True))
    nn.utils.vector_to_parameters(vector, model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True))


@pytest.mark.parametrize("batch_norm", ["torch", "manual"])
@pytest.mark.parametrize("use_batch_norm", [False, True])
def test_state_dict_loads_into_a_students_own_nn_linear_mlp(use_batch_norm, batch_norm):
    torch.manual_seed(6)
    model = MLP(3 * 4 * 4, [10, 7], 5, use_batch_norm=use_batch_norm, batch_norm=batch_norm)
    for _ in range(3):  # running statistics away from their initial values
        model(torch.randn(8, 3, 4, 4) * 2 + 1)
    model.eval()
    student = StudentMLP(3 * 4 * 4, [10, 7], 5, use_batch_norm=use_batch_norm).eval()
    assert list(student.state_dict()) == list(model.state_dict())  # layers.0.weight, layers.0.bias, ...
    student.load_state_dict(model.state_dict())  # strict: every key, every shape
    x = torch.randn(6, 3, 4, 4)
    # nn.BatchNorm1d's fused eval kernel rounds differently from BatchNorm's plain float32 ops
    tol = (
        {"rtol": 1e-5, "atol": 1e-6} if use_batch_norm and batch_norm == "manual" else {"rtol": 0, "atol": 0}
    )
    torch.testing.assert_close(student(x), model(x), **tol)

    torch.manual_seed(7)
    other = StudentMLP(3 * 4 * 4, [10, 7], 5, use_batch_norm=use_batch_norm).eval()
    model.load_state_dict(other.state_dict())  # and the other way round
    torch.testing.assert_close(model(x), other(x), **tol)


@pytest.mark.parametrize("n_hidden", [[], [9], [9, 7, 5]], ids=str)
def test_same_seed_gives_the_same_linear_weights_with_and_without_batch_norm(n_hidden):
    weights = {}
    for kind in ("none", "torch", "manual"):
        torch.manual_seed(8)
        model = MLP(
            12, n_hidden, 3, use_batch_norm=kind != "none", batch_norm="torch" if kind == "none" else kind
        )
        weights[kind] = [(lin.weight.detach(), lin.bias.detach()) for lin in model.linears()]
    # and the same as plain nn.Linear layers built and initialised in the same order
    torch.manual_seed(8)
    sizes = [12, *n_hidden, 3]
    plain = [nn.Linear(m, n) for m, n in zip(sizes[:-1], sizes[1:], strict=True)]
    for i, lin in enumerate(plain):
        nn.init.kaiming_normal_(lin.weight, nonlinearity="linear" if i == 0 else "relu")
    weights["plain"] = [(lin.weight.detach(), torch.zeros_like(lin.bias)) for lin in plain]

    for kind in ("torch", "manual", "plain"):
        for (w, b), (w0, b0) in zip(weights[kind], weights["none"], strict=True):
            assert torch.equal(w, w0) and torch.equal(b, b0), kind
    torch.manual_seed(9)
    other = MLP(12, n_hidden, 3).linears()[0].weight
    assert not torch.equal(other, weights["none"][0][0])  # a different seed does change them

"""support/study_layers.py: the per-layer statistics, checked by hand on a small MLP; they leave the
model (mode, running statistics, gradients) and so the whole run unchanged."""

import pytest
import torch

import mlp_pytorch
import train_mlp_pytorch
from support import study_layers

BATCH = 16


def test_layer_statistics_by_hand():
    torch.manual_seed(0)
    model = mlp_pytorch.MLP(6, [5, 4], 3, use_batch_norm=True)
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    with torch.no_grad():
        model.layers[1].bias[0] = -5.0  # beta -5: unit 0's normalised input < 0 for every image, a dead ReLU
        model.layers[1].running_mean += 0.3  # not used in train mode, and left as it was
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    model.eval()
    stats = study_layers.layer_statistics(model, x, y)
    assert not model.training, "the mode was not restored"
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), f"{k} changed"
    assert all(p.grad is None for p in model.parameters()), ".grad was written"

    # the same by hand, in train mode (batch statistics), after the checks above
    model.train()
    z1 = model.layers[0](x)
    a1 = model.layers[1](z1)
    h1 = torch.relu(a1)
    z2 = model.layers[3](h1)
    a2 = model.layers[4](z2)
    logits = model.layers[6](torch.relu(a2))
    loss = torch.nn.functional.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, [m.weight for m in model.linears()])
    assert stats["loss"] == pytest.approx(loss.item(), rel=1e-6)
    layer = stats["layers"][0]
    assert layer["linear_std"] == pytest.approx(z1.std(correction=0).item(), rel=1e-5)
    assert layer["preact_mean"] == pytest.approx(a1.mean().item(), abs=1e-5)
    assert layer["preact_std"] == pytest.approx(a1.std(correction=0).item(), rel=1e-5)
    assert layer["dead_fraction"] == pytest.approx(1 / 5)  # unit 0 only
    assert layer["zero_fraction"] == pytest.approx((h1 == 0).float().mean().item())
    assert layer["zero_fraction"] > 0.2  # the dead unit and the negative half of the others
    for i, (grad, linear) in enumerate(zip(grads, model.linears(), strict=True)):
        assert stats["layers"][i]["weight_grad_norm"] == pytest.approx(grad.norm().item(), rel=1e-5)
        assert stats["layers"][i]["weight_norm"] == pytest.approx(linear.weight.norm().item(), rel=1e-6)
    assert len(stats["layers"]) == 3 and set(stats["layers"][2]) == {
        "linear_std",
        "weight_norm",
        "weight_grad_norm",
    }


def test_weights_fingerprint_follows_the_linear_weights():
    torch.manual_seed(1)
    a = mlp_pytorch.MLP(6, [5], 3)
    torch.manual_seed(1)
    b = mlp_pytorch.MLP(6, [5], 3, use_batch_norm=True)
    assert study_layers.weights_fingerprint(a) == study_layers.weights_fingerprint(b)
    with torch.no_grad():
        b.linears()[1].bias[0] += 1e-6
    assert study_layers.weights_fingerprint(a) != study_layers.weights_fingerprint(b)


def test_statistics_leave_the_run_unchanged(data_dir):
    """The epoch_callback restores batch norm's running statistics and the mode: same losses."""
    args = ([16, 8], 0.05, True, BATCH, 2, 5, data_dir)
    statistics = study_layers.LayerStatistics(data_dir, 200)
    with_stats = train_mlp_pytorch.train(*args, progress=False, log_epochs=False, epoch_callback=statistics)
    plain = train_mlp_pytorch.train(*args, progress=False, log_epochs=False)
    assert with_stats[3]["batch_loss"] == plain[3]["batch_loss"]
    assert with_stats[1] == plain[1] and with_stats[2] == plain[2]
    record = statistics.record()["layer_stats"]
    assert record["epochs"] == [0, 1, 2] and record["images"] == 200

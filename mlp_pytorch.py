"""The MLP in PyTorch, with optional batch normalization."""

import torch
from torch import nn


class MLP(nn.Module):
    """Per hidden size Linear -> [BatchNorm1d] -> ReLU, then a final Linear giving logits.

    Args:
        n_inputs: features per sample (3072 for CIFAR-10).
        n_hidden: list of hidden sizes; [] gives multinomial logistic regression.
        n_classes: number of classes C.
        use_batch_norm: put a BatchNorm1d between each hidden Linear and its ReLU.

    Weights are Kaiming normal with the NumPy LinearModule's variances: 1/fan_in
    for the first layer (its inputs are normalized pixels, not ReLU outputs),
    2/fan_in for the others. Biases are zero. Weights are stored column-major, for
    speed (``_column_major``); their shapes and values are those of nn.Linear, but
    ``weight.view(-1)`` (and so ``nn.utils.parameters_to_vector``) needs
    ``.contiguous()`` first.

    Shape:
        x (S, n_inputs) or (S, 3, 32, 32) -> logits (S, C). No softmax: use
        nn.CrossEntropyLoss, which applies log-softmax itself.
    """

    def __init__(self, n_inputs, n_hidden, n_classes, use_batch_norm=False):
        super().__init__()
        self.use_batch_norm = use_batch_norm
        sizes = [n_inputs, *n_hidden]
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers.append(nn.Linear(fan_in, fan_out))
            if use_batch_norm:
                layers.append(nn.BatchNorm1d(fan_out))
            layers.append(nn.ReLU())
        layers.append(nn.Linear(sizes[-1], n_classes))
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()
        for linear in self.linears():
            _column_major(linear)  # after the init, so a seed gives the same weights as plain nn.Linear

    def linears(self):
        """The nn.Linear layers, first to last."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def reset_parameters(self):
        for i, linear in enumerate(self.linears()):
            # 'linear' gain gives variance 1/fan_in, 'relu' gives 2/fan_in
            nn.init.kaiming_normal_(linear.weight, nonlinearity="linear" if i == 0 else "relu")
            nn.init.zeros_(linear.bias)

    def forward(self, x):
        return self.layers(x.reshape(len(x), -1))

    @property
    def device(self):
        return next(self.parameters()).device

    def extra_repr(self):
        return f"use_batch_norm={self.use_batch_norm}"


def _column_major(linear):
    """Store the (out, in) weight column-major, i.e. as the row-major (in, out) matrix W^T.

    x W^T then reads W^T row by row, and autograd computes the weight gradient as
    x^T dout, laid out like the weight, instead of dout^T x: on a 2-core CPU the first
    layer's backward product is about 40% faster that way, a whole [128] epoch about 14%.
    Values, shapes and state_dict keys are unchanged.
    """
    linear.weight = nn.Parameter(linear.weight.detach().t().contiguous().t())
    return linear


def select_device(name="auto"):
    """'auto': CUDA when available, else the CPU. 'cuda' where there is none is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(name)

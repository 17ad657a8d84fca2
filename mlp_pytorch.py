"""The MLP in PyTorch: Linear -> [batch or layer norm] -> activation -> [dropout] per hidden layer,
then a final Linear giving logits. Its weights are ordinary nn.Linear parameters, so its state_dict
loads into any MLP built with nn.Linear in the same layer order. The hand-written normalizations
it can use instead of torch's are in norm_torch.py.
"""

import torch
from torch import nn

import norm_torch

BATCH_NORM_KINDS = ("torch", "manual")
ACTIVATIONS = ("relu", "elu", "leaky_relu")


class MLP(nn.Module):
    """Per hidden size Linear -> [norm] -> activation -> [dropout], then a final Linear.

    Args:
        n_inputs: features per sample (3072 for CIFAR-10).
        n_hidden: list of hidden sizes; [] gives multinomial logistic regression.
        n_classes: number of classes C.
        use_batch_norm: batch norm between each hidden Linear and its activation.
        batch_norm, layer_norm: "torch" (nn.BatchNorm1d, nn.LayerNorm) or "manual" (norm_torch's
            hand-written backward passes): the same parameters, state_dict keys and function.
        activation: "relu" (2021), "elu" (nn.ELU(alpha)) or "leaky_relu" (nn.LeakyReLU(neg_slope)).
        use_layer_norm: layer norm where batch norm would go (not both).
        dropout: p of nn.Dropout after each hidden activation (0: none).
        init_scale: every Linear's initial std as a multiple of Kaiming's (a weight-scale study).

    Layers are kept in ``self.layers``, an nn.Sequential, so the state_dict keys are
    ``layers.0.weight``, ``layers.0.bias``, ... in layer order. Weights are Kaiming normal with the
    NumPy LinearModule's variances, 1/fan_in for the first layer (its inputs are normalized pixels)
    and 2/fan_in for the others, whatever the activation: runs that differ only in activation or
    normalization start from the same weights (the norm layers draw no random numbers), a pair.

    Shape:
        x (S, n_inputs) or (S, 3, 32, 32) -> logits (S, C); no softmax (nn.CrossEntropyLoss has it).
    """

    def __init__(self, n_inputs, n_hidden, n_classes, use_batch_norm=False, batch_norm="torch", *,
                 activation="relu", alpha=1.0, neg_slope=0.01, use_layer_norm=False, layer_norm="torch",
                 dropout=0.0, init_scale=1.0):  # fmt: skip
        super().__init__()
        for name, kind in (("batch_norm", batch_norm), ("layer_norm", layer_norm)):
            if kind not in BATCH_NORM_KINDS:
                raise ValueError(f"{name} must be one of {BATCH_NORM_KINDS}, got {kind!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if use_batch_norm and use_layer_norm:
            raise ValueError("batch norm and layer norm exclude each other: choose one")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.use_batch_norm, self.batch_norm, self.use_layer_norm = use_batch_norm, batch_norm, use_layer_norm
        self.activation, self.init_scale = activation, init_scale
        norm = None
        if use_batch_norm:
            norm = nn.BatchNorm1d if batch_norm == "torch" else norm_torch.BatchNorm
        elif use_layer_norm:
            norm = nn.LayerNorm if layer_norm == "torch" else norm_torch.LayerNorm
        act = {"relu": nn.ReLU, "elu": lambda: nn.ELU(alpha), "leaky_relu": lambda: nn.LeakyReLU(neg_slope)}
        sizes = [n_inputs, *n_hidden]
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers.append(nn.Linear(fan_in, fan_out))
            layers += [norm(fan_out)] if norm else []
            layers.append(act[activation]())
            layers += [nn.Dropout(dropout)] if dropout else []
        layers.append(nn.Linear(sizes[-1], n_classes))
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def linears(self):
        """The nn.Linear layers, first to last."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def reset_parameters(self):
        """Kaiming normal weights (1/fan_in first layer, 2/fan_in others) times init_scale, zero
        biases. Draws from torch's global generator in layer order, Linear layers only."""
        for i, linear in enumerate(self.linears()):
            # 'linear' gain gives variance 1/fan_in, 'relu' gives 2/fan_in
            nn.init.kaiming_normal_(linear.weight, nonlinearity="linear" if i == 0 else "relu")
            if self.init_scale != 1.0:  # only then: 2021's weights stay bit for bit
                with torch.no_grad():
                    linear.weight.mul_(self.init_scale)
            nn.init.zeros_(linear.bias)

    def forward(self, x):
        """Logits for a batch; images are flattened to (S, n_inputs) first."""
        return self.layers(x.reshape(len(x), -1))

    @property
    def device(self):
        """The device of the parameters."""
        return next(self.parameters()).device

    def extra_repr(self):
        return f"use_batch_norm={self.use_batch_norm}, batch_norm={self.batch_norm!r}"

"""Update rules for the NumPy modules: SGD (with momentum, Nesterov), RMSprop and Adam.

Each rule takes ``model.layers`` (any iterable of modules; those without ``params`` are
skipped) and, at every ``step()``, reads each ``layer.grads[name]`` afresh (backward puts new
arrays there) and updates ``layer.params[name]`` in place. The arithmetic is that of the
``torch.optim`` class of the same name and arguments, operation for operation; torch's CPU
kernels fuse a multiply and an add (``a + c·b`` rounded once), NumPy rounds twice, so the two
agree to a few units in the last place per step rather than bit for bit.

    optimizer = optim.Adam(model.layers, lr=1e-3)
    for x, y in batches:
        model.backward(loss.backward(model.forward(x), y))
        optimizer.step()

Weight decay is torch's (and the 2021 course's) L2 penalty: λθ is added to the gradient
before the rule sees it, so for Adam it is divided by sqrt(v̂) like the rest (not AdamW).
Every state array has its parameter's dtype, so float32 training stays float32.

CS231n's optim.py writes the same rules differently, with the same results in exact arithmetic:
- momentum: v = μv − lr·dx; x += v. Torch keeps b = μb + g and steps x −= lr·b; with a
  constant lr, v = −lr·b at every step, so the iterates agree (to rounding: the products are
  formed in another order). They part when lr changes during training: torch's buffer
  holds gradients, CS231n's holds steps taken with past learning rates. CS231n has no
  dampening, no Nesterov in sgd_momentum and no weight decay (it is in the loss).
- RMSProp: x −= lr·dx / (sqrt(cache) + ε), ε after the square root, as torch's RMSprop
  (defaults too: decay 0.99, ε 1e-8, lr 1e-2).
- Adam: t is incremented before it is used, so the first step divides by 1 − β₁¹ as here;
  x −= lr·m̂ / (sqrt(v̂) + ε), with ε added to the bias-corrected sqrt(v̂), as torch's
  sqrt(v) / sqrt(1 − β₂ᵗ) + ε. (Versions that add ε to sqrt(v) before correcting, or that
  count t from 0 after the update, take other steps early in training.)
"""

import math

import numpy as np


class Optimizer:
    """The interface: step() hands every (parameter, gradient, state) to the rule's update().

    Args:
        layers: modules; the (layer, name) of every entry of their ``params`` is kept, in order.
        lr: the learning rate γ, >= 0.
        weight_decay: λ >= 0; the gradient the rule sees is g + λθ.

    Attributes:
        state: one dict per parameter, filled by the rule at its first update.
    """

    def __init__(self, layers, lr, weight_decay=0.0):
        _require(lr >= 0, f"Invalid learning rate: {lr}")
        _require(weight_decay >= 0, f"Invalid weight_decay value: {weight_decay}")
        self.lr, self.weight_decay = lr, weight_decay
        self.slots = [(layer, name) for layer in layers if hasattr(layer, "params") for name in layer.params]
        _require(self.slots, "optimizer got an empty parameter list (no layer has params)")
        self.state = [{} for _ in self.slots]

    def step(self):
        """One update of every parameter, in place, from the gradients the last backward left."""
        for (layer, name), state in zip(self.slots, self.state, strict=True):
            param, grad = layer.params[name], layer.grads[name]
            if self.weight_decay != 0:  # skipped at 0, so that plain SGD is exactly p -= lr * g
                grad = grad + self.weight_decay * param
            self.update(param, grad, state)

    def update(self, param, grad, state):
        """The rule: change param in place from grad (λθ included) and this parameter's state."""
        raise NotImplementedError

    def __repr__(self):
        settings = ", ".join(
            f"{key}={value}" for key, value in vars(self).items() if key not in ("slots", "state")
        )
        return f"{type(self).__name__}({settings})"


class SGD(Optimizer):
    """θ ← θ − γ g; with momentum μ: b ← μ b + (1 − τ) g (b = g at the first step), then
    θ ← θ − γ b, or θ ← θ − γ (g + μ b) with nesterov.

    With the defaults this is the 2021 trainer's update p -= lr * g, bit for bit.
    """

    def __init__(self, layers, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        _require(momentum >= 0, f"Invalid momentum value: {momentum}")
        _require(not nesterov or (momentum > 0 and dampening == 0),
                 "Nesterov momentum requires a momentum and zero dampening")  # fmt: skip
        super().__init__(layers, lr, weight_decay)
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov

    def update(self, param, grad, state):
        if self.momentum != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.copy()  # torch's first buffer: the gradient itself
            else:
                buf = state["momentum_buffer"]
                buf *= self.momentum
                buf += (1 - self.dampening) * grad
            buf = state["momentum_buffer"]
            grad = grad + self.momentum * buf if self.nesterov else buf
        param -= self.lr * grad


class RMSprop(Optimizer):
    """v ← α v + (1 − α) g², θ ← θ − γ g / (sqrt(v) + ε), ε after the square root (v starts at 0).

    With momentum μ > 0: b ← μ b + g / (sqrt(v) + ε) (b starts at 0), θ ← θ − γ b.
    """

    def __init__(self, layers, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0):
        _require(eps >= 0, f"Invalid epsilon value: {eps}")
        _require(momentum >= 0, f"Invalid momentum value: {momentum}")
        _require(alpha >= 0, f"Invalid alpha value: {alpha}")
        super().__init__(layers, lr, weight_decay)
        self.alpha, self.eps, self.momentum = alpha, eps, momentum

    def update(self, param, grad, state):
        if not state:
            state["square_avg"] = np.zeros_like(param)
            if self.momentum > 0:
                state["momentum_buffer"] = np.zeros_like(param)
        square_avg = state["square_avg"]
        square_avg *= self.alpha
        square_avg += (1 - self.alpha) * grad * grad
        avg = np.sqrt(square_avg) + self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += grad / avg
            param -= self.lr * buf
        else:
            param -= self.lr * grad / avg


class Adam(Optimizer):
    """m ← β₁ m + (1 − β₁) g, v ← β₂ v + (1 − β₂) g² (both start at 0), t counting from 1,
    θ ← θ − γ/(1 − β₁ᵗ) · m / (sqrt(v) / sqrt(1 − β₂ᵗ) + ε): the bias-corrected m̂ / (sqrt(v̂) + ε).
    """

    def __init__(self, layers, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        _require(eps >= 0, f"Invalid epsilon value: {eps}")
        for i, beta in enumerate(betas):
            _require(0 <= beta < 1, f"Invalid beta parameter at index {i}: {beta}")
        super().__init__(layers, lr, weight_decay)
        self.betas, self.eps = tuple(betas), eps

    def update(self, param, grad, state):
        beta1, beta2 = self.betas
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
        state["step"] += 1
        t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (grad - exp_avg)  # = β₁ m + (1 − β₁) g, torch's lerp
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        step_size = self.lr / (1 - beta1**t)
        denom = np.sqrt(exp_avg_sq) / math.sqrt(1 - beta2**t) + self.eps
        param -= step_size * exp_avg / denom


def _require(condition, message):
    """A one-line ValueError for a setting torch.optim refuses too (NaN fails every check)."""
    if not condition:
        raise ValueError(message)

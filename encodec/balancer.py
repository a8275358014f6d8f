"""The loss balancer of EnCodec (paper section 3.4, "Balancer"; audiocraft `losses/balancer.py`).

The codec's losses (time L1, multi-scale mel, adversarial, feature matching) have unrelated scales, so a
fixed weighted sum gives weights that mean little. All of them depend on the model only through its
output y (the decoded audio), so the balancer works on their gradients with respect to y:

    g_i = d l_i / d y,    G = sum_i (w_i / sum_j w_j) * total_norm / (eps + avg ||g_i||) * g_i,

then back-propagates G into the model with `y.backward(G)`. Each loss then contributes the fraction
w_i / sum_j w_j of the gradient norm, whatever its own scale. avg ||g_i|| is an exponential moving average
over training steps; with `per_batch_item` the norm is taken per batch item and averaged over the batch.

Worked example (the original self-test): y = 0, l_1 = |y - 1|, l_2 = 100 |y + 1|, weights 1 and 1.
Plain weighted sum: G = -1 + 100 = 99. Balanced: G = 0.5 * (-1 / 1) + 0.5 * (100 / 100) = 0.

Deviation: audiocraft averages the norms across distributed workers (flashy); this class is
single-process, model-code-only. A multi-GPU trainer that needs identical scales on every worker must
all-reduce them itself.
"""

import torch
from torch import autograd


class Balancer:
    """Combine the gradients of several losses of one tensor y into one backward pass.

    Args:
        weights: loss name -> weight w_i (> 0 in total). Only losses passed to `backward` count.
        balance_grads: rescale each gradient as described above; False gives G = sum_i w_i g_i.
        total_norm: the norm the rescaled gradients aim at, all losses together.
        ema_decay: decay of the moving average of the gradient norms.
        per_batch_item: norm of each batch item's gradient, averaged over the batch, instead of the norm
            of the whole gradient.
        epsilon: stabiliser of the division by the norm.
    """

    def __init__(self, weights: dict[str, float], balance_grads: bool = True, total_norm: float = 1.0,
                 ema_decay: float = 0.999, per_batch_item: bool = True, epsilon: float = 1e-12):
        self.weights = dict(weights)
        self.balance_grads = balance_grads
        self.total_norm = total_norm
        self.ema_decay = ema_decay
        self.per_batch_item = per_batch_item
        self.epsilon = epsilon
        self._norm_sum: dict[str, float] = {}  # decayed sum of the observed norms
        self._weight_sum: dict[str, float] = {}  # decayed count, the EMA's bias correction

    def _average_norm(self, name: str, norm: float) -> float:
        """Bias-corrected EMA of one loss's gradient norm (equals `norm` on the first call)."""
        beta = self.ema_decay
        self._norm_sum[name] = beta * self._norm_sum.get(name, 0.0) + norm
        self._weight_sum[name] = beta * self._weight_sum.get(name, 0.0) + 1.0
        return self._norm_sum[name] / self._weight_sum[name]

    def _grad_norm(self, grad: torch.Tensor) -> float:
        """Norm of dl/dy [B, ...]: per batch item then averaged, or global."""
        if self.per_batch_item:
            return grad.reshape(grad.shape[0], -1).norm(dim=1).mean().item()
        return grad.norm().item()

    def backward(self, losses: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """Back-propagate the balanced gradient of `losses` through `y`.

        Args:
            losses: name -> scalar loss, each a function of y (names must be in `weights`).
            y: [B, ...] the model output the losses share, e.g. decoded audio [B, C, N].
        Returns:
            the effective loss sum_i scale_i * l_i (detached), for logging; scale_i multiplies g_i in G.
        """
        total_weight = sum(self.weights[name] for name in losses)
        if total_weight <= 0:
            raise ValueError("the weights of the given losses must sum to a positive number")
        out_grad = torch.zeros_like(y)
        effective_loss = y.new_zeros(())
        for name, loss in losses.items():
            (grad,) = autograd.grad(loss, [y], retain_graph=True)  # [B, ...], dl_i/dy
            avg_norm = self._average_norm(name, self._grad_norm(grad))
            if self.balance_grads:
                scale = self.weights[name] / total_weight * self.total_norm / (self.epsilon + avg_norm)
            else:
                scale = self.weights[name]
            out_grad.add_(grad, alpha=scale)
            effective_loss = effective_loss + scale * loss.detach()
        y.backward(out_grad)
        return effective_loss

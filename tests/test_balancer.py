import pytest
import torch
import torch.nn.functional as F

from encodec.balancer import Balancer


def _encodec_self_test_losses(x: torch.Tensor) -> dict[str, torch.Tensor]:
    one = torch.ones_like(x)
    return {"1": F.l1_loss(x, one), "2": 100 * F.l1_loss(x, -one)}  # gradients -1 and +100 at x = 0


def test_unbalanced_gradient_is_the_weighted_sum():
    x = torch.zeros(1, requires_grad=True)
    Balancer({"1": 1, "2": 1}, balance_grads=False).backward(_encodec_self_test_losses(x), x)
    assert x.grad.item() == pytest.approx(99.0)


def test_balanced_gradient_cancels():
    x = torch.zeros(1, requires_grad=True)
    Balancer({"1": 1, "2": 1}).backward(_encodec_self_test_losses(x), x)
    assert x.grad.item() == pytest.approx(0.0, abs=1e-6)


def test_balanced_gradient_follows_the_weights_and_flows_into_the_model():
    torch.manual_seed(0)
    w = torch.randn(2, 3, requires_grad=True)  # the "model": y = 2 w
    y = 2 * w
    a, b = torch.randn(2, 3), 50 * torch.randn(2, 3)
    losses = {"a": (y * a).sum(), "b": (y * b).sum()}  # dl/dy = a and b
    effective = Balancer({"a": 3, "b": 1}).backward(losses, y)
    norm_a = a.norm(dim=1).mean()  # per batch item, averaged over the batch
    norm_b = b.norm(dim=1).mean()
    expected_grad_y = 0.75 * a / norm_a + 0.25 * b / norm_b
    torch.testing.assert_close(w.grad, 2 * expected_grad_y)
    expected_loss = 0.75 / norm_a * losses["a"] + 0.25 / norm_b * losses["b"]
    assert effective.item() == pytest.approx(expected_loss.item(), rel=1e-5)
    assert not effective.requires_grad


def test_unbalanced_effective_loss_and_global_norm_option():
    y = torch.ones(2, 3, requires_grad=True)
    losses = {"a": y.sum(), "b": (y**2).sum()}
    effective = Balancer({"a": 2, "b": 3}, balance_grads=False, per_batch_item=False).backward(losses, y)
    torch.testing.assert_close(y.grad, torch.full((2, 3), 2 * 1.0 + 3 * 2.0))
    assert effective.item() == pytest.approx(2 * 6 + 3 * 6)


def test_norm_average_is_a_bias_corrected_ema():
    balancer = Balancer({"a": 1}, ema_decay=0.5, per_batch_item=False)
    for scale in (1.0, 4.0):
        y = torch.zeros(4, requires_grad=True)
        balancer.backward({"a": scale * y.sum()}, y)  # gradient norm 2 * scale
    # EMA of norms 2 and 8 with decay 0.5: (0.5 * 2 + 8) / (0.5 + 1) = 6; the gradient is 4 / 6 per entry.
    torch.testing.assert_close(y.grad, torch.full((4,), 4.0 / 6.0))

"""The LM training objective over the delay pattern."""

import math

import torch

from lm.config import LMConfig
from lm.losses import delayed_cross_entropy, teacher_forcing_inputs
from lm.model import MusicGenLM

DELAYS = (0, 1, 2, 3)


def test_inputs_are_the_first_t_plus_one_pattern_steps():
    codes = torch.arange(8).view(1, 2, 4)  # K = 2, T = 4
    seq = teacher_forcing_inputs(codes, (0, 1), special_token=99)
    assert seq.tolist() == [[[99, 0, 1, 2, 3], [99, 99, 4, 5, 6]]]


def test_uniform_logits_give_log_v_and_masked_positions_do_not_count():
    codes = torch.randint(0, 16, (2, 4, 6))
    logits = torch.zeros(2, 4, 7, 16)
    out = delayed_cross_entropy(logits, codes, DELAYS)
    assert math.isclose(out.loss.item(), math.log(16), rel_tol=1e-6)
    # garbage at positions whose target does not exist (the last delays[k] frames of codebook k) changes nothing
    logits[:, 3, -1] = 1e4
    logits[:, 1, -1] = float("nan")
    assert math.isclose(delayed_cross_entropy(logits, codes, DELAYS).loss.item(), math.log(16), rel_tol=1e-6)


def test_perfect_logits_give_zero_loss_and_full_accuracy():
    codes = torch.randint(0, 16, (2, 4, 6))
    logits = torch.full((2, 4, 7, 16), -1e4)
    for k, d in enumerate(DELAYS):  # the logit at step t + d predicts frame t of codebook k
        for t in range(6):
            if t + d < 7:
                logits[:, k, t + d].scatter_(-1, codes[:, k, t, None], 1e4)
    out = delayed_cross_entropy(logits, codes, DELAYS)
    assert out.loss.item() < 1e-6
    assert out.accuracy.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_training_steps_make_the_loss_fall():
    torch.manual_seed(0)
    config = LMConfig(dim=32, num_layers=2, num_heads=4, ffn_dim=64, num_codebooks=4, card=16, cond_dim=None)
    lm = MusicGenLM(config)
    codes = torch.randint(0, 16, (4, 4, 12))
    cond = torch.randn(4, 3, 32)
    optimizer = torch.optim.Adam(lm.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        logits = lm(teacher_forcing_inputs(codes, DELAYS, config.special_token), cond)
        loss = delayed_cross_entropy(logits, codes, DELAYS).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

"""Delay pattern: known layout, build/revert round trips, logits alignment."""

import pytest
import torch

from lm.config import stereo_delays
from lm.patterns import (
    build_delay_pattern,
    delay_pattern_mask,
    num_pattern_steps,
    revert_delay_logits,
    revert_delay_pattern,
)

SPECIAL = 2048
DELAY_SETS = [(0,), (0, 1, 2, 3), stereo_delays(8)]


def test_worked_example_of_the_docstring():
    codes = torch.tensor([[[10, 11, 12], [20, 21, 22], [30, 31, 32], [40, 41, 42]]])  # [1, 4, 3]
    _ = SPECIAL  # `_` marks the special token, as in the lm.patterns docstring
    expected = torch.tensor(
        [
            [
                [_, 10, 11, 12, _, _, _],
                [_, _, 20, 21, 22, _, _],
                [_, _, _, 30, 31, 32, _],
                [_, _, _, _, 40, 41, 42],
            ]
        ]
    )
    assert torch.equal(build_delay_pattern(codes, (0, 1, 2, 3), SPECIAL), expected)
    assert torch.equal(delay_pattern_mask(3, (0, 1, 2, 3)), expected[0] != SPECIAL)


def test_stereo_pattern_delays_pairs_together():
    codes = torch.arange(8)[None, :, None].repeat(1, 1, 2)  # [1, 8, 2], codebook k holds value k
    seq = build_delay_pattern(codes, stereo_delays(8), SPECIAL)  # [1, 8, 6]
    assert seq.shape == (1, 8, 2 + 3 + 1)
    for k in range(8):
        first = 1 + k // 2
        assert (seq[0, k, :first] == SPECIAL).all()
        assert (seq[0, k, first : first + 2] == k).all()
        assert (seq[0, k, first + 2 :] == SPECIAL).all()


@pytest.mark.parametrize("delays", DELAY_SETS)
@pytest.mark.parametrize("T", [0, 1, 5, 16])
def test_build_revert_round_trip(delays, T):
    K = len(delays)
    codes = torch.randint(0, SPECIAL, (2, K, T))
    seq = build_delay_pattern(codes, delays, SPECIAL)
    S = T + max(delays) + 1
    assert seq.shape == (2, K, S) and num_pattern_steps(T, delays) == S
    assert (seq[:, :, 0] == SPECIAL).all()  # step 0 is all special
    mask = delay_pattern_mask(T, delays)
    assert (seq[:, ~mask] == SPECIAL).all()
    assert int(mask.sum()) == K * T  # every code appears exactly once
    assert torch.equal(revert_delay_pattern(seq, delays), codes)


def test_build_keeps_unknown_markers():
    """Generation builds the pattern from codes holding -1 for "not generated yet"."""
    codes = torch.full((1, 4, 3), -1)
    seq = build_delay_pattern(codes, (0, 1, 2, 3), SPECIAL)
    mask = delay_pattern_mask(3, (0, 1, 2, 3))
    assert (seq[0][mask] == -1).all() and (seq[0][~mask] == SPECIAL).all()


def test_wrong_number_of_delays_raises():
    with pytest.raises(ValueError):
        build_delay_pattern(torch.zeros(1, 4, 3, dtype=torch.long), (0, 1, 2), SPECIAL)


@pytest.mark.parametrize("delays", DELAY_SETS)
def test_revert_logits_aligns_each_frame_with_its_predicting_step(delays):
    K, T, V = len(delays), 5, 3
    S = num_pattern_steps(T, delays)
    step_ids = torch.arange(S, dtype=torch.float32)[None, None, :, None].expand(2, K, S, V)  # logit = its step
    out, mask = revert_delay_logits(step_ids, delays)
    assert out.shape == (2, K, T, V) and mask.shape == (K, T) and mask.all()
    for k, d in enumerate(delays):
        assert torch.equal(out[0, k, :, 0], torch.arange(T, dtype=torch.float32) + d)


def test_revert_logits_of_training_steps_masks_the_delayed_tail():
    """Training feeds S = T + 1 steps; the last delays[k] frames of codebook k have no target."""
    delays, T, V = (0, 1, 2, 3), 6, 4
    logits = torch.randn(1, 4, T + 1, V)
    out, mask = revert_delay_logits(logits, delays, num_frames=T)
    for k, d in enumerate(delays):
        assert mask[k].sum() == T - d and not mask[k, T - d :].any()
        assert torch.isnan(out[0, k, T - d :]).all()
        assert torch.equal(out[0, k, : T - d], logits[0, k, d:T])


def test_pattern_logits_predict_the_reverted_codes():
    """The target of the logits at frame (k, t) is codes[k, t]: step t + d_k predicts step t + d_k + 1."""
    delays, T = (0, 1, 2, 3), 4
    codes = torch.randint(0, 8, (1, 4, T))
    seq = build_delay_pattern(codes, delays, SPECIAL)  # [1, 4, S]
    targets = seq[:, :, 1:]  # what each step's logits must predict, [1, 4, S - 1]
    one_hot = torch.nn.functional.one_hot(targets, SPECIAL + 1).float()  # "perfect" logits
    logits = torch.cat([one_hot, torch.zeros(1, 4, 1, SPECIAL + 1)], dim=2)  # [1, 4, S, V]
    out, mask = revert_delay_logits(logits, delays)
    assert mask.all() and torch.equal(out.argmax(-1), codes)

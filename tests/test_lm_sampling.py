"""Sampling: CFG mix, top-k ties, top-p nucleus, greedy, seeded reproducibility."""

import pytest
import torch

from lm.sampling import (
    SamplingParams,
    classifier_free_guidance,
    sample_next_token,
    sample_top_p,
    top_k_filter,
    top_p_filter,
)


def test_cfg_mix_value():
    cond = torch.tensor([[2.0, -1.0]])
    uncond = torch.tensor([[1.0, 1.0]])
    doubled = torch.cat([cond, uncond])  # [2B, V], conditional half first
    torch.testing.assert_close(classifier_free_guidance(doubled, 3.0), torch.tensor([[4.0, -5.0]]))
    torch.testing.assert_close(classifier_free_guidance(doubled, 1.0), cond)


def test_top_k_keeps_ties_at_the_boundary():
    probs = torch.tensor([0.3, 0.2, 0.2, 0.2, 0.1])
    kept = top_k_filter(probs, k=2)  # the 2nd largest is 0.2, and all three 0.2 stay
    torch.testing.assert_close(kept, torch.tensor([0.3, 0.2, 0.2, 0.2, 0.0]) / 0.9)


def test_top_p_masks_outside_the_nucleus_in_original_order():
    probs = torch.tensor([0.05, 0.3, 0.5, 0.15])  # sorted: 0.5, 0.3, 0.15, 0.05; mass before: 0, .5, .8, .95
    torch.testing.assert_close(top_p_filter(probs, 0.6), torch.tensor([0.0, 0.375, 0.625, 0.0]))
    torch.testing.assert_close(top_p_filter(probs, 0.4), torch.tensor([0.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(top_p_filter(probs, 0.9), torch.tensor([0.0, 0.3, 0.5, 0.15]) / 0.95)


def test_top_p_sampling_only_draws_from_the_nucleus():
    probs = torch.tensor([0.05, 0.3, 0.5, 0.15]).expand(500, 4)
    tokens = sample_top_p(probs, 0.6, torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == {1, 2}


def test_top_k_sampling_only_draws_from_the_top_k():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0]).expand(2, 4, 100, 5)  # [B, K, draws, V]
    tokens = sample_next_token(logits, SamplingParams(top_k=2), torch.Generator().manual_seed(0))
    assert tokens.shape == (2, 4, 100)
    assert set(tokens.unique().tolist()) == {0, 1}


def test_greedy_is_argmax():
    logits = torch.randn(3, 4, 50)
    assert torch.equal(sample_next_token(logits, SamplingParams(use_sampling=False)), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, SamplingParams(temperature=0.0)), logits.argmax(-1))


def test_seed_reproduces_a_run():
    logits = torch.zeros(2, 4, 2048)  # uniform: every draw depends on the random stream

    def draw(seed: int) -> torch.Tensor:
        return sample_next_token(logits, SamplingParams(), generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


def test_temperature_sharpens():
    logits = torch.tensor([1.0, 0.0]).expand(4000, 2)
    cold = sample_next_token(logits, SamplingParams(temperature=0.25, top_k=0), torch.Generator().manual_seed(0))
    warm = sample_next_token(logits, SamplingParams(temperature=4.0, top_k=0), torch.Generator().manual_seed(0))
    assert (cold == 0).float().mean() > 0.95  # p = 0.982
    assert 0.5 < (warm == 0).float().mean() < 0.62  # p = 0.562


@pytest.mark.parametrize("field, value", [("top_k", -1), ("top_p", 1.5), ("top_p", -0.1), ("temperature", -1.0),
                                          ("temperature", float("nan")), ("cfg_coef", float("inf"))])
def test_sampling_params_refuse_impossible_values(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})

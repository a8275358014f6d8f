"""LM invariants: positions, KV-cache decoding equals a full forward, causality through gradients."""

import pytest
import torch

from lm.config import LMConfig, stereo_delays
from lm.model import MusicGenLM
from lm.transformer import sinusoidal_embedding

TINY = LMConfig(dim=32, num_layers=2, num_heads=4, ffn_dim=64, num_codebooks=4, card=16, cond_dim=24)
TINY_STEREO = LMConfig(
    dim=32, num_layers=2, num_heads=4, ffn_dim=64, num_codebooks=8, card=16, delays=stereo_delays(8), cond_dim=24
)


def _model_and_inputs(config: LMConfig, B: int = 2, S: int = 9, L: int = 5):
    torch.manual_seed(0)
    lm = MusicGenLM(config).eval()
    codes = torch.randint(0, config.card + 1, (B, config.num_codebooks, S))
    cond = lm.project_condition(torch.randn(B, L, config.cond_dim)).detach()
    return lm, codes, cond


def test_sinusoidal_embedding_known_values():
    emb = sinusoidal_embedding(torch.tensor([0, 1]), dim=4, max_period=10_000.0)
    # half = 2, divisor half - 1 = 1: periods 1 and 10000; cos first, then sin
    one = torch.tensor(1.0)
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0], [one.cos(), 1.0, one.sin(), 1e-4]])
    torch.testing.assert_close(emb, expected, atol=1e-7, rtol=0)


def test_sinusoidal_embedding_matches_transformers_table():
    from transformers.models.musicgen.modeling_musicgen import MusicgenSinusoidalPositionalEmbedding

    table = MusicgenSinusoidalPositionalEmbedding.get_embedding(64, 32)
    torch.testing.assert_close(sinusoidal_embedding(torch.arange(64), 32), table, atol=1e-5, rtol=0)


def test_forward_shape():
    lm, codes, cond = _model_and_inputs(TINY)
    assert lm(codes, cond).shape == (2, 4, 9, 16)


@pytest.mark.parametrize("config", [TINY, TINY_STEREO])
def test_kv_cache_step_by_step_equals_full_forward(config):
    lm, codes, cond = _model_and_inputs(config)
    B, K, S = codes.shape
    with torch.no_grad():
        full = lm(codes, cond)  # [B, K, S, V]
        cache = lm.new_cache(max_steps=S)
        steps = [lm(codes[:, :, :1], cond, cache=cache)]  # cross-attention K/V computed here
        steps += [lm(codes[:, :, s : s + 1], None, cache=cache) for s in range(1, S)]  # and reused
    assert cache.offset == S
    torch.testing.assert_close(torch.cat(steps, dim=2), full, atol=1e-5, rtol=0)


def test_kv_cache_with_multi_step_chunks_equals_full_forward():
    """A prompt chunk first, single steps, then a chunk on top of a non-empty cache (offset causal mask)."""
    lm, codes, cond = _model_and_inputs(TINY, S=12)
    with torch.no_grad():
        full = lm(codes, cond)
        cache = lm.new_cache(max_steps=12)
        chunks = [(0, 5), (5, 6), (6, 7), (7, 12)]
        out = torch.cat([lm(codes[:, :, a:b], cond, cache=cache) for a, b in chunks], dim=2)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=0)


def test_kv_cache_overflow_raises():
    lm, codes, cond = _model_and_inputs(TINY, S=4)
    cache = lm.new_cache(max_steps=3)
    with torch.no_grad(), pytest.raises(ValueError, match="KV cache"):
        lm(codes, cond, cache=cache)


def test_causality_through_gradients():
    """d out[t] / d x[t'] is exactly 0 for every t' > t, and not 0 for t' <= t."""
    lm, _, cond = _model_and_inputs(TINY)
    S, t = 8, 3
    x = torch.randn(1, S, TINY.dim, requires_grad=True)
    out = lm.transformer(x, cond[:1])  # [1, S, D]
    out[:, t].sum().backward()
    grad_norm = x.grad[0].abs().sum(dim=-1)  # [S]
    assert (grad_norm[t + 1 :] == 0).all()
    assert (grad_norm[: t + 1] > 0).all()


def test_future_codes_do_not_change_past_logits():
    lm, codes, cond = _model_and_inputs(TINY)
    changed = codes.clone()
    changed[:, :, 5:] = (changed[:, :, 5:] + 1) % (TINY.card + 1)
    with torch.no_grad():
        a, b = lm(codes, cond), lm(changed, cond)
    assert torch.equal(a[:, :, :5], b[:, :, :5])
    assert not torch.allclose(a[:, :, 5:], b[:, :, 5:])


def test_zeroed_condition_positions_are_still_attended_without_a_mask():
    """audiocraft semantics: padded text is a zero vector that still takes softmax mass; a mask removes it."""
    lm, codes, cond = _model_and_inputs(TINY)
    short, padded = cond[:, :3], torch.cat([cond[:, :3], torch.zeros_like(cond[:, 3:])], dim=1)
    mask = torch.tensor([[True, True, True, False, False]] * 2)
    with torch.no_grad():
        ref = lm(codes, short)
        torch.testing.assert_close(lm(codes, padded, cond_mask=mask), ref, atol=1e-5, rtol=0)
        assert not torch.allclose(lm(codes, padded), ref, atol=1e-4)

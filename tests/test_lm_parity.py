"""Parity with transformers' MusicGen on identical random weights: logits within 1e-5, equal greedy tokens."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    EncodecConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    T5Config,
)

from lm.config import lm_config_from_hf
from lm.loading import build_lm_from_hf, load_hf_state_dict
from lm.model import MusicGenLM

TEXT_DIM, CARD, B, L = 24, 64, 2, 5


def _hf_musicgen(num_codebooks: int, audio_channels: int) -> MusicgenForConditionalGeneration:
    text = T5Config(vocab_size=99, d_model=TEXT_DIM, d_kv=6, d_ff=37, num_layers=2, num_heads=4)
    audio = EncodecConfig(
        hidden_size=8, num_filters=4, upsampling_ratios=[2, 2], codebook_size=CARD, codebook_dim=8,
        num_lstm_layers=1, target_bandwidths=[1.0], sampling_rate=800,
    )  # fmt: skip
    decoder = MusicgenDecoderConfig(
        vocab_size=CARD, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
        num_codebooks=num_codebooks, audio_channels=audio_channels, max_position_embeddings=64,
        pad_token_id=CARD, bos_token_id=CARD,
    )  # fmt: skip
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder))
    with torch.no_grad():  # larger logits, so argmaxes are well separated
        for head in model.decoder.lm_heads:
            head.weight.mul_(10)
    return model.eval()


@pytest.fixture(scope="module", params=[(4, 1), (8, 2)], ids=["mono", "stereo"])
def models(request) -> tuple[MusicgenForConditionalGeneration, MusicGenLM]:
    hf = _hf_musicgen(*request.param)
    lm = MusicGenLM(lm_config_from_hf(hf.config.to_dict())).eval()
    load_hf_state_dict(lm, hf.state_dict())
    return hf, lm


def _hf_logits(hf, codes, text_states, text_mask) -> torch.Tensor:
    B, K, S = codes.shape
    out = hf(encoder_outputs=(text_states,), attention_mask=text_mask, decoder_input_ids=codes.reshape(B * K, S))
    return out.logits.reshape(B, K, S, -1)  # [B, K, S, V]


def _inputs(K: int, S: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    codes = torch.randint(0, CARD + 1, (B, K, S), generator=generator)
    return codes, torch.randn(B, L, TEXT_DIM, generator=generator), torch.ones(B, L, dtype=torch.long)


def test_config_read_from_transformers(models):
    hf, lm = models
    decoder = hf.config.decoder
    assert lm.config.num_codebooks == decoder.num_codebooks and lm.config.cond_dim == TEXT_DIM
    expected_delays = (0, 0, 1, 1, 2, 2, 3, 3) if decoder.audio_channels == 2 else (0, 1, 2, 3)
    assert lm.config.delays == expected_delays


@torch.no_grad()
def test_logits_match_transformers_without_padding(models):
    hf, lm = models
    codes, text_states, text_mask = _inputs(lm.config.num_codebooks)
    ref = _hf_logits(hf, codes, text_states, text_mask)
    ours = lm(codes, lm.project_condition(text_states, text_mask))
    assert ref.abs().max() > 1.0  # the heads were scaled: a real comparison, not of near-zeros
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert torch.equal(ours[:, :, -1].argmax(-1), ref[:, :, -1].argmax(-1))


@torch.no_grad()
def test_padded_text_matches_transformers_only_with_the_key_mask(models):
    """transformers masks padded text keys; audiocraft (our default) attends to their zero vectors."""
    hf, lm = models
    codes, text_states, text_mask = _inputs(lm.config.num_codebooks)
    text_mask[1, 3:] = 0
    ref = _hf_logits(hf, codes, text_states, text_mask)
    cond = lm.project_condition(text_states, text_mask)
    torch.testing.assert_close(lm(codes, cond, cond_mask=text_mask.bool()), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(lm(codes[:1], cond[:1]), ref[:1], atol=1e-5, rtol=0)  # unpadded row
    assert not torch.allclose(lm(codes[1:], cond[1:]), ref[1:], atol=1e-4)  # padded row differs


@torch.no_grad()
def test_greedy_decoding_with_cache_gives_transformers_argmax(models):
    """Decode greedily step by step with our KV cache; transformers, teacher-forced on the result, agrees."""
    hf, lm = models
    K, steps = lm.config.num_codebooks, 12
    _, text_states, text_mask = _inputs(K)
    cond = lm.project_condition(text_states, text_mask)
    cache = lm.new_cache(max_steps=steps)
    sequence = torch.full((B, K, 1), CARD)  # step 0: the special token
    for _ in range(steps - 1):
        logits = lm(sequence[:, :, -1:], cond, cache=cache)  # [B, K, 1, V]
        sequence = torch.cat([sequence, logits.argmax(-1)], dim=2)
    ref = _hf_logits(hf, sequence[:, :, :-1], text_states, text_mask)  # [B, K, steps - 1, V]
    assert torch.equal(ref.argmax(-1), sequence[:, :, 1:])
    assert len(sequence.unique()) > 2  # not a degenerate constant sequence


@torch.no_grad()
def test_loading_from_a_saved_transformers_checkpoint(models, tmp_path):
    """The user path: config.json + model.safetensors written by save_pretrained."""
    hf, lm = models
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    loaded = build_lm_from_hf(config, load_file(tmp_path / "model.safetensors"))
    assert loaded.config == lm.config
    codes, text_states, text_mask = _inputs(lm.config.num_codebooks)
    ref = _hf_logits(hf, codes, text_states, text_mask)
    torch.testing.assert_close(loaded(codes, loaded.project_condition(text_states, text_mask)), ref, atol=1e-5, rtol=0)


@torch.no_grad()
def test_causal_lm_layout(models):
    """A bare MusicgenForCausalLM state dict (no `decoder.` prefix, no enc_to_dec_proj)."""
    hf, _ = models
    lm = MusicGenLM(lm_config_from_hf(hf.config.decoder.to_dict())).eval()
    assert lm.cond_proj is None
    load_hf_state_dict(lm, hf.decoder.state_dict())
    codes, text_states, _ = _inputs(lm.config.num_codebooks)
    cond = hf.enc_to_dec_proj(text_states)  # [B, L, D]
    B, K, S = codes.shape
    ref = hf.decoder(input_ids=codes.reshape(B * K, S), encoder_hidden_states=cond).logits.reshape(B, K, S, -1)
    torch.testing.assert_close(lm(codes, cond), ref, atol=1e-5, rtol=0)

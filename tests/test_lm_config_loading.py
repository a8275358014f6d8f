"""LM presets, config.json reading, and the loading table's errors."""

import dataclasses

import pytest
import torch

from checkpoint_io import CheckpointError
from lm.config import LM_PRESETS, LMConfig, lm_config_from_hf, lm_preset
from lm.loading import build_lm_from_hf, hf_key_table, load_hf_state_dict
from lm.model import MusicGenLM

# The "decoder" and the relevant "text_encoder" fields of facebook/musicgen-small's config.json
# (docs/architecture.md 3.2).
SMALL_CONFIG_JSON = {
    "model_type": "musicgen",
    "text_encoder": {"model_type": "t5", "d_model": 768, "num_layers": 12, "num_heads": 12},
    "decoder": {
        "model_type": "musicgen_decoder", "vocab_size": 2048, "max_position_embeddings": 2048,
        "num_hidden_layers": 24, "ffn_dim": 4096, "num_attention_heads": 16, "hidden_size": 1024,
        "activation_function": "gelu", "num_codebooks": 4, "audio_channels": 1, "scale_embedding": False,
        "pad_token_id": 2048, "bos_token_id": 2048,
    },
}  # fmt: skip

TINY = LMConfig(dim=16, num_layers=2, num_heads=2, ffn_dim=32, num_codebooks=4, card=8, cond_dim=12)


def test_presets_hold_the_published_sizes():
    sizes = {name: (c.dim, c.num_layers, c.num_heads, c.ffn_dim) for name, c in LM_PRESETS.items()}
    assert sizes["musicgen-small"] == (1024, 24, 16, 4096)
    assert sizes["musicgen-medium"] == (1536, 48, 24, 6144)
    assert sizes["musicgen-large"] == (2048, 48, 32, 8192)
    for size in ("small", "medium", "large"):
        stereo = LM_PRESETS[f"musicgen-stereo-{size}"]
        assert sizes[f"musicgen-stereo-{size}"] == sizes[f"musicgen-{size}"]
        assert stereo.num_codebooks == 8 and stereo.delays == (0, 0, 1, 1, 2, 2, 3, 3)
    assert all(c.head_dim == 64 and c.card == 2048 and c.special_token == 2048 for c in LM_PRESETS.values())
    assert lm_preset("facebook/musicgen-small") is LM_PRESETS["musicgen-small"]
    with pytest.raises(KeyError, match="musicgen-small"):
        lm_preset("musicgen-tiny")


def test_small_config_json_gives_the_small_preset():
    assert lm_config_from_hf(SMALL_CONFIG_JSON) == lm_preset("musicgen-small")


def test_stereo_config_json_gives_the_stereo_preset():
    decoder = {**SMALL_CONFIG_JSON["decoder"], "num_codebooks": 8, "audio_channels": 2}
    assert lm_config_from_hf({**SMALL_CONFIG_JSON, "decoder": decoder}) == lm_preset("musicgen-stereo-small")


def test_sizes_come_from_the_checkpoint_not_a_default():
    decoder = {**SMALL_CONFIG_JSON["decoder"], "hidden_size": 1536, "num_attention_heads": 24}
    config = lm_config_from_hf({**SMALL_CONFIG_JSON, "decoder": decoder})
    assert (config.dim, config.num_heads, config.head_dim) == (1536, 24, 64)


def test_config_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.dim = 8
    with pytest.raises(ValueError):
        LMConfig(num_codebooks=4, delays=(0, 1))


def test_melody_config_prepends_instead_of_cross_attending():
    config = lm_config_from_hf({**SMALL_CONFIG_JSON, "model_type": "musicgen_melody", "num_chroma": 12,
                                "chroma_length": 235})
    assert (config.cross_attention, config.num_chroma, config.chroma_length) == (False, 12, 235)


def _hf_state_dict(config: LMConfig) -> dict[str, torch.Tensor]:
    """A transformers-named state dict with the right shapes, through the table (values: our random init)."""
    ours = MusicGenLM(config).state_dict()
    return {theirs: ours[name].clone() for theirs, name in hf_key_table(config).items()}


def test_table_covers_every_parameter_and_other_loaders_keys_are_skipped():
    state_dict = _hf_state_dict(TINY)
    state_dict["text_encoder.shared.weight"] = torch.zeros(3)
    state_dict["audio_encoder.quantizer.layers.0.codebook.embed"] = torch.zeros(3)
    state_dict["decoder.model.decoder.embed_positions.weights"] = torch.zeros(3)
    lm = MusicGenLM(TINY)
    load_hf_state_dict(lm, state_dict)
    assert torch.equal(lm.heads[3].weight, state_dict["decoder.lm_heads.3.weight"])
    assert torch.equal(lm.cond_proj.bias, state_dict["enc_to_dec_proj.bias"])


def test_missing_and_unexpected_keys_are_named():
    state_dict = _hf_state_dict(TINY)
    del state_dict["decoder.model.decoder.layers.1.fc2.weight"]
    state_dict["decoder.model.decoder.layers.2.fc1.weight"] = torch.zeros(32, 16)
    with pytest.raises(CheckpointError) as error:
        load_hf_state_dict(MusicGenLM(TINY), state_dict)
    assert "decoder.model.decoder.layers.1.fc2.weight" in str(error.value)
    assert "decoder.model.decoder.layers.2.fc1.weight" in str(error.value)


def test_wrong_shape_is_named():
    state_dict = _hf_state_dict(TINY)
    state_dict["decoder.model.decoder.embed_tokens.2.weight"] = torch.zeros(8, 16)  # card rows, not card + 1
    with pytest.raises(CheckpointError, match=r"embeddings\.2\.weight: checkpoint \[8, 16\]"):
        load_hf_state_dict(MusicGenLM(TINY), state_dict)


def test_build_from_hf_on_meta_then_real_weights():
    config_json = {
        "text_encoder": {"d_model": 12},
        "decoder": {
            "vocab_size": 8, "num_hidden_layers": 2, "ffn_dim": 32, "num_attention_heads": 2, "hidden_size": 16,
            "num_codebooks": 4,
        },
    }  # fmt: skip
    state_dict = _hf_state_dict(TINY)
    lm = build_lm_from_hf(config_json, state_dict, dtype=torch.float64)
    assert lm.config == TINY
    assert all(p.device.type == "cpu" and p.dtype == torch.float64 for p in lm.parameters())
    torch.testing.assert_close(lm.heads[0].weight, state_dict["decoder.lm_heads.0.weight"].double())

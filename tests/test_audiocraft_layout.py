"""audiocraft's checkpoint layout (state_dict.bin + compression_state_dict.bin + T5 by name).

A random transformers MusicGen is renamed into audiocraft's names (the inverse of transformers' conversion
rules, docs/architecture.md 3.1), saved with a matching `xp.cfg`, and must load to the same model as the
transformers-layout files of the same weights.
"""

import copy

import pytest
import torch
import yaml

from encodec import CheckpointError
from inference import MusicGen
from inference.speed import prepare_for_inference, quantize_int8
from tests.codec_oracle import save_audiocraft
from tests.musicgen_oracle import save_tiny_musicgen, word_tokenizer

_LAYER_RENAMES = {
    "self_attn_layer_norm": "norm1", "encoder_attn_layer_norm": "norm_cross", "final_layer_norm": "norm2",
    "fc1": "linear1", "fc2": "linear2", "self_attn.out_proj": "self_attn.out_proj",
    "encoder_attn.out_proj": "cross_attention.out_proj",
}


def to_audiocraft_lm(state: dict, num_layers: int, num_codebooks: int) -> dict:
    """transformers MusicgenForConditionalGeneration LM tensors -> audiocraft `LMModel` names."""
    out = {}
    for k in range(num_codebooks):
        out[f"emb.{k}.weight"] = state[f"decoder.model.decoder.embed_tokens.{k}.weight"]
        out[f"linears.{k}.weight"] = state[f"decoder.lm_heads.{k}.weight"]
    for i in range(num_layers):
        theirs, ours = f"decoder.model.decoder.layers.{i}.", f"transformer.layers.{i}."
        for attn, packed in (("self_attn", "self_attn"), ("encoder_attn", "cross_attention")):
            qkv = [state[f"{theirs}{attn}.{p}_proj.weight"] for p in "qkv"]
            out[f"{ours}{packed}.in_proj_weight"] = torch.cat(qkv)  # [3D, D], rows q, k, v
        for hf_name, ac_name in _LAYER_RENAMES.items():
            for param in ("weight", "bias"):
                if f"{theirs}{hf_name}.{param}" in state:
                    out[f"{ours}{ac_name}.{param}"] = state[f"{theirs}{hf_name}.{param}"]
    for param in ("weight", "bias"):
        out[f"out_norm.{param}"] = state[f"decoder.model.decoder.layer_norm.{param}"]
        out[f"condition_provider.conditioners.description.output_proj.{param}"] = state[f"enc_to_dec_proj.{param}"]
    return out


def lm_xp_cfg(oracle, t5_name: str) -> str:
    decoder = oracle.decoder.config
    return yaml.safe_dump({
        "channels": decoder.audio_channels,
        "transformer_lm": {
            "dim": decoder.hidden_size, "num_heads": decoder.num_attention_heads,
            "num_layers": decoder.num_hidden_layers, "hidden_scale": decoder.ffn_dim // decoder.hidden_size,
            "n_q": decoder.num_codebooks, "card": decoder.vocab_size, "norm_first": True, "bias_ff": False,
            "bias_attn": False, "bias_proj": False, "activation": "gelu", "positional_embedding": "sin",
            "layer_scale": None, "norm": "layer_norm", "kv_repeat": 1, "qk_layer_norm": False, "causal": True,
            "memory_efficient": True, "dropout": 0.0},
        "codebooks_pattern": {"modeling": "delay", "delay": {
            "delays": list(range(decoder.num_codebooks)) if decoder.audio_channels == 1 else [0, 0, 1, 1, 2, 2, 3, 3],
            "flatten_first": 0, "empty_initial": 0}},
        "fuser": {"cross": ["description"], "prepend": [], "sum": [], "input_interpolate": []},
        "conditioners": {"description": {"model": "t5", "t5": {"name": t5_name, "finetune": False}}},
        "classifier_free_guidance": {"training_dropout": 0.3, "inference_coef": 3.0},
        "dataset": {"segment_duration": 30},
    })


@pytest.fixture(scope="module", params=["mono", "stereo"])
def both_layouts(request, tmp_path_factory):
    stereo = request.param == "stereo"
    oracle, hf_folder = save_tiny_musicgen(tmp_path_factory.mktemp("hf"), stereo=stereo)
    t5_folder = tmp_path_factory.mktemp("t5")
    oracle.text_encoder.save_pretrained(t5_folder)
    word_tokenizer().save_pretrained(t5_folder)
    ac_folder = tmp_path_factory.mktemp("audiocraft")
    decoder = oracle.decoder.config
    state = to_audiocraft_lm(oracle.state_dict(), decoder.num_hidden_layers, decoder.num_codebooks)
    torch.save({"best_state": state, "xp.cfg": lm_xp_cfg(oracle, str(t5_folder)), "version": "1.0",
                "exported": True}, ac_folder / "state_dict.bin")
    save_audiocraft(oracle.audio_encoder, oracle.config.audio_encoder.to_dict(),
                    ac_folder / "compression_state_dict.bin")
    return MusicGen.from_pretrained(hf_folder, device="cpu", quantize=None), ac_folder


def test_same_model_from_both_layouts(both_layouts):
    from_hf, ac_folder = both_layouts
    from_ac = MusicGen.from_pretrained(ac_folder, device="cpu", quantize=None)
    assert from_ac.lm.config == from_hf.lm.config
    for name, tensor in from_hf.lm.state_dict().items():
        assert torch.equal(tensor, from_ac.lm.state_dict()[name]), name
    prompts = ["lo-fi funk", "jazz song"]
    codes = from_hf.generate_tokens(prompts, duration=0.2, use_sampling=False)
    assert torch.equal(codes, from_ac.generate_tokens(prompts, duration=0.2, use_sampling=False))
    with torch.no_grad():
        cond = from_hf._condition(prompts, with_null=False)
        start = torch.full((2, from_hf.lm.config.num_codebooks, 1), from_hf.lm.config.special_token)
        assert torch.equal(from_hf.lm(start, cond), from_ac.lm(start, from_ac._condition(prompts, False)))
    assert torch.equal(from_hf.decode(codes), from_ac.decode(codes))
    # the state_dict.bin file itself also works as the source
    assert MusicGen.from_pretrained(ac_folder / "state_dict.bin", device="cpu").lm.config == from_hf.lm.config


@pytest.mark.parametrize("variant", ["bfloat16", "int8"])
def test_a_transformed_lm_loads_from_audiocraft_as_converting_after_a_float32_load(both_layouts, variant):
    from_hf, ac_folder = both_layouts
    if variant == "int8":
        from_ac = MusicGen.from_pretrained(ac_folder, device="cpu", quantize="int8").lm
        reference = quantize_int8(copy.deepcopy(from_hf.lm), torch.bfloat16)
    else:
        from_ac = MusicGen.from_pretrained(ac_folder, device="cpu", dtype=torch.bfloat16).lm
        reference = prepare_for_inference(copy.deepcopy(from_hf.lm), torch.bfloat16)
    ours, theirs = from_ac.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]) for k in ours)


def test_mismatched_audiocraft_lm_names_the_keys(both_layouts, tmp_path):
    _, ac_folder = both_layouts
    package = torch.load(ac_folder / "state_dict.bin", weights_only=True)
    package["best_state"]["transformer.layers.0.extra.weight"] = torch.zeros(1)
    del package["best_state"]["linears.0.weight"]
    torch.save(package, tmp_path / "state_dict.bin")
    (tmp_path / "compression_state_dict.bin").write_bytes((ac_folder / "compression_state_dict.bin").read_bytes())
    expected = r"missing: \[linears.0.weight\]; unexpected: \[transformer.layers.0.extra.weight\]"  # their names
    with pytest.raises(CheckpointError, match=expected):
        MusicGen.from_pretrained(tmp_path, device="cpu")

"""save_musicgen writes a folder that MusicGen.from_pretrained (and, with T5, transformers) reads back."""

import pytest
import torch
import transformers

from encodec import EncodecModel, get_preset
from inference import MusicGen
from inference.export import save_musicgen
from lm.conditioning import LookupTableConditioner
from lm.config import LMConfig
from lm.model import MusicGenLM
from tests.musicgen_oracle import save_tiny_musicgen, word_tokenizer


def test_round_trip_of_a_t5_model_also_loads_in_transformers(tmp_path):
    _, folder = save_tiny_musicgen(tmp_path / "original")
    with pytest.raises(ValueError, match="quantize=None"):  # int8, the CPU default, is not the model's weights
        save_musicgen(MusicGen.from_pretrained(folder, device="cpu"), tmp_path / "export")
    assert not (tmp_path / "export").exists()
    ours = MusicGen.from_pretrained(folder, device="cpu", quantize=None)
    save_musicgen(ours, tmp_path / "export")
    again = MusicGen.from_pretrained(tmp_path / "export", device="cpu", quantize=None)
    codes = ours.generate_tokens(["jazz song", "lo-fi funk"], duration=0.2, use_sampling=False)
    assert torch.equal(codes, again.generate_tokens(["jazz song", "lo-fi funk"], duration=0.2, use_sampling=False))
    assert torch.equal(ours.decode(codes), again.decode(codes))

    theirs = transformers.MusicgenForConditionalGeneration.from_pretrained(tmp_path / "export").eval()
    inputs = word_tokenizer()(["jazz song"], return_tensors="pt")
    start = torch.full((4, 1), ours.lm.config.special_token)
    with torch.no_grad():
        want = theirs(**inputs, decoder_input_ids=start).logits.reshape(1, 4, 1, -1)
        got = ours.lm(start.reshape(1, 4, 1), ours._condition(["jazz song"], with_null=False))
    assert (got - want).abs().max() < 1e-5


def small_lookup_table_model() -> MusicGen:
    torch.manual_seed(0)
    codec = EncodecModel(get_preset("encodec-32khz", n_filters=4, dimension=16, bins=64, n_q=4)).eval()
    lm = MusicGenLM(LMConfig(dim=32, num_layers=2, num_heads=4, ffn_dim=64, card=64, cond_dim=None)).eval()
    return MusicGen(lm, codec, LookupTableConditioner(num_bins=50, dim=32).eval(), max_duration=8.0)


def test_round_trip_of_a_lookup_table_model(tmp_path):
    mg = small_lookup_table_model()
    save_musicgen(mg, tmp_path / "demo")
    again = MusicGen.from_pretrained(tmp_path / "demo", device="cpu", quantize=None)
    assert isinstance(again.text, LookupTableConditioner) and again.max_duration == 8.0
    assert again.extend_stride == pytest.approx(4.8)  # 60% of a window shorter than audiocraft's 30 s
    assert again.lm.config == mg.lm.config and again.codec.config == mg.codec.config
    codes = mg.generate_tokens(["slow piano"], duration=0.2, seed=3)
    assert torch.equal(codes, again.generate_tokens(["slow piano"], duration=0.2, seed=3))
    # exporting again over the folder replaces it as a whole
    save_musicgen(again, tmp_path / "demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_lookup_table_folder_with_a_wrong_table_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    save_musicgen(small_lookup_table_model(), tmp_path / "demo")
    state = load_file(tmp_path / "demo" / "model.safetensors")
    state["text_encoder.embedding.weight"] = torch.zeros(3, 32)
    save_file(state, tmp_path / "demo" / "model.safetensors")
    with pytest.raises(ValueError, match="text_encoder"):
        MusicGen.from_pretrained(tmp_path / "demo", device="cpu")

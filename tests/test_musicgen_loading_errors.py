"""Bad MusicGen checkpoints (both layouts, T5 or word table) give one `CheckpointError` naming the culprit."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from checkpoint_io import CheckpointError
from encodec import EncodecModel, get_preset
from inference import MusicGen
from inference.export import save_musicgen
from lm.conditioning import LookupTableConditioner
from lm.config import LMConfig
from lm.model import MusicGenLM
from tests.codec_oracle import save_audiocraft
from tests.musicgen_oracle import save_tiny_musicgen, word_tokenizer
from tests.test_audiocraft_layout import lm_xp_cfg, to_audiocraft_lm


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    return save_tiny_musicgen(tmp_path_factory.mktemp("t5-model"))[1]


@pytest.fixture(scope="module")
def table_folder(tmp_path_factory):
    torch.manual_seed(0)
    codec = EncodecModel(get_preset("encodec-32khz", n_filters=4, dimension=16, bins=64, n_q=4)).eval()
    lm = MusicGenLM(LMConfig(dim=32, num_layers=2, num_heads=4, ffn_dim=64, card=64, cond_dim=None)).eval()
    mg = MusicGen(lm, codec, LookupTableConditioner(num_bins=50, dim=32).eval(), max_duration=8.0)
    return save_musicgen(mg, tmp_path_factory.mktemp("table") / "model")


@pytest.fixture(scope="module")
def audiocraft_folder(tmp_path_factory):
    oracle, _ = save_tiny_musicgen(tmp_path_factory.mktemp("hf"))
    t5 = tmp_path_factory.mktemp("t5")
    oracle.text_encoder.save_pretrained(t5)
    word_tokenizer().save_pretrained(t5)
    folder = tmp_path_factory.mktemp("audiocraft")
    decoder = oracle.decoder.config
    state = to_audiocraft_lm(oracle.state_dict(), decoder.num_hidden_layers, decoder.num_codebooks)
    torch.save({"best_state": state, "xp.cfg": lm_xp_cfg(oracle, str(t5)), "exported": True},
               folder / "state_dict.bin")
    save_audiocraft(oracle.audio_encoder, oracle.config.audio_encoder.to_dict(), folder / "compression_state_dict.bin")
    return folder


def edited_copy(folder, tmp_path, edit):
    """A copy of a transformers-layout folder whose tensors went through `edit(state)`."""
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    state = load_file(copy / "model.safetensors")
    edit(state)
    save_file(state, copy / "model.safetensors")
    return copy


def set_value(name, value):
    def edit(state):
        state[name] = state[name].clone()
        state[name].view(-1)[0] = value

    return edit


# ---- issue 14 item 2: non-finite weights are refused at load, naming the tensor, in every layout

@pytest.mark.parametrize(("name", "value", "ours"), [
    ("decoder.model.decoder.layers.0.fc1.weight", float("nan"), "transformer.layers.0.linear1.weight"),
    ("audio_encoder.decoder.layers.0.conv.bias", float("nan"), "decoder.layers.0.conv.bias"),
    ("text_encoder.shared.weight", float("inf"), "shared.weight"),
    ("enc_to_dec_proj.bias", float("-inf"), "cond_proj.bias"),
])
def test_non_finite_weights_of_a_t5_model_are_named(t5_folder, tmp_path, name, value, ours):
    with pytest.raises(CheckpointError, match=rf"tensor {ours} holds NaN or infinite values"):
        MusicGen.from_pretrained(edited_copy(t5_folder, tmp_path, set_value(name, value)), device="cpu")


def test_non_finite_word_table_is_named(table_folder, tmp_path):
    folder = edited_copy(table_folder, tmp_path, set_value("text_encoder.embedding.weight", float("nan")))
    with pytest.raises(CheckpointError, match=r"text_encoder.*tensor embedding.weight holds NaN"):
        MusicGen.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize(("file", "name", "ours"), [
    ("state_dict.bin", "linears.1.weight", "heads.1.weight"),
    ("compression_state_dict.bin", "decoder.model.0.conv.conv.bias", "decoder.layers.0.conv.bias"),
])
def test_non_finite_weights_of_an_audiocraft_model_are_named(audiocraft_folder, tmp_path, file, name, ours):
    copy = tmp_path / "ac"
    shutil.copytree(audiocraft_folder, copy)
    package = torch.load(copy / file, weights_only=True)
    package["best_state"][name] = package["best_state"][name].clone().fill_(float("nan"))
    torch.save(package, copy / file)
    with pytest.raises(CheckpointError, match=rf"tensor {ours} holds NaN"):
        MusicGen.from_pretrained(copy, device="cpu")


def test_integer_weights_are_refused(t5_folder, tmp_path):
    def edit(state):
        name = "decoder.lm_heads.0.weight"
        state[name] = state[name].long()

    with pytest.raises(CheckpointError, match=r"tensor heads.0.weight has dtype torch.int64"):
        MusicGen.from_pretrained(edited_copy(t5_folder, tmp_path, edit), device="cpu")

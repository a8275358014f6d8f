"""Parity with transformers' EncodecModel on the same random weights, through every checkpoint layout.

The oracle is built from small random configs and saved with `save_pretrained`; our `load_encodec` reads
the files. Codes must be equal and decoded audio within 1e-5.
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from encodec import load_encodec, save_encodec
from tests.codec_oracle import (
    HF_24KHZ,
    HF_32KHZ,
    hf_codes_and_audio,
    legacy_weight_norm_names,
    random_hf_codec,
    save_audiocraft,
    save_musicgen_style,
    to_audiocraft_names,
)

LENGTHS = [640, 1001, 32_000, 40_123]


def _check_parity(ours, oracle, sample_rate, lengths=LENGTHS):
    torch.manual_seed(1)
    seen = set()
    for length in lengths:
        wav = torch.randn(2, 1, length) * 0.3
        want_codes, want_audio = hf_codes_and_audio(oracle, wav)
        codes = ours.encode(wav)
        assert torch.equal(codes, want_codes), f"codes differ at length {length}"
        seen.update(codes.unique().tolist())
        audio = ours.decode(codes)
        assert audio.shape == want_audio.shape
        assert (audio - want_audio).abs().max().item() < 1e-5
    assert len(seen) > 10  # spread-out codebooks: the comparison is not trivially 0 == 0


@pytest.fixture(scope="module")
def hf32(tmp_path_factory):
    model = random_hf_codec(0, **HF_32KHZ)
    folder = tmp_path_factory.mktemp("hf32")
    model.save_pretrained(folder)
    return model, folder


@pytest.mark.parametrize("inference", [True, False])
def test_32khz_transformers_folder(hf32, inference):
    oracle, folder = hf32
    ours = load_encodec(folder, inference=inference)
    assert ours.is_folded == inference
    assert (ours.sample_rate, ours.frame_rate, ours.num_codebooks, ours.cardinality) == (32_000, 50, 4, 2048)
    _check_parity(ours, oracle, 32_000)


def test_24khz_causal_transformers_folder(tmp_path):
    oracle = random_hf_codec(0, **HF_24KHZ)
    oracle.save_pretrained(tmp_path)
    ours = load_encodec(tmp_path)
    assert (ours.frame_rate, ours.num_codebooks, ours.config.causal, ours.config.true_skip) == (75, 8, True, False)
    _check_parity(ours, oracle, 24_000, lengths=[320, 999, 24_000])
    # lower bandwidths use the first codebooks, as transformers does
    wav = torch.randn(1, 1, 5000)
    with torch.no_grad():
        want = oracle.encode(wav, bandwidth=3.0).audio_codes[0]
    assert torch.equal(ours.encode(wav, bandwidth=3.0), want)


def test_legacy_weight_g_weight_v_names(hf32, tmp_path):
    oracle, folder = hf32
    state = legacy_weight_norm_names(load_file(folder / "model.safetensors"))
    assert any(k.endswith(".weight_g") for k in state)
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    _check_parity(load_encodec(tmp_path), oracle, 32_000, lengths=[32_000])


def test_sharded_safetensors(hf32, tmp_path):
    oracle, folder = hf32
    state = load_file(folder / "model.safetensors")
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    weight_map = {}
    for name, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, tmp_path / name)
        weight_map.update({k: name for k in shard_keys})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    _check_parity(load_encodec(tmp_path), oracle, 32_000, lengths=[32_000])


def test_codec_inside_a_musicgen_checkpoint(hf32, tmp_path):
    oracle, _ = hf32
    _check_parity(load_encodec(save_musicgen_style(oracle, tmp_path)), oracle, 32_000, lengths=[32_000])


def test_audiocraft_compression_state_dict(hf32, tmp_path):
    oracle, _ = hf32
    path = save_audiocraft(oracle, HF_32KHZ, tmp_path / "compression_state_dict.bin")
    assert "encoder.model.3.conv.conv.weight_g" in to_audiocraft_names(oracle.state_dict())
    _check_parity(load_encodec(path), oracle, 32_000)
    _check_parity(load_encodec(tmp_path), oracle, 32_000, lengths=[1001])  # the folder that holds it


def test_audiocraft_pointer_form_follows_the_pointer(hf32, tmp_path):
    oracle, folder = hf32
    path = tmp_path / "compression_state_dict.bin"
    torch.save({"pretrained": str(folder), "exported": True, "version": "1.0"}, path)
    _check_parity(load_encodec(path), oracle, 32_000, lengths=[1001])


def test_original_encodec_th_state_dict(tmp_path):
    # The original package's 24 kHz file is a bare state dict in audiocraft names, with no config: sizes
    # are read off the tensors, the rest is the 24 kHz model's (causal, conv skips, reflect padding).
    config = dict(HF_24KHZ, target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0])
    oracle = random_hf_codec(0, **config)
    path = tmp_path / "encodec_24khz-d7cc33bc.th"
    torch.save(to_audiocraft_names(oracle.state_dict()), path)
    ours = load_encodec(path)
    assert ours.num_codebooks == 32
    _check_parity(ours, oracle, 24_000, lengths=[24_000])


def test_save_encodec_round_trip_is_readable_by_transformers(hf32, tmp_path):
    oracle, folder = hf32
    ours = load_encodec(folder, inference=False)
    save_encodec(ours, tmp_path)
    import transformers

    again = transformers.EncodecModel.from_pretrained(tmp_path).eval()
    _check_parity(load_encodec(tmp_path), again, 32_000, lengths=[32_000])
    _check_parity(ours, again, 32_000, lengths=[1001])

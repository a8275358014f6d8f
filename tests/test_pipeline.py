"""MusicGen.from_pretrained + generate against transformers' MusicgenForConditionalGeneration.generate."""

import pytest
import torch

from encodec import CheckpointError
from inference import MusicGen
from tests.musicgen_oracle import hf_generate_codes, save_tiny_musicgen

FRAMES = 12  # 0.24 s at 50 frames per second


@pytest.fixture(scope="module", params=["mono", "stereo"])
def checkpoint(request, tmp_path_factory):
    oracle, folder = save_tiny_musicgen(tmp_path_factory.mktemp(request.param), stereo=request.param == "stereo")
    return oracle, MusicGen.from_pretrained(folder, device="cpu", quantize=None)


def test_loads_every_size_from_the_checkpoint(checkpoint):
    oracle, ours = checkpoint
    stereo = oracle.decoder.config.audio_channels == 2
    assert (ours.sample_rate, ours.frame_rate, ours.audio_channels) == (800, 50, 2 if stereo else 1)
    assert ours.lm.config.num_codebooks == (8 if stereo else 4)
    assert ours.lm.config.delays == ((0, 0, 1, 1, 2, 2, 3, 3) if stereo else (0, 1, 2, 3))


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
@pytest.mark.parametrize("prompts", [["an uplifting jazz song"], ["lo-fi funk", "80s pop", "jazz song"]],
                         ids=["one", "batch"])
def test_greedy_codes_and_audio_equal_transformers(checkpoint, prompts, cfg):
    oracle, ours = checkpoint
    want_codes, want_audio = hf_generate_codes(oracle, prompts, FRAMES, guidance_scale=cfg if cfg > 1 else None)
    codes = ours.generate_tokens(prompts, duration=FRAMES / 50, use_sampling=False, cfg_coef=cfg)
    assert codes.shape == want_codes.shape == (len(prompts), ours.lm.config.num_codebooks, FRAMES)
    assert torch.equal(codes, want_codes)
    assert len(codes.unique()) > 5  # the LM does not just repeat one token
    audio = ours.decode(codes)
    assert audio.shape == want_audio.shape
    assert (audio - want_audio).abs().max().item() < 1e-5


def test_generate_returns_audio_of_the_asked_length(checkpoint):
    _, ours = checkpoint
    audio = ours.generate(["an uplifting jazz song"], duration=2, seed=0)
    assert audio.shape == (1, ours.audio_channels, 2 * 800)
    assert torch.isfinite(audio).all()


def test_seed_reproduces_a_sampled_run(checkpoint):
    _, ours = checkpoint
    runs = [ours.generate_tokens(["lo-fi funk", None], duration=0.3, seed=seed, top_k=20) for seed in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_sampling_settings_change_the_result(checkpoint):
    _, ours = checkpoint
    greedy = ours.generate_tokens("jazz song", duration=0.3, use_sampling=False)
    assert torch.equal(greedy, ours.generate_tokens("jazz song", duration=0.3, use_sampling=False))
    sampled = ours.generate_tokens("jazz song", duration=0.3, seed=1, temperature=3.0, top_k=0)
    assert not torch.equal(greedy, sampled)
    nucleus = ours.generate_tokens("jazz song", duration=0.3, seed=1, top_p=0.9)
    assert nucleus.shape == greedy.shape


@pytest.mark.parametrize("duration", [0, -1.0, float("nan"), float("inf")])
def test_bad_durations_are_clear_errors(checkpoint, duration):
    _, ours = checkpoint
    with pytest.raises(ValueError, match="duration"):
        ours.generate("jazz", duration=duration)


def test_empty_description_list(checkpoint):
    _, ours = checkpoint
    with pytest.raises(ValueError, match="at least one description"):
        ours.generate([], duration=0.1)


def test_missing_or_wrong_sources(tmp_path):
    with pytest.raises(CheckpointError, match="not an existing folder"):
        MusicGen.from_pretrained(tmp_path / "nope", device="cpu")
    with pytest.raises(CheckpointError, match="no config.json"):
        MusicGen.from_pretrained(tmp_path, device="cpu")

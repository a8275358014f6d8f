"""Melody models: chroma extraction, and parity with transformers' MusicgenMelodyForConditionalGeneration."""

import pytest
import torch
from transformers.audio_utils import chroma_filter_bank as hf_chroma_filter_bank

from inference import MusicGen
from lm.chroma import ChromaExtractor, chroma_filter_bank, chroma_frames
from lm.sampling import SamplingParams
from tests.musicgen_oracle import CARD, save_tiny_melody_musicgen, word_tokenizer

CHROMA_LENGTH = 20  # the published models use 235 (30 s); a short prefix keeps the test fast


@pytest.mark.parametrize(("sample_rate", "n_fft"), [(32_000, 16_384), (22_050, 2048)])
def test_chroma_filter_bank_matches_transformers(sample_rate, n_fft):
    ours = chroma_filter_bank(sample_rate, n_fft)
    theirs = torch.from_numpy(hf_chroma_filter_bank(num_frequency_bins=n_fft, num_chroma=12,
                                                    sampling_rate=sample_rate, tuning=0)).float()
    assert ours.shape == theirs.shape == (12, n_fft // 2 + 1)
    assert (ours - theirs).abs().max() < 1e-6


@pytest.mark.parametrize(("hz", "pitch_class"), [(261.63, 0), (392.0, 7), (440.0, 9), (987.77, 11)])
def test_pure_tones_give_their_pitch_class(hz, pitch_class):
    t = torch.arange(32_000 * 2) / 32_000
    chroma = ChromaExtractor()(torch.sin(2 * torch.pi * hz * t)[None, None])  # [1, F, 12]
    assert chroma.shape == (1, chroma_frames(2.0), 12)
    assert (chroma.sum(-1) == 1).all()  # one-hot
    assert (chroma.argmax(-1) == pitch_class).float().mean() > 0.9


def test_thirty_seconds_give_235_frames():
    assert chroma_frames(30.0) == 235
    # shorter than one window: padded to 2^14 samples first (as audiocraft), which gives 2^14 // 2^12 + 1 frames
    assert ChromaExtractor()(torch.zeros(1, 1, 1000)).shape == (1, 5, 12)


@pytest.fixture(scope="module")
def melody(tmp_path_factory):
    folder = tmp_path_factory.mktemp("melody")
    oracle, folder = save_tiny_melody_musicgen(folder, CHROMA_LENGTH)
    return oracle, MusicGen.from_pretrained(folder, device="cpu", quantize=None)


def _chroma(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 12, (batch, frames), generator=generator), 12).float()


def test_logits_equal_transformers_given_the_same_chroma(melody):
    oracle, ours = melody
    assert (ours.lm.config.cross_attention, ours.lm.config.num_chroma) == (False, 12)
    prompts = ["lo-fi funk", "jazz song"]
    chroma = _chroma(2, 7)  # shorter than the prefix: tiled, as transformers does
    codes = torch.randint(0, CARD + 1, (2, 4, 9), generator=torch.Generator().manual_seed(1))
    inputs = word_tokenizer()(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        want = oracle(**inputs, input_features=chroma, decoder_input_ids=codes.reshape(8, 9)).logits
        cond = ours._condition(prompts, with_null=False, chroma=list(chroma))
        got = ours.lm(codes, cond)
    assert cond.shape[1] == CHROMA_LENGTH + inputs["input_ids"].shape[1]
    want = want.reshape(2, 4, -1, CARD)[:, :, -9:]  # transformers also returns logits for the prefix positions
    assert (got - want).abs().max() < 1e-5


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
def test_greedy_generation_equals_transformers(melody, cfg):
    oracle, ours = melody
    prompts, chroma, frames = ["80s pop", "jazz song"], _chroma(2, CHROMA_LENGTH, seed=2), 10
    inputs = word_tokenizer()(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        audio = oracle.generate(**inputs, input_features=chroma, do_sample=False,
                                guidance_scale=cfg if cfg > 1 else None, max_new_tokens=frames + 3)
    prompt = torch.zeros(2, 4, 0, dtype=torch.long)
    codes = ours._generate(prompts, prompt, frames, sampling=SamplingParams(use_sampling=False, cfg_coef=cfg),
                           seed=None, progress=False, callback=None, chroma=list(chroma))
    ours_audio = ours.decode(codes)
    assert ours_audio.shape == audio.shape
    assert (ours_audio - audio).abs().max() < 1e-5


def test_generate_with_chroma_from_audio(melody):
    _, ours = melody
    t = torch.arange(16_000) / 16_000
    tune = torch.sin(2 * torch.pi * 440 * t)[None]  # [C, N], 1 s of A4 at 16 kHz
    audio = ours.generate_with_chroma(["jazz song", None], [tune, None], 16_000, duration=0.3, seed=0)
    assert audio.shape == (2, 1, 240)
    assert torch.isfinite(audio).all()
    text_only = ours.generate(["jazz song"], duration=0.3, seed=0)  # the null melody
    assert text_only.shape == (1, 1, 240)
    with pytest.raises(ValueError, match="2 melodies for 1 descriptions"):
        ours.generate_with_chroma(["jazz"], [tune, tune], 16_000, duration=0.3)


def test_text_models_refuse_a_melody(tmp_path):
    from tests.musicgen_oracle import save_tiny_musicgen

    _, folder = save_tiny_musicgen(tmp_path)
    with pytest.raises(ValueError, match="not a melody model"):
        MusicGen.from_pretrained(folder, device="cpu").generate_with_chroma(["jazz"], torch.zeros(1, 800), 800)

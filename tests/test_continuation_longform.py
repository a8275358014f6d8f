"""Audio-prompt continuation (against transformers) and long-form generation in sliding windows."""

import pytest
import torch

from inference import MusicGen
from inference.audio_prompt import prepare_prompt
from inference.generation import Window, generate_window, plan_windows
from lm.sampling import SamplingParams
from tests.musicgen_oracle import hf_generate_codes, save_tiny_musicgen


@pytest.fixture(scope="module", params=["mono", "stereo"])
def checkpoint(request, tmp_path_factory):
    oracle, folder = save_tiny_musicgen(tmp_path_factory.mktemp(request.param), stereo=request.param == "stereo")
    return oracle, MusicGen.from_pretrained(folder, device="cpu", quantize=None)


@pytest.mark.parametrize("cfg", [1.0, 3.0], ids=["no-cfg", "cfg3"])
def test_greedy_continuation_equals_transformers(checkpoint, cfg):
    oracle, ours = checkpoint
    torch.manual_seed(0)
    channels = ours.audio_channels
    prompt = torch.randn(2, channels, 160) * 0.3  # 0.2 s = 10 frames at 800 Hz
    descriptions = ["lo-fi funk", "jazz song"]
    want_codes, want_audio = hf_generate_codes(oracle, descriptions, 24, cfg if cfg > 1 else None, prompt)
    audio = ours.generate_continuation(prompt, 800, descriptions, duration=24 / 50, use_sampling=False, cfg_coef=cfg)
    assert want_codes.shape[-1] == 24
    assert audio.shape == want_audio.shape == (2, channels, 24 * 16)
    assert (audio - want_audio).abs().max().item() < 1e-5
    # the result starts with the prompt's own codes (its reconstruction), then the continuation
    assert torch.equal(want_codes[..., :10], prepare_prompt(ours.codec, channels, prompt, 800))


def test_continuation_resamples_and_mixes_the_prompt(checkpoint):
    _, ours = checkpoint
    stereo_prompt = torch.randn(2, 4000) * 0.2  # [C, N]: 0.25 s of stereo at 16 kHz
    audio = ours.generate_continuation(stereo_prompt, 16_000, "jazz song", duration=0.5, seed=0)
    assert audio.shape == (1, ours.audio_channels, 400)


def test_continuation_errors(checkpoint):
    _, ours = checkpoint
    prompt = torch.randn(2, 1, 800)  # 1 s
    with pytest.raises(ValueError, match="descriptions for 2 audio prompts"):
        ours.generate_continuation(prompt, 800, ["a", "b", "c"], duration=2)
    with pytest.raises(ValueError, match="shorter than the requested duration"):
        ours.generate_continuation(prompt, 800, duration=0.5)


def test_plan_windows():
    def plan(*args):
        return [(w.start, w.prompt, w.frames) for w in plan_windows(*args)]

    assert plan(0, 40, 50, 30) == [(0, 0, 40)]
    assert plan(0, 115, 50, 30) == [(0, 0, 50), (30, 20, 50), (60, 20, 50), (90, 20, 25)]
    assert plan(10, 115, 50, 30) == [(0, 10, 50), (30, 20, 50), (60, 20, 50), (90, 20, 25)]  # 40 + 30 + 30 + 5 new
    assert plan(0, 1500 * 3, 1500, 900)[:2] == [(0, 0, 1500), (900, 600, 1500)]  # 30 s windows, 12 s re-read
    with pytest.raises(ValueError):
        plan_windows(0, 100, 50, 0)
    with pytest.raises(ValueError, match="shorter than the piece"):
        plan_windows(40, 40, 50, 30)


def test_a_prompt_longer_than_a_window_is_continued_from_its_end():
    """The README's continuation of a 10 s clip by a model of shorter windows: the last window - stride frames."""
    assert plan_windows(60, 80, 50, 30) == [Window(40, 20, 40)]  # prompt frames 40..59 are the context
    assert plan_windows(50, 120, 50, 30) == [Window(30, 20, 50), Window(60, 20, 50), Window(90, 20, 30)]
    assert plan_windows(70, 71, 50, 50) == [Window(70, 0, 1)]  # stride = window: no context at all


def test_generate_continuation_of_a_prompt_longer_than_a_window(long_model):
    prompt = torch.randn(1, long_model.audio_channels, 60 * 16) * 0.3  # 60 frames at 800 Hz, window 50
    with pytest.warns(UserWarning, match="longer than one window"):
        audio = long_model.generate_continuation(prompt, 800, "jazz song", duration=80 / 50, seed=0)
    assert audio.shape == (1, long_model.audio_channels, 80 * 16)  # the whole prompt, then 20 new frames
    assert torch.isfinite(audio).all()


@pytest.fixture()
def long_model(checkpoint):
    _, ours = checkpoint
    ours.max_duration, ours.extend_stride = 1.0, 0.6  # windows of 50 frames, 30 new frames per window
    yield ours
    ours.max_duration, ours.extend_stride = 30.0, 18.0


def test_long_generation_has_the_exact_length_and_is_seeded(long_model):
    steps = []
    runs = [long_model.generate(["jazz song"], duration=2.3, seed=seed, top_k=20,
                                callback=lambda done, total: steps.append((done, total))) for seed in (3, 3)]
    assert runs[0].shape == (1, long_model.audio_channels, 115 * 16)
    assert torch.equal(runs[0], runs[1])
    max_delay = max(long_model.lm.config.delays)
    assert steps[-1][0] == steps[-1][1] == (50 + max_delay) + 2 * (30 + max_delay) + (5 + max_delay)


def test_windows_are_stitched_where_expected(long_model):
    codes = long_model.generate_tokens(["lo-fi funk"], duration=2.3, use_sampling=False)
    assert codes.shape[-1] == 115
    first = long_model.generate_tokens(["lo-fi funk"], duration=1.0, use_sampling=False)
    assert torch.equal(codes[..., :50], first)
    # the second window continues the last 20 frames of the first, with positions starting again at 0
    cond = long_model._condition(["lo-fi funk"], with_null=True)
    second = generate_window(long_model.lm, cond, first[..., 30:], 50, sampling=SamplingParams(use_sampling=False))
    assert torch.equal(codes[..., 50:80], second[..., 20:])

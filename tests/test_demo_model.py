"""The bundled demo model (checkpoints/demo): it loads offline, fits the size budget, and follows the prompt.

The prompt check is the cheap version of `python -m training.demo.evaluate` (its numbers are in the model
card): a slow solo piano and a techno track, generated with the same seeds, must differ the way the corpus's
piano ballads and techno tracks do. In the held-out corpus clips (FluidR3_GM piano in a room) the spectral
centroid is 1.0-1.4 kHz for the ballads and 3.3 kHz for techno, and techno has more of its energy below 150 Hz
(kick drum and synth bass). The generated clips keep both differences, the centroids a little closer together
(the piano is brighter than the corpus's), so every techno clip must be 1.5 times brighter than the brightest
piano clip, and the techno clips must have more low band on average (one 3-s clip alone can tie). The onset
rate also separates them in the corpus (2 against 8.6 a second) but less in the generated clips (3.3-5.3
against 4.3-6.7 over seeds 0-5), so it is not checked here; the model card reports it.

The short-prompt check is the evaluation's too: a style's name alone, as people type it ("Lo-fi funk" is the
README's example), must give music at the corpus's level, not a near-silent bed with a few hits.
"""

import json
from pathlib import Path

import pytest

from inference import MusicGen
from training.demo.audio_features import describe, median_level
from training.demo.evaluate import NEAR_SILENT_DB, PROMPTS, SHORT_PROMPTS

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"


@pytest.fixture(scope="module")
def demo() -> MusicGen:
    return MusicGen.from_pretrained(DEMO, device="cpu", quantize=None)


def test_the_demo_model_is_bundled_within_budget():
    files = {p.name: p.stat().st_size for p in DEMO.iterdir()}
    assert {"config.json", "model.safetensors", "MODEL_CARD.md", "evaluation.json"} <= set(files)
    assert sum(files.values()) <= 50 * 2**20
    config = json.loads((DEMO / "config.json").read_text())
    assert config["audio_encoder"]["sampling_rate"] == 32_000 and config["max_duration"] >= 8


def test_the_prompt_changes_the_music(demo):
    piano, techno = [], []
    for seed in (0, 1):
        wav = demo.generate(list(PROMPTS.values()), duration=3.0, seed=seed)  # [2, 1, 3 s]
        assert wav.shape == (2, 1, 3 * demo.sample_rate) and wav.abs().max() > 1e-3
        piano.append(describe(wav[0], demo.sample_rate))
        techno.append(describe(wav[1], demo.sample_rate))
    # measured over seeds 0-5: centroid 1.41-1.66 kHz against 2.74-3.24 kHz, low band 0.48-0.62 against 0.62-0.80
    brightest_piano = max(p["spectral_centroid"] for p in piano)
    assert all(t["spectral_centroid"] > 1.5 * brightest_piano for t in techno), (piano, techno)
    mean_low = [sum(f["low_band_share"] for f in clips) / len(clips) for clips in (piano, techno)]
    assert mean_low[1] > mean_low[0], (piano, techno)


def test_short_prompts_are_not_near_silent(demo):
    wav = demo.generate(list(SHORT_PROMPTS.values()), duration=3.0, seed=0)  # [P, 1, 3 s]
    levels = {prompt: round(median_level(clip, demo.sample_rate), 1)
              for prompt, clip in zip(SHORT_PROMPTS.values(), wav, strict=True)}
    assert min(levels.values()) > NEAR_SILENT_DB, levels  # corpus clips: -21 to -13 dBFS

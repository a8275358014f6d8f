"""The bundled demo model (checkpoints/demo): it loads offline, fits the size budget, and follows the prompt.

The prompt check is the cheap version of `python -m training.demo.evaluate` (its numbers are in the model
card): a slow solo piano and a techno track, generated with the same seeds, must differ the way the corpus's
piano ballads and techno tracks do, in low-frequency energy (kick drum and synth bass) and onset rate.
"""

import json
from pathlib import Path

import pytest

from inference import MusicGen
from training.demo.audio_features import describe
from training.demo.evaluate import PROMPTS

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"


@pytest.fixture(scope="module")
def demo() -> MusicGen:
    return MusicGen.from_pretrained(DEMO, device="cpu")


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
    for p, t in zip(piano, techno, strict=True):  # measured over seeds 0-5: low band 0.02-0.21 vs 0.83-0.94,
        assert t["low_band_share"] > 0.5 > p["low_band_share"], (p, t)  # onsets 2.3-2.7/s vs 4.0-5.7/s
        assert t["onset_rate"] > p["onset_rate"], (p, t)

"""audio/denoise.py: the spectral gate against the clip's own noise floor (noisereduce)."""

import json
import math

import pytest
import torch

from audio.denoise import denoise

RATE = 16_000


def tone(seconds: float = 2.0, freq: float = 440.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    return amplitude * torch.sin(2 * math.pi * freq * t)[None]  # [1, N]


def snr_db(estimate: torch.Tensor, clean: torch.Tensor) -> float:
    return float(10 * torch.log10(clean.pow(2).sum() / (estimate - clean).pow(2).sum()))


def test_keeps_shape_length_and_finiteness_of_a_stereo_clip():
    torch.manual_seed(0)
    wav = torch.cat([tone(), 0.5 * tone(freq=660.0)]) + 0.05 * torch.randn(2, 2 * RATE)  # [2, N]
    out = denoise(wav, RATE)
    assert out.shape == wav.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.abs().max() <= wav.abs().max() * 1.1  # a gate only turns things down (plus overlap-add ripple)


def test_silence_stays_silent_and_short_clips_and_strength_zero_are_untouched():
    assert torch.equal(denoise(torch.zeros(1, RATE), RATE), torch.zeros(1, RATE))
    short = torch.randn(1, 100)  # shorter than two STFT windows
    assert torch.equal(denoise(short, RATE), short)
    noisy = torch.randn(1, RATE)
    assert torch.equal(denoise(noisy, RATE, strength=0.0), noisy)
    with pytest.raises(ValueError, match="strength"):
        denoise(noisy, RATE, strength=1.5)


def test_removes_stationary_white_noise_from_a_tone():
    torch.manual_seed(0)
    clean = tone()
    noisy = clean + 0.1 * torch.randn_like(clean)  # SNR about 11 dB
    before = snr_db(noisy, clean)
    assert snr_db(denoise(noisy, RATE), clean) > before + 4  # default strength 0.5: gated bins at -6 dB
    assert snr_db(denoise(noisy, RATE, strength=1.0), clean) > before + 10


def test_leaves_a_clean_tone_nearly_unchanged():
    # noisereduce's own default (the clip as its noise profile) would delete a steady tone: SNR about 0 dB.
    clean = tone()
    assert snr_db(denoise(clean, RATE), clean) > 35
    assert snr_db(denoise(clean, RATE, strength=1.0), clean) > 30


def test_is_deterministic():
    torch.manual_seed(1)
    wav = tone() + 0.1 * torch.randn(1, 2 * RATE)
    assert torch.equal(denoise(wav, RATE), denoise(wav, RATE))


def test_generate_denoise_flag_on_the_demo_model(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants
    import soundfile

    import generate
    from audio.denoise import DEFAULT_STRENGTH

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert generate.DENOISE_STRENGTH == DEFAULT_STRENGTH  # generate.py keeps its own copy (it must not import torch)
    clips = {}
    for name, flag in (("plain", []), ("denoised", ["--denoise"])):
        out = tmp_path / f"{name}.wav"
        argv = ["Lo-fi funk", "--model", "demo", "--duration", "1", "--seed", "1", "--output", str(out), *flag]
        assert generate.main(argv) == 0
        clips[name], _ = soundfile.read(str(out), dtype="float32")
        record = json.loads(out.with_suffix(".json").read_text())
        assert record["denoise"] == (DEFAULT_STRENGTH if flag else 0.0)
        assert record["normalization"]["method"] == "loudness"  # normalised after the gate
    stdout = capsys.readouterr().out
    assert "denoise    off" in stdout and f"denoise    spectral gate, strength {DEFAULT_STRENGTH:g}" in stdout
    assert clips["plain"].shape == clips["denoised"].shape and not (clips["plain"] == clips["denoised"]).all()

"""audio/clip.py: reading and writing, resampling, channels, loudness and peak normalisation."""

import math
from pathlib import Path

import pyloudnorm
import pytest
import soundfile
import torch

from audio.clip import (
    MAX_LIMITING_DB,
    AudioFileError,
    atomic_path,
    audio_seconds,
    convert_channels,
    loudness,
    normalize_loudness,
    normalize_peak,
    read_audio,
    resample,
    to_db,
    true_peak,
    write_audio,
)
from inference.audio_prompt import prepare_prompt


def tone(seconds: float, sample_rate: int, freq: float = 440.0, amplitude: float = 0.05) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    return amplitude * torch.sin(2 * math.pi * freq * t)[None]  # [1, N]


@pytest.mark.parametrize("sample_rate, freq", [(32000, 440.0), (800, 100.0)], ids=["32kHz", "800Hz"])
def test_loudness_normalisation_hits_the_target(sample_rate, freq):
    result = normalize_loudness(tone(2.0, sample_rate, freq), sample_rate, target_lufs=-14.0)
    assert result.method == "loudness" and result.note is None
    assert abs(loudness(result.wav, sample_rate) + 14.0) < 0.5
    if sample_rate == 32000:  # measured independently, straight with pyloudnorm
        measured = pyloudnorm.Meter(sample_rate).integrated_loudness(result.wav.double().T.numpy())
        assert abs(measured + 14.0) < 0.5


def test_loud_peaks_are_limited_to_minus_one_dbfs():
    wav = tone(2.0, 32000, amplitude=0.001)
    wav[0, ::8000] = 0.9  # clicks: a crest factor far too high for -14 LUFS under -1 dBFS
    result = normalize_loudness(wav, 32000, target_lufs=-14.0, peak_db=-1.0)
    assert abs(to_db(true_peak(result.wav)) + 1.0) < 0.01
    assert result.lufs < -15 and "peak-limited" in result.note  # more limiting than MAX_LIMITING_DB would take
    assert result.limited_db == pytest.approx(MAX_LIMITING_DB, abs=0.05)


def beats(seconds: float, sample_rate: int) -> torch.Tensor:
    """A quiet chord with a loud decaying click every half second: a peak-to-loudness ratio of ~19 dB,
    as generated drums have (a -14 LUFS target then puts the peaks ~5 dB over -1 dBFS)."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    chord = 0.06 * sum(torch.sin(2 * math.pi * f * t) for f in (220.0, 277.2, 329.6))
    click = 0.8 * torch.exp(-(t % 0.5) / 0.004) * torch.sin(2 * math.pi * 1500 * t)
    return (chord + click)[None]  # [1, N]


def test_loudness_target_is_met_under_the_ceiling_by_limiting_the_peaks():
    wav = beats(4.0, 32000)
    assert to_db(true_peak(wav)) - loudness(wav, 32000) > 15  # a plain gain to -14 LUFS would clip
    result = normalize_loudness(wav, 32000, target_lufs=-14.0, peak_db=-1.0)
    assert result.method == "loudness" and result.note is None
    assert abs(loudness(result.wav, 32000) + 14.0) < 0.1
    assert to_db(true_peak(result.wav)) <= -1.0 + 1e-3
    assert 0 < result.limited_db < MAX_LIMITING_DB


def test_nan_or_inf_in_audio_is_refused_naming_it(tmp_path):
    wav = tone(0.5, 16000).repeat(2, 1)
    wav[1, 100] = math.nan
    soundfile.write(str(tmp_path / "bad.wav"), wav.T.numpy(), 16000, subtype="FLOAT")  # float WAVs can hold NaN
    with pytest.raises(AudioFileError, match=r"bad.wav holds 1 NaN or infinite sample \(of 16000\)"):
        read_audio(tmp_path / "bad.wav")
    wav[1, 100] = math.inf
    with pytest.raises(ValueError, match="the audio prompt holds 1 NaN or infinite sample"):
        prepare_prompt(None, 1, wav, 16000)  # refused before the codec is touched


def test_long_files_are_refused_from_their_header(tmp_path, monkeypatch):
    write_audio(tmp_path / "three.wav", tone(3.0, 8000), 8000)
    assert audio_seconds(tmp_path / "three.wav") == 3.0
    monkeypatch.setattr(soundfile, "read", None)  # not decoded: read from the header alone
    with pytest.raises(AudioFileError, match="three.wav lasts 3.0 s, longer than the limit of 2 s"):
        read_audio(tmp_path / "three.wav", max_seconds=2)


def test_peak_normalisation_and_the_fallbacks():
    result = normalize_peak(tone(1.0, 32000), 32000, peak_db=-1.0)
    assert result.method == "peak" and abs(to_db(true_peak(result.wav)) + 1.0) < 1e-3
    short = normalize_loudness(tone(0.2, 32000), 32000)  # shorter than the meter's 0.4 s block
    assert short.method == "peak" and "too short" in short.note
    silence = normalize_loudness(torch.zeros(2, 32000), 32000)
    assert silence.method == "none" and torch.equal(silence.wav, torch.zeros(2, 32000)) and "silent" in silence.note


def test_true_peak_sees_between_samples():
    # A sine at a quarter of the rate, sampled 45 degrees off its crests: samples reach 0.707, the wave 1.0.
    n = torch.arange(400)
    wav = torch.sin(2 * math.pi * n / 4 + math.pi / 4)[None]
    assert wav.abs().max() < 0.71
    assert true_peak(wav) > 0.95


def test_convert_channels():
    stereo = torch.stack([torch.ones(5), -torch.ones(5) * 3])  # [2, 5]
    assert torch.equal(convert_channels(stereo, 1), -torch.ones(1, 5))  # the mean
    mono = torch.arange(5.0)[None]
    assert torch.equal(convert_channels(mono, 2), torch.stack([torch.arange(5.0)] * 2))
    batch = torch.randn(3, 1, 7)  # [B, C, N]
    assert convert_channels(batch, 2).shape == (3, 2, 7)
    three = torch.randn(3, 7)
    assert torch.equal(convert_channels(three, 2), three[:2])  # more channels than asked: the first ones
    with pytest.raises(ValueError, match="channels"):
        convert_channels(torch.randn(2, 7), 3)


def test_resample_lengths_and_content():
    assert resample(torch.randn(2, 1000), 800, 32000).shape == (2, 40000)
    assert resample(torch.randn(3, 1, 44100), 44100, 32000).shape == (3, 1, 32000)
    same = torch.randn(1, 10)
    assert resample(same, 16000, 16000) is same
    up = resample(tone(1.0, 8000, 200.0, 0.5), 8000, 32000)  # a band-limited tone survives resampling
    want = tone(1.0, 32000, 200.0, 0.5)
    assert (up - want)[:, 400:-400].abs().max() < 1e-2


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_write_and_read_back(tmp_path, suffix):
    wav = torch.stack([tone(0.5, 16000)[0], -tone(0.5, 16000)[0]])  # [2, N]
    path = write_audio(tmp_path / f"clip{suffix}", wav, 16000)
    back, rate = read_audio(path)
    assert rate == 16000 and back.shape == wav.shape and back.dtype == torch.float32
    assert (back - wav).abs().max() < 1 / 2**15 + 1e-6  # 16-bit PCM
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{suffix}"]  # no temporary file left


def test_file_errors_and_atomic_writes(tmp_path):
    with pytest.raises(AudioFileError, match="not found"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(AudioFileError, match="cannot read"):
        read_audio(tmp_path / "text.wav")
    with pytest.raises(AudioFileError, match=".mp3"):
        write_audio(tmp_path / "clip.mp3", torch.zeros(1, 100), 16000)
    with pytest.raises(RuntimeError, match="boom"), atomic_path(tmp_path / "half.wav") as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.wav"]


def test_python_callers_get_a_value_error_for_nan_prompts_and_melodies(tmp_path):
    from inference import MusicGen
    from tests.musicgen_oracle import save_tiny_melody_musicgen

    _, folder = save_tiny_melody_musicgen(tmp_path / "melody")
    mg = MusicGen.from_pretrained(folder, device="cpu")
    bad = tone(0.5, 800).clone()
    bad[0, 7] = math.nan
    with pytest.raises(ValueError, match="the melody holds 1 NaN"):
        mg.generate_with_chroma(["jazz"], bad, 800, duration=0.2)
    with pytest.raises(ValueError, match="the audio prompt holds 1 NaN"):
        mg.generate_continuation(bad, 800, ["jazz"], duration=1.0)

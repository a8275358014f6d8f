"""`generate.py --output -`: a WAV streamed to standard output (inference/wav_stream.py)."""

import io
import math
from pathlib import Path

import huggingface_hub.constants
import pytest
import soundfile
import torch

import generate
from inference.audio import to_db, true_peak
from inference.limiter import limit_true_peak
from inference.wav_stream import StreamingLimiter, pcm16, wav_header
from tests.musicgen_oracle import save_tiny_musicgen

RATE = 800  # the tiny checkpoint's sample rate


def test_the_header_and_samples_read_back_as_the_wav_soundfile_writes():
    audio = torch.rand(2, 1000, generator=torch.Generator().manual_seed(0)) * 2 - 1  # [C, N]
    data = wav_header(1000, 2, 32_000) + pcm16(audio[:, :300]) + pcm16(audio[:, 300:])
    read, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    assert rate == 32_000 and read.shape == (1000, 2)
    assert (torch.from_numpy(read).t() - audio).abs().max() <= 1.5 / 32767  # rounding, and read as x / 32768


def test_the_streamed_limiter_keeps_the_ceiling_and_matches_a_whole_clip():
    generator = torch.Generator().manual_seed(1)
    rate = 8000
    clip = 0.3 * torch.randn(1, 4 * rate, generator=generator)  # [C, N]
    clip[:, 5000:5040] *= 4  # peaks that pass a -1 dBFS ceiling
    clip[:, 17_000:17_010] *= 5
    limiter = StreamingLimiter(rate, -1.0)
    streamed = torch.cat([*(limiter.push(clip[:, s : s + 1000]) for s in range(0, clip.shape[-1], 1000)),
                          limiter.flush()], dim=-1)
    whole, reduction, _ = limit_true_peak(clip, rate, -1.0)
    assert streamed.shape == clip.shape and reduction > 3  # the limiter had work to do
    assert to_db(true_peak(streamed)) <= -1.0 + 0.01
    assert (streamed - whole).abs().max() < 1e-3  # the same gain curve, up to the context's edge


def test_a_header_too_large_for_wav_is_refused():
    with pytest.raises(ValueError, match="do not fit in a WAV file"):
        wav_header(2**31, 1, 32_000)


@pytest.fixture()
def tiny(tmp_path_factory, monkeypatch) -> Path:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    _, folder = save_tiny_musicgen(tmp_path_factory.mktemp("tiny"))
    return folder


class Stdout(io.TextIOWrapper):
    """A text stdout over bytes, as a terminal's or a pipe's (`sys.stdout.buffer` is where the WAV goes)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8")


def test_output_dash_streams_one_wav_to_stdout_and_all_text_to_stderr(tiny, monkeypatch, capsys):
    stdout = Stdout()
    monkeypatch.setattr("sys.stdout", stdout)
    code = generate.main(["jazz", "--model", str(tiny), "--duration", "0.6", "--seed", "4", "--output", "-"])
    err = capsys.readouterr().err
    assert code == 0, err
    stdout.flush()
    audio, rate = soundfile.read(io.BytesIO(stdout.buffer.getvalue()), dtype="float32")
    assert rate == RATE and audio.shape == (math.floor(0.6 * 50) * 16,)  # the header's length is the audio's
    assert "seed       4" in err and "streamed 0.60 s" in err
    assert not (Path.cwd() / "-").exists()


@pytest.mark.parametrize("extra, culprit", [(["funk"], "one prompt"), (["--spectrogram"], "--spectrogram"),
                                            (["--denoise"], "--denoise")])
def test_what_needs_the_whole_clip_is_refused_with_output_dash(tiny, monkeypatch, capsys, extra, culprit):
    monkeypatch.setattr("sys.stdout", Stdout())
    code = generate.main(["jazz", *extra, "--model", str(tiny), "--duration", "0.6", "--output", "-"])
    err = capsys.readouterr().err
    assert code == 1 and culprit in err and len(err.strip().splitlines()) == 1

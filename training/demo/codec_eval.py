"""How close a codec's output is to its input, with Opus at a low bitrate beside it.

    metrics = CodecMetrics(32000)
    metrics(estimate, reference)         # {"si_snr", "mel", "high_band_mel", "high_band_flatness"}, both [C, N]
    opus(wav, 6.0, tmp_folder, 32000)    # wav [C, N] through opusenc --bitrate 6 and opusdec
    excerpts(files, 8, seconds=8.0, sample_rate=32000)   # one excerpt from 40 % into each of 8 recordings

The measures (each named for what it is; no FAD or ViSQOL model can be had offline):
- SI-SNR (dB, 5 s frames, higher is better): how well the waveform itself is kept, phase included;
- log-mel L1 (log10 mel power, 64 bands from 64 Hz, lower is better): the codec training's metric;
- high-band L1: the same log-mel L1 over the mel bands centred above 4 kHz only;
- high-band flatness: spectral flatness (geometric over arithmetic mean of the power) of the bins above 4 kHz,
  per STFT frame, mean over the frames within 60 dB of the loudest; about 0.56 for white noise, near 0 for
  tones. A codec's hiss raises it above the original's.
Opus is Debian's opus-tools (`opusenc`, `opusdec`): `opus_available()` says whether they are installed.

Shape legend: C audio channels, N samples.
"""

import shutil
import subprocess
from pathlib import Path

import soundfile
import torch

from encodec.losses import MelL1Loss, si_snr_loss
from encodec.mel import mel_filter_bank
from training.audio_files import probe_audio, read_segment

HIGH_HZ = 4000.0
METRICS = ("si_snr", "mel", "high_band_mel", "high_band_flatness")


class CodecMetrics:
    """The four measures of an estimate against its reference, both [C, N] at `sample_rate`."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.mel = MelL1Loss(sample_rate)
        bank = mel_filter_bank(sample_rate, 1024, 64, 64.0)  # [M, F], MelL1Loss's bands
        centres = bank.argmax(dim=1) * sample_rate / 1024  # [M] Hz
        self.high = centres > HIGH_HZ

    def __call__(self, estimate: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        est, ref = estimate[None], reference[None]  # [1, C, N]
        log_est, log_ref = self.mel.mel(est), self.mel.mel(ref)  # [1, C * M, T] log10 mel power
        high = self.high.repeat(reference.shape[0])  # [C * M]
        return {"si_snr": -float(si_snr_loss(est, ref, self.sample_rate)),
                "mel": float((log_est - log_ref).abs().mean()),
                "high_band_mel": float((log_est[:, high] - log_ref[:, high]).abs().mean()),
                "high_band_flatness": flatness(estimate, self.sample_rate)}

    def mean(self, pairs) -> dict[str, float]:
        """The mean of each measure over (estimate, reference) pairs."""
        rows = [self(estimate, reference) for estimate, reference in pairs]
        return {name: sum(row[name] for row in rows) / len(rows) for name in METRICS}


def flatness(wav: torch.Tensor, sample_rate: int, n_fft: int = 2048) -> float:
    """Mean spectral flatness above HIGH_HZ of wav [C, N] (channel mean), over the frames within 60 dB of the
    loudest and above -100 dB (0 when there are none)."""
    spec = torch.stft(wav.float().mean(dim=0), n_fft, n_fft // 4, window=torch.hann_window(n_fft),
                      return_complex=True)
    power = spec.abs().pow(2)[torch.linspace(0, sample_rate / 2, n_fft // 2 + 1) > HIGH_HZ] + 1e-20  # [F_high, T]
    per_frame = power.log().mean(dim=0).exp() / power.mean(dim=0)  # [T]
    level = power.mean(dim=0)  # [T]
    loud = (level > level.max() * 1e-6) & (level > 1e-10)  # not digital silence (whose flatness would be 1)
    return float(per_frame[loud].mean()) if loud.any() else 0.0


def excerpts(files: list[Path], count: int, seconds: float, sample_rate: int) -> dict[str, torch.Tensor]:
    """{file stem: [1, N]}: one mono excerpt from 40 % into each of `count` files taken evenly from the sorted list."""
    files, n = sorted(files), min(count, len(files))
    picked = [files[round(i * (len(files) - 1) / max(1, n - 1))] for i in range(n)]
    clips = {}
    for path in dict.fromkeys(picked):
        audio = probe_audio(path)
        if audio is None:
            raise ValueError(f"cannot read {path}")
        clips[path.stem] = read_segment(audio, 0.4 * max(0.0, audio.duration - seconds), seconds, sample_rate, 1)
    return clips


def opus_available() -> bool:
    return shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


def opus(wav: torch.Tensor, kbps: float, folder: Path, sample_rate: int) -> torch.Tensor:
    """wav [C, N] through `opusenc --bitrate kbps` and `opusdec` at `sample_rate` (the decoder removes the
    pre-skip; `align` removes the resamplers' delay), in files under `folder`."""
    source, coded, decoded = folder / "in.wav", folder / "coded.opus", folder / "out.wav"
    soundfile.write(source, wav.T.numpy(), sample_rate, subtype="PCM_24")
    subprocess.run(["opusenc", "--quiet", "--bitrate", str(kbps), str(source), str(coded)], check=True)
    subprocess.run(["opusdec", "--quiet", "--rate", str(sample_rate), "--float", str(coded), str(decoded)],
                   check=True)
    data, _ = soundfile.read(decoded, dtype="float32", always_2d=True)  # [n, C]
    return align(torch.from_numpy(data.T.copy()), wav, max_lag=sample_rate // 100)  # [C, N]


def align(estimate: torch.Tensor, reference: torch.Tensor, max_lag: int) -> torch.Tensor:
    """estimate [C, N'] shifted by the lag (|lag| <= max_lag samples) that best correlates it with reference
    [C, N], cut or zero-padded to N. Opus's resamplers (32 -> 48 -> 32 kHz) leave a delay of 2-3 samples that
    opusdec's pre-skip does not remove; SI-SNR should measure the coding, not that latency."""
    N = reference.shape[-1]
    size = 2 * max(N, estimate.shape[-1])
    spectra = torch.fft.rfft(reference.mean(0), size) * torch.fft.rfft(estimate.mean(0), size).conj()
    correlation = torch.fft.irfft(spectra, size)  # [size]: correlation[k] = sum_n ref[n + k] est[n]
    lags = torch.cat([correlation[: max_lag + 1], correlation[-max_lag:]])  # lags 0..max_lag, -max_lag..-1
    lag = int(lags.argmax())
    lag = lag if lag <= max_lag else lag - len(lags)  # the estimate runs `-lag` samples late when lag < 0
    shifted = estimate[:, -lag:] if lag < 0 else torch.nn.functional.pad(estimate, (lag, 0))
    shifted = shifted[:, :N]
    return torch.nn.functional.pad(shifted, (0, N - shifted.shape[-1]))  # [C, N]

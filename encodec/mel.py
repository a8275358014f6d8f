"""Mel spectrograms from `torch.stft`, with a hand-written mel filter bank (no torchaudio).

audiocraft's spectral losses wrap `torchaudio.transforms.MelSpectrogram`, whose defaults are the HTK mel
scale (`mel = 2595 * log10(1 + f / 700)`) and **no** filter normalisation (`norm=None`): every triangle
peaks at 1. This equals `librosa.filters.mel(..., htk=True, norm=None)`, which the tests check.

`MelSpectrogram` reproduces audiocraft's `MelSpectrogramWrapper`: reflect-pad the signal by
`(n_fft - hop) // 2` on each side, zero-pad the tail so that the last frame is full, then an uncentred
STFT (`center=False`) with a periodic Hann window and power 2. An input of N samples gives
`ceil(N / hop)` frames.

Shape legend: B batch, C audio channels, N samples, T frames, F frequency bins (n_fft // 2 + 1),
M mel bands.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """HTK mel scale: Hz -> mel."""
    return 2595.0 * torch.log10(1.0 + freq / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """HTK mel scale: mel -> Hz (inverse of `hz_to_mel`)."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filter_bank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                    f_max: float | None = None) -> torch.Tensor:
    """Triangular mel filters on the HTK scale, unnormalised (each triangle peaks at 1).

    The M + 2 edge frequencies are equally spaced in mel between f_min and f_max; filter m rises linearly
    from edge m to edge m + 1 and falls back to 0 at edge m + 2. Computed in float64, returned in float32.

    Args:
        sample_rate: audio sample rate in Hz.
        n_fft: FFT size; the filters act on its F = n_fft // 2 + 1 non-negative frequency bins.
        n_mels: number of mel bands M.
        f_min: lowest edge in Hz.
        f_max: highest edge in Hz, default sample_rate / 2. (torchaudio uses `sample_rate // 2`: the same
            for every even sample rate.)
    Returns:
        [M, F] float32 weights, so that `filters @ power_spectrogram` maps [..., F, T] to [..., M, T].
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    bin_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # [F]
    mel_edges = torch.linspace(hz_to_mel(torch.tensor(f_min, dtype=torch.float64)).item(),
                               hz_to_mel(torch.tensor(f_max, dtype=torch.float64)).item(),
                               n_mels + 2, dtype=torch.float64)
    edges = mel_to_hz(mel_edges)  # [M + 2] in Hz
    widths = edges[1:] - edges[:-1]  # [M + 1]
    to_bin = bin_freqs[None, :] - edges[:, None]  # [M + 2, F], signed distance of each bin to each edge
    rising = to_bin[:-2] / widths[:-1, None]  # [M, F], 0 at the left edge, 1 at the centre
    falling = -to_bin[2:] / widths[1:, None]  # [M, F], 1 at the centre, 0 at the right edge
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def power_spectrogram(x: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor,
                      normalized: bool) -> torch.Tensor:
    """|STFT|^2 of an uncentred STFT (`center=False`: frame t covers samples [t * hop, t * hop + n_fft)).

    Args:
        x: [..., N] signal with N >= n_fft.
        n_fft: FFT size; the window is zero-padded to it when shorter.
        hop_length: hop between frames.
        window: [win_length] analysis window.
        normalized: divide the STFT by sqrt(sum(window^2)) (torchaudio's `normalized=True`).
    Returns:
        [..., F, T] power, T = (N - n_fft) // hop + 1.
    """
    *batch, N = x.shape
    spec = torch.stft(x.reshape(-1, N), n_fft, hop_length, window.shape[0], window,
                      center=False, return_complex=True)  # [prod(batch), F, T]
    if normalized:
        spec = spec / window.pow(2).sum().sqrt()
    power = spec.real.pow(2) + spec.imag.pow(2)
    return power.reshape(*batch, *power.shape[-2:])  # [..., F, T]


class MelSpectrogram(nn.Module):
    """Mel spectrogram with audiocraft's padding, optionally in log10.

    The window length always equals n_fft here (the only setting the EnCodec losses use).

    Args:
        sample_rate: audio sample rate in Hz.
        n_fft: FFT and window size.
        hop_length: hop between frames.
        n_mels: number of mel bands M.
        f_min, f_max: frequency range of the filters in Hz (f_max None = Nyquist).
        normalized: window-normalise the STFT (see `power_spectrogram`).
        log: return `log10(floor_level + mel)` instead of the linear mel power.
        floor_level: floor added before the log.
    """

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None, normalized: bool = False,
                 log: bool = False, floor_level: float = 1e-5):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.normalized = normalized
        self.log = log
        self.floor_level = floor_level
        # Constants, rebuilt at construction: kept out of the state dict.
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)  # periodic Hann
        self.register_buffer("filters", mel_filter_bank(sample_rate, n_fft, n_mels, f_min, f_max),
                             persistent=False)  # [M, F]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, C, N] audio, N > (n_fft - hop) // 2. Returns: [B, C * M, ceil(N / hop)]."""
        B, C, N = x.shape
        pad = (self.n_fft - self.hop_length) // 2
        x = F.pad(x, (pad, pad), mode="reflect")  # [B, C, N + 2 * pad]
        # Full last frame: zero-pad the tail so that the frames cover every sample (pad_for_conv1d).
        frames = math.ceil((x.shape[-1] - self.n_fft) / self.hop_length) + 1
        x = F.pad(x, (0, (frames - 1) * self.hop_length + self.n_fft - x.shape[-1]))  # [B, C, N']
        power = power_spectrogram(x, self.n_fft, self.hop_length, self.window, self.normalized)
        mel = self.filters @ power  # [B, C, M, F] @ [B, C, F, T] -> [B, C, M, T]
        if self.log:
            mel = torch.log10(self.floor_level + mel)
        return mel.reshape(B, -1, mel.shape[-1])  # [B, C * M, T]

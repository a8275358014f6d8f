"""Chroma features: the melody condition of the MusicGen melody models (MusicGen paper, section 2.3).

A chromagram folds the spectrum onto the 12 pitch classes (C, C#, ..., B), losing the octave and the timbre;
keeping only the loudest class of each frame (argmax, one-hot) leaves the melody line, which the model
cannot simply copy back into audio. audiocraft's settings: 2^14-point STFT, hop 2^12 (4096 samples, about
7.8 frames per second at 32 kHz), so 30 s give 235 frames.

The filter bank is librosa's `filters.chroma` (Ellis' chroma filters): each FFT bin contributes to each pitch
class through a Gaussian bump in log-frequency, weighted towards the octaves around C5.
"""

import torch
from torch import nn


def chroma_filter_bank(sample_rate: int, n_fft: int, n_chroma: int = 12, tuning: float = 0.0,
                       center_octave: float = 5.0, octave_width: float = 2.0) -> torch.Tensor:
    """Weights from FFT bins to pitch classes, [n_chroma, n_fft // 2 + 1], class 0 = C.

    Args:
        sample_rate, n_fft: of the STFT.
        n_chroma: pitch classes per octave.
        tuning: deviation from A440 in fractions of a chroma bin.
        center_octave, octave_width: the Gaussian octave weighting (centred on C5, two octaves wide).
    """
    freqs = torch.arange(1, n_fft, dtype=torch.float64) * sample_rate / n_fft  # every bin but 0 Hz
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    bins = n_chroma * torch.log2(freqs / (a440 / 16))  # position in chroma bins, from A0 = C1 - 3 semitones
    bins = torch.cat([bins[:1] - 1.5 * n_chroma, bins])  # 0 Hz: 1.5 octaves below the first bin
    widths = torch.cat([(bins[1:] - bins[:-1]).clamp(min=1.0), torch.ones(1)])  # [n_fft]
    half = round(n_chroma / 2)
    distance = bins[None, :] - torch.arange(n_chroma, dtype=torch.float64)[:, None]  # [n_chroma, n_fft]
    distance = torch.remainder(distance + half + 10 * n_chroma, n_chroma) - half  # wrapped to -6..6
    weights = torch.exp(-0.5 * (2 * distance / widths) ** 2)  # narrow Gaussian bumps
    weights = weights / weights.norm(dim=0, keepdim=True)  # each bin spreads unit (L2) energy
    octaves = bins / n_chroma
    weights = weights * torch.exp(-0.5 * ((octaves - center_octave) / octave_width) ** 2)
    weights = torch.roll(weights, -3 * (n_chroma // 12), dims=0)  # start at C, not A
    return weights[:, : n_fft // 2 + 1].float()


class ChromaExtractor(nn.Module):
    """Audio -> one-hot chroma frames (audiocraft `ChromaExtractor` with argmax, as the melody models use).

    Args:
        sample_rate: audio rate (32 kHz for MusicGen).
        n_fft: STFT size, also the window length (2^14).
        hop_length: STFT hop (n_fft // 4).
        n_chroma: pitch classes.
    Shapes: [B, C, N] (channels are averaged) -> [B, F, n_chroma] with F = N // hop_length + 1.
    """

    def __init__(self, sample_rate: int = 32_000, n_fft: int = 2**14, hop_length: int = 2**12, n_chroma: int = 12):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("filters", chroma_filter_bank(sample_rate, n_fft, n_chroma), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        mono = wav.float().mean(dim=1)  # [B, N]
        if mono.shape[-1] < self.n_fft:  # too short for one window: centre it in zeros
            pad = self.n_fft - mono.shape[-1]
            mono = torch.nn.functional.pad(mono, (pad // 2, pad - pad // 2))
        spec = torch.stft(mono, self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)  # [B, F_bins, T]
        power = spec.abs().pow(2) / self.window.pow(2).sum()  # window-normalised power
        chroma = torch.einsum("cf,bft->btc", self.filters, power)  # [B, T, n_chroma]
        chroma = chroma / chroma.amax(dim=-1, keepdim=True).clamp(min=1e-6)  # max-normalised per frame
        return nn.functional.one_hot(chroma.argmax(-1), chroma.shape[-1]).float()  # [B, T, n_chroma]


def null_chroma(batch: int, n_chroma: int = 12, device: torch.device | None = None) -> torch.Tensor:
    """The "no melody" condition: one frame of pitch class 0 (as transformers and audiocraft use), [B, 1, n_chroma]."""
    chroma = torch.zeros(batch, 1, n_chroma, device=device)
    chroma[..., 0] = 1
    return chroma


def chroma_frames(seconds: float, sample_rate: int = 32_000, hop_length: int = 2**12) -> int:
    """Frames of `seconds` of audio: 235 for 30 s at 32 kHz."""
    return int(seconds * sample_rate) // hop_length + 1 if seconds > 0 else 0


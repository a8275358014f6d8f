"""A post-filter for codec hiss: stationary spectral gating (the `noisereduce` library) against the clip's own
noise floor.

Spectral gating keeps a time-frequency bin when it stands out from the noise and turns it down otherwise.
`noisereduce` learns its threshold from a noise recording: per frequency bin, mean + 1.5 std of the noise's
dB spectrum. A generated clip comes without one, and its library default (the clip itself as the noise)
treats every held note as noise: it deletes a steady tone. So the noise recording is synthesised here:

    floor[f]    the 10th percentile over time of |STFT[f, t]|: what bin f falls to between notes
    smoothed    the median of floor over 1 kHz of neighbouring bins: hiss is broadband, a held partial is a few
                bins wide, so a partial that sounds through the whole clip is not taken for noise
    noise       Gaussian noise shaped to that spectrum (its 10th percentile per bin equals `smoothed`)

and the gate runs with almost no smoothing across frequency (one bin each side), so that a partial keeps
its gain instead of sharing that of the gated bins around it. `strength` is the gate's depth: gated bins
are scaled by 1 - strength (0.5: -6 dB).

On a 440 Hz tone with white noise at 11 dB SNR (tests/test_denoise.py, 16 kHz) it raises the SNR to 16 dB at
strength 0.5 and to 24 dB at 1, and it leaves the clean tone within -44 dB. On codec reconstructions of
held-out clips (bench/denoise.py, README "Benchmarks"): the demo codec trained without a discriminator hissed
(flatness above 4 kHz 0.16 on real recordings, originals 0.09), and the gate brought it to 0.11 at a cost in
log-mel L1 (0.94 -> 0.98); the demo codec whose decoder was then trained with the discriminator has no hiss left
(0.044), so the gate only takes music away (log-mel L1 0.91 -> 0.96). So `generate.py --denoise` is off by
default.
"""

import math

import numpy as np
import torch

DEFAULT_STRENGTH = 0.5  # the gate's depth that --denoise uses: gated bins at -6 dB
FLOOR_PERCENTILE = 0.1  # the noise floor per bin: this quantile of its magnitude over time
FLOOR_WIDTH_HZ = 1000.0  # median over this much spectrum: broadband hiss stays, narrow partials go
WINDOW_SECONDS = 0.064  # STFT window (2048 samples at 32 kHz): partials of notes a semitone apart resolve
TIME_SMOOTH_MS = 50.0  # the gate's mask is smoothed over +-50 ms (noisereduce's default)


def denoise(wav: torch.Tensor, sample_rate: int, strength: float = DEFAULT_STRENGTH) -> torch.Tensor:
    """Turn down the time-frequency bins of a clip that do not stand out from its broadband noise floor.

    Args:
        wav: [C, N] float audio.
        sample_rate: Hz.
        strength: in [0, 1]; gated bins are scaled by 1 - strength (0 returns the clip unchanged).
    Returns:
        [C, N] float32, the same length. Clips shorter than one STFT window come back unchanged.
    """
    import noisereduce

    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    C, N = wav.shape
    n_fft = stft_size(sample_rate)
    if strength == 0 or wav.shape[-1] < 2 * n_fft:  # too short for the noise floor to mean anything
        return wav.float()
    clip = wav.detach().float().cpu().numpy()  # [C, N]
    noise = floor_noise(wav.detach().float().cpu().mean(dim=0), sample_rate, n_fft)  # [N]
    cleaned = noisereduce.reduce_noise(
        y=clip, sr=sample_rate, stationary=True, y_noise=noise.numpy(), prop_decrease=strength,
        n_fft=n_fft, freq_mask_smooth_hz=1.01 * sample_rate / (n_fft / 2),  # one bin each side: the least allowed
        time_mask_smooth_ms=TIME_SMOOTH_MS)  # [C, N]
    return torch.from_numpy(np.ascontiguousarray(cleaned, dtype=np.float32)).reshape(C, N).to(wav.device)


def stft_size(sample_rate: int) -> int:
    """The STFT size: the power of two nearest WINDOW_SECONDS (2048 at 32 kHz), at least 64."""
    return max(64, 2 ** round(math.log2(sample_rate * WINDOW_SECONDS)))


def floor_noise(mono: torch.Tensor, sample_rate: int, n_fft: int, seed: int = 0) -> torch.Tensor:
    """Gaussian noise [N] with the broadband noise floor of mono [N] (see the module docstring); seeded, so
    that the same clip is always denoised the same way."""
    hop = n_fft // 4
    window = torch.hann_window(n_fft)
    magnitude = torch.stft(mono, n_fft, hop, window=window, return_complex=True).abs()  # [F, T]
    floor = torch.quantile(magnitude, FLOOR_PERCENTILE, dim=1)  # [F]
    width = max(1, round(FLOOR_WIDTH_HZ / (sample_rate / n_fft)) // 2 * 2 + 1)  # odd, in bins
    padded = torch.nn.functional.pad(floor[None, None], (width // 2, width // 2), mode="replicate")[0, 0]
    floor = padded.unfold(0, width, 1).median(dim=1).values  # [F]
    generator = torch.Generator().manual_seed(seed)
    white = torch.randn(mono.shape[-1], generator=generator)  # [N]
    spec = torch.stft(white, n_fft, hop, window=window, return_complex=True)  # [F, T], E|spec|^2 = sum(w^2)
    spec = spec / window.pow(2).sum().sqrt()  # unit power per bin: |spec| is Rayleigh, P(|spec| < r) = 1 - e^-r^2
    rayleigh_quantile = math.sqrt(-math.log(1 - FLOOR_PERCENTILE))  # that quantile of |spec|
    shaped = spec * (floor / rayleigh_quantile)[:, None]  # [F, T]: its quantile per bin is now `floor`
    return torch.istft(shaped, n_fft, hop, window=window, length=mono.shape[-1])  # [N]

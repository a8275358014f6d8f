"""Three simple descriptors of a music clip, to tell whether two prompts gave measurably different music.

- `onset_rate`: note or drum onsets per second, from peaks of the spectral flux (how much the log-magnitude
  spectrum rises from one frame to the next); high for fast music with drums, low for a slow piano.
- `spectral_centroid`: the magnitude-weighted mean frequency in Hz ("brightness").
- `low_band_share`: the share of the energy below `cutoff` Hz (kick drums and bass lines).
- `median_level`: the median RMS level of 0.1-s frames in dBFS; a clip of music sits near its peak most of the
  time, a near-silent bed with a few loud hits does not.

All take a mono or multi-channel clip wav [C, N] (channels are averaged) and return a float.
"""

import torch

N_FFT, HOP = 2048, 512


def _magnitude(wav: torch.Tensor) -> torch.Tensor:
    """|STFT| [F, frames] of the channel mean of wav [C, N] (Hann window, N_FFT, HOP)."""
    mono = wav.float().mean(dim=0)  # [N]
    window = torch.hann_window(N_FFT, device=mono.device)
    return torch.stft(mono, N_FFT, HOP, window=window, return_complex=True).abs()  # [F, frames]


def _frequencies(sample_rate: int, device: torch.device) -> torch.Tensor:
    return torch.linspace(0, sample_rate / 2, N_FFT // 2 + 1, device=device)  # [F]


def spectral_centroid(wav: torch.Tensor, sample_rate: int) -> float:
    """Magnitude-weighted mean frequency over the whole clip, in Hz (0 for silence)."""
    mag = _magnitude(wav)  # [F, frames]
    total = mag.sum()
    return float((_frequencies(sample_rate, mag.device)[:, None] * mag).sum() / total) if total > 0 else 0.0


def low_band_share(wav: torch.Tensor, sample_rate: int, cutoff: float = 150.0) -> float:
    """Share of the spectral energy below `cutoff` Hz, in [0, 1] (0 for silence)."""
    power = _magnitude(wav).pow(2).sum(dim=1)  # [F]
    total = power.sum()
    low = _frequencies(sample_rate, power.device) < cutoff
    return float(power[low].sum() / total) if total > 0 else 0.0


def onset_rate(wav: torch.Tensor, sample_rate: int, min_gap: float = 0.05, threshold: float = 1.0) -> float:
    """Onsets per second: local maxima of the spectral flux that stand out from the clip's flux.

    flux[t] = sum_f max(0, log(1 + 100 |X[f, t]|) - log(1 + 100 |X[f, t - 1]|)). A frame is an onset when its
    flux is the largest within +-`min_gap` seconds and exceeds mean + `threshold` * std of the clip's flux
    (and a floor, so that a silent clip or a steady tone has none).
    """
    log_mag = torch.log1p(100 * _magnitude(wav))  # [F, frames]
    flux = (log_mag[:, 1:] - log_mag[:, :-1]).clamp(min=0).sum(dim=0)  # [frames - 1]
    if flux.numel() < 3:
        return 0.0
    reach = max(1, round(min_gap * sample_rate / HOP))
    local_max = torch.nn.functional.max_pool1d(flux[None, None], 2 * reach + 1, stride=1, padding=reach)[0, 0]
    floor = 1e-3 * log_mag.shape[0]  # a rise of ~1e-3 per bin on average is no onset
    limit = torch.clamp(flux.mean() + threshold * flux.std(), min=floor)
    onsets = (flux == local_max) & (flux > limit)
    return float(onsets.sum()) / (wav.shape[-1] / sample_rate)


def median_level(wav: torch.Tensor, sample_rate: int, frame_seconds: float = 0.1) -> float:
    """Median over 0.1-s frames of the channel mean's RMS level, in dBFS (-180 for silence)."""
    mono = wav.float().mean(dim=0)  # [N]
    frame = max(1, round(frame_seconds * sample_rate))
    frames = mono[: mono.numel() // frame * frame].reshape(-1, frame)  # [frames, frame]
    if frames.numel() == 0:
        raise ValueError(f"a clip of {mono.numel()} samples is shorter than one {frame_seconds}-s frame")
    return float(20 * torch.log10(frames.pow(2).mean(dim=1).sqrt().median() + 1e-9))


def describe(wav: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """All three descriptors of wav [C, N]."""
    return {"onset_rate": onset_rate(wav, sample_rate), "spectral_centroid": spectral_centroid(wav, sample_rate),
            "low_band_share": low_band_share(wav, sample_rate)}

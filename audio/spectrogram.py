"""A clip's log-mel spectrogram (dB) as a picture: what `generate.py --spectrogram` draws next to each clip."""

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from audio.clip import atomic_path


def save_spectrogram(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int, title: str = "") -> Path:
    """Draw the log-mel spectrogram (dB) of a clip [C, N], one panel per channel, into a PNG (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        draw_spectrogram(wav, sample_rate, title).savefig(tmp, format="png", dpi=100)
    return path


def draw_spectrogram(wav: torch.Tensor, sample_rate: int, title: str = ""):
    """The log-mel spectrogram (dB) of a clip [C, N], one panel per channel, as a matplotlib Figure."""
    from matplotlib.figure import Figure  # not pyplot: no GUI backend, no global state

    from encodec.mel import mel_filter_bank

    wav = wav.detach().float().cpu()
    n_fft = 1 << max(6, round(math.log2(sample_rate * 0.064)))  # ~64 ms windows
    hop = n_fft // 4
    n_mels = min(128, n_fft // 4)
    padded = F.pad(wav, (0, max(0, n_fft - wav.shape[-1])))  # [C, max(N, n_fft)]: at least one full window
    spec = torch.stft(padded, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)  # [C, F, T]
    mel = mel_filter_bank(sample_rate, n_fft, n_mels) @ spec.abs().pow(2)  # [C, M, T]
    db = 10 * torch.log10(mel.clamp(min=1e-10))  # [C, M, T]
    db = db.clamp(min=db.max() - 80)  # an 80 dB range, as most spectrogram viewers
    channels = wav.shape[0]
    fig = Figure(figsize=(10, 3 * channels))
    axes = fig.subplots(channels, 1, squeeze=False)
    for c, ax in enumerate(axes[:, 0]):
        image = ax.imshow(db[c].numpy(), origin="lower", aspect="auto", cmap="magma",
                          extent=(0, padded.shape[-1] / sample_rate, 0, n_mels))
        ax.set_ylabel(f"mel band, channel {c}" if channels > 1 else "mel band")
        fig.colorbar(image, ax=ax, format="%+.0f dB")
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        axes[0, 0].set_title(title[:100])
    fig.tight_layout()
    return fig

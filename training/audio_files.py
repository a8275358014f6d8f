"""The audio files both training commands read: finding them, reading their headers, cutting segments.

    files = scan_audio_files("music/")            # wav / flac / ogg, recursive; unreadable ones skipped
    train, valid = split_files(files.readable, valid_fraction=0.1)
    read_segment(train[0], offset=2.0, seconds=1.0, sample_rate=32000, channels=1)   # [C, N] float32

Every segment is read at the file's own rate, mixed down or up to the model's channels, resampled with
julius (windowed-sinc) and padded with zeros or cropped to exactly N samples.

Shape legend: C audio channels, N samples.
"""

import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import julius
import soundfile as sf
import torch

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


class DataError(ValueError):
    """Training data that cannot train (no usable audio, a caption file that is not a caption, ...): the training
    commands end with this message in one line."""


@dataclass(frozen=True)
class AudioFile:
    """An audio file and what its header says."""

    path: str
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


@dataclass
class ScanResult:
    """The readable audio files under a folder, and the paths that were skipped (unreadable or empty)."""

    readable: list[AudioFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def scan_audio_files(root: str | Path) -> ScanResult:
    """Find the wav/flac/ogg files under `root` (recursively, sorted) and read their headers.

    A file soundfile cannot open, or one with no samples, is skipped with a warning and listed in `skipped`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root}")
    result = ScanResult()
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        audio = probe_audio(path)
        if audio is None:
            result.skipped.append(str(path))
        else:
            result.readable.append(audio)
    return result


def probe_audio(path: str | Path) -> AudioFile | None:
    """Read an audio file's header; None (with a warning) when soundfile cannot open it or it has no samples."""
    try:
        info = sf.info(str(path))
        if info.frames <= 0:
            raise ValueError("no samples")
    except Exception as err:  # libsndfile's errors have several types; any of them means "cannot use"
        warnings.warn(f"skipping unreadable audio file {path}: {err}", stacklevel=3)
        return None
    return AudioFile(str(path), info.samplerate, info.frames, info.channels)


def split_files(files: list[AudioFile], valid_fraction: float, seed: int = 0
                ) -> tuple[list[AudioFile], list[AudioFile]]:
    """Hold out a deterministic random share of the files for validation (at least one, when there are two).

    Returns:
        (train files, valid files); with a single file both are that file.
    """
    if len(files) < 2:
        return list(files), list(files)
    shuffled = list(files)
    random.Random(seed).shuffle(shuffled)
    n_valid = min(len(files) - 1, max(1, round(valid_fraction * len(files))))
    return shuffled[n_valid:], shuffled[:n_valid]


def convert_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """[C_in, N] -> [channels, N]: mono is the mean of all channels; mono to stereo repeats it; otherwise
    the first `channels` channels are kept (audiocraft's `convert_audio_channels`)."""
    if wav.shape[0] == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=0, keepdim=True)
    if wav.shape[0] == 1:
        return wav.expand(channels, -1)
    if wav.shape[0] >= channels:
        return wav[:channels]
    raise ValueError(f"cannot turn {wav.shape[0]} audio channels into {channels}")


def read_segment(file: AudioFile, offset: float, seconds: float, sample_rate: int, channels: int) -> torch.Tensor:
    """Read `seconds` of `file` from `offset` seconds on, at `sample_rate` with `channels` channels.

    Returns:
        [channels, round(seconds * sample_rate)] float32, zero-padded past the end of the file.
    """
    start = int(offset * file.sample_rate)
    frames = math.ceil(seconds * file.sample_rate)
    data, sr = sf.read(file.path, start=start, frames=frames, dtype="float32", always_2d=True)  # [n, C_in]
    wav = convert_channels(torch.from_numpy(data.T.copy()), channels)  # [C, n]
    if sr != sample_rate:
        wav = julius.resample_frac(wav, sr, sample_rate)  # [C, n * sample_rate / sr]
    N = round(seconds * sample_rate)
    if wav.shape[-1] < N:
        wav = torch.nn.functional.pad(wav, (0, N - wav.shape[-1]))
    return wav[:, :N].contiguous()  # [C, N]

"""Audio in and out of the pipeline: read, resample, convert channels, normalise, write.

(The true-peak limiter that loudness normalisation uses is `inference/limiter.py`; the spectrogram pictures
are `inference/spectrogram.py`.)

Every function takes and returns one clip as a float32 tensor [C, N] in [-1, 1] (C audio channels,
N samples), except `resample` and `convert_channels`, which also accept a leading batch [..., C, N].

Loudness is ITU-R BS.1770 integrated loudness (K-weighted, gated; pyloudnorm), in LUFS. The peak is a
"true peak" in the BS.1770 sense: the largest magnitude of the signal oversampled 4x, which catches the
inter-sample peaks that a DAC or an MP3 encoder turns into clipping.
"""

import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FORMATS = {".wav": "WAV", ".flac": "FLAC"}  # file extension -> soundfile format (16-bit PCM for both)
LOUDNESS_BLOCK_S = 0.4  # BS.1770 gating block: shorter audio has no integrated loudness
METER_MIN_RATE = 8000  # the K-weighting shelf sits at 1.7 kHz: below this rate we measure a 48 kHz copy
SILENCE_DBFS = -120.0  # a clip whose peak is below this is treated as silence and left as it is
MAX_LIMITING_DB = 10.0  # the limiter takes peaks down by at most this; a clip needing more stays quieter
LOUDNESS_TOLERANCE_LU = 1.0  # a result this close to the loudness target needs no note


class AudioFileError(ValueError):
    """An audio file that cannot be read or written (missing, unreadable, unknown format, empty)."""


def read_audio(path: str | os.PathLike, max_seconds: float | None = None) -> tuple[torch.Tensor, int]:
    """Read a sound file (WAV, FLAC, OGG, ... whatever libsndfile reads).

    Args:
        max_seconds: refuse longer files, from their header, before decoding anything.

    Returns:
        (wav [C, N] float32 in [-1, 1], sample rate in Hz). C is the file's channel count (1 mono, 2 stereo).
        AudioFileError (one line naming the file) when it is missing, unreadable, empty, too long, or holds
        NaN or infinite samples (a float WAV can): such a prompt would silently turn into garbage downstream.
    """
    import soundfile

    path = Path(path)
    seconds = audio_seconds(path)
    if max_seconds is not None and seconds > max_seconds:
        raise AudioFileError(f"{path} lasts {seconds:.1f} s, longer than the limit of {max_seconds:g} s")
    try:
        data, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # [N, C]
    except (soundfile.LibsndfileError, RuntimeError, OSError, MemoryError) as err:
        raise AudioFileError(f"cannot read {path} as audio: {str(err).strip() or type(err).__name__}") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path} holds no audio samples")
    if message := nonfinite_message(torch.from_numpy(data), str(path)):
        raise AudioFileError(message)
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sample_rate)  # [C, N]


def audio_seconds(path: str | os.PathLike) -> float:
    """The duration of a sound file from its header, without decoding it; AudioFileError when unreadable."""
    import soundfile

    path = Path(path)
    if path.is_dir():
        raise AudioFileError(f"{path} is a folder, not an audio file")
    if path.exists() and not path.is_file():  # a device (/dev/zero) or a FIFO would be read forever
        raise AudioFileError(f"{path} is not a regular file (a device, a pipe or a socket), not an audio file")
    if not path.is_file():
        raise AudioFileError(f"audio file not found: {path}")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioFileError(f"cannot read {path} as audio: {str(err).strip() or type(err).__name__}") from None
    if info.samplerate <= 0 or info.channels <= 0 or info.frames <= 0:
        raise AudioFileError(f"{path} holds no audio samples")
    return info.frames / info.samplerate


def check_finite(wav: torch.Tensor, name: str) -> None:
    """ValueError naming `name` when the audio holds NaN or infinite samples (they would silently turn the
    whole clip into garbage: a codec or chroma frame touched by one NaN is NaN)."""
    if message := nonfinite_message(wav, name):
        raise ValueError(message)


def nonfinite_message(wav: torch.Tensor, name: str) -> str | None:
    bad = (~torch.isfinite(wav)).sum().item()
    if not bad:
        return None
    return f"{name} holds {bad} NaN or infinite sample{'s' if bad > 1 else ''} (of {wav.numel()}): repair it"


def resample(wav: torch.Tensor, from_sr: int, to_sr: int) -> torch.Tensor:
    """Band-limited sinc resampling (julius) of [..., N] from `from_sr` to `to_sr` Hz.

    Returns [..., round(N * to_sr / from_sr)]; the input itself when the rates are equal.
    """
    import julius

    if int(from_sr) == int(to_sr):
        return wav
    return julius.resample_frac(wav, int(from_sr), int(to_sr))  # [..., N * to_sr / from_sr]


def convert_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """[..., C, N] -> [..., channels, N] (audiocraft's `convert_audio_channels` rule).

    Stereo to mono averages; mono to stereo copies; more channels than asked keeps the first ones.
    """
    have = wav.shape[-2]
    if have == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=-2, keepdim=True)  # [..., 1, N]
    if have == 1:
        return wav.expand(*wav.shape[:-2], channels, wav.shape[-1])  # [..., channels, N]
    if have > channels:
        return wav[..., :channels, :]
    raise ValueError(f"cannot turn {have} audio channels into {channels}")


def to_db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0 else -math.inf


def true_peak(wav: torch.Tensor) -> float:
    """Largest |sample| of the clip [C, N] oversampled 4x (the BS.1770 true-peak estimate), linear scale."""
    if wav.shape[-1] < 8:  # too short for the interpolation filter to mean anything
        return wav.abs().max().item()
    oversampled = resample(wav.float(), 1, 4)  # [C, 4N]
    return max(oversampled.abs().max().item(), wav.abs().max().item())


def long_enough_for_loudness(wav: torch.Tensor, sample_rate: int) -> bool:
    """The loudness meter needs at least one gating block (0.4 s) of audio."""
    return wav.shape[-1] >= LOUDNESS_BLOCK_S * sample_rate


def loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness (LUFS) of a clip [C, N]; -inf for silence. Needs at least 0.4 s of audio."""
    import pyloudnorm

    if not long_enough_for_loudness(wav, sample_rate):
        raise ValueError(f"loudness needs at least {LOUDNESS_BLOCK_S} s of audio")
    if sample_rate < METER_MIN_RATE:  # the filters would be unstable: measure a 48 kHz copy instead
        wav, sample_rate = resample(wav.float(), sample_rate, 48000), 48000
    data = wav.double().T.cpu().numpy()  # [N, C], pyloudnorm's layout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log10(0) of silent blocks
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(data))


@dataclass(frozen=True)
class Normalized:
    """A normalised clip and what was done to it.

    Attributes:
        wav: [C, N] the clip after the gain.
        method: what was applied: "loudness", "peak", or "none".
        gain_db: the gain applied.
        lufs: integrated loudness after the gain; None when the clip is too short to measure.
        peak_db: true peak after the gain, dBFS.
        note: why the result differs from what was asked (too short, silent, far from the loudness target);
            None otherwise.
        limited_db: the largest gain reduction of the true-peak limiter (0: not used).
    """

    wav: torch.Tensor
    method: str
    gain_db: float
    lufs: float | None
    peak_db: float
    note: str | None = None
    limited_db: float = 0.0


def normalize_peak(wav: torch.Tensor, sample_rate: int, peak_db: float = -1.0, note: str | None = None) -> Normalized:
    """Scale a clip [C, N] so its true peak is `peak_db` dBFS. Silence is left as it is."""
    peak = true_peak(wav)
    if to_db(peak) < SILENCE_DBFS:
        return Normalized(wav, "none", 0.0, None, to_db(peak), "silent audio: left as it is")
    gain_db = peak_db - to_db(peak)
    wav = wav * 10 ** (gain_db / 20)
    return Normalized(wav, "peak", gain_db, _measurable_loudness(wav, sample_rate), peak_db, note)


def normalize_loudness(wav: torch.Tensor, sample_rate: int, target_lufs: float = -14.0,
                       peak_db: float = -1.0) -> Normalized:
    """Bring a clip [C, N] to `target_lufs` integrated loudness, never letting its true peak exceed `peak_db`.

    A gain brings the clip to the target; the peaks that the gain pushes over `peak_db` are taken down by a
    look-ahead true-peak limiter (`inference/limiter.py`), by at most MAX_LIMITING_DB. Limiting lowers the
    loudness a little, so the gain is raised by what is missing and the clip limited again, until the target
    is met (within 0.05 LU). A clip whose peaks would need more limiting stays quieter than the target; `note`
    says so when it is more than LOUDNESS_TOLERANCE_LU away. Clips too short for the loudness meter (<= 0.4 s)
    or too quiet for its gate fall back to peak normalisation.
    """
    from inference.limiter import limit_true_peak

    if not long_enough_for_loudness(wav, sample_rate):
        return normalize_peak(wav, sample_rate, peak_db, f"shorter than {LOUDNESS_BLOCK_S} s, too short to "
                                                         "measure loudness: peak-normalised instead")
    before = loudness(wav, sample_rate)
    if not math.isfinite(before):
        return normalize_peak(wav, sample_rate, peak_db, "too quiet to measure loudness: peak-normalised instead")
    peak = to_db(true_peak(wav))
    gain_db = target_lufs - before
    for _ in range(4):
        gain_db = min(gain_db, peak_db + MAX_LIMITING_DB - peak)  # at most MAX_LIMITING_DB over the ceiling
        out, limited_db, peak_after = limit_true_peak(wav * 10 ** (gain_db / 20), sample_rate, peak_db)  # [C, N]
        lufs = loudness(out, sample_rate)
        if limited_db == 0 or abs(lufs - target_lufs) < 0.05 or gain_db >= peak_db + MAX_LIMITING_DB - peak:
            break
        gain_db += target_lufs - lufs  # limiting took some loudness away: give it back, limit again
    note = None
    if abs(lufs - target_lufs) > LOUDNESS_TOLERANCE_LU:
        note = (f"peak-limited to {peak_db:g} dBFS: {lufs:.1f} LUFS instead of {target_lufs:g} (the target needs "
                f"more than {MAX_LIMITING_DB:g} dB of peak limiting)")
    return Normalized(out, "loudness", gain_db, lufs, peak_after, note, limited_db)


def write_audio(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int) -> Path:
    """Write a clip [C, N] as 16-bit PCM, WAV or FLAC by the file's extension, atomically.

    The file is written under a temporary name in the same folder and renamed into place, so an interrupted
    write never leaves a half-written file under the real name. Samples are clipped to [-1, 1].
    AudioFileError (one line) when it cannot be written (a full disk, say).
    """
    import soundfile

    path = Path(path)
    fmt = audio_format(path)
    try:
        with atomic_path(path) as tmp:
            write_pcm16(tmp, wav, sample_rate, fmt)
    except (soundfile.LibsndfileError, OSError) as err:
        raise AudioFileError(write_error(path, err)) from None
    return path


def write_error(path: Path, err: Exception) -> str:
    """One line for a failed write. libsndfile says only "System error." when the disk is full: say more."""
    reason = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
    if not isinstance(err, OSError):
        try:
            if shutil.disk_usage(path.parent).free < 1 << 20:
                reason = "no space left on the disk"
        except OSError:
            pass
    return f"cannot write {path}: {reason}"


def write_pcm16(target: str | os.PathLike, wav: torch.Tensor, sample_rate: int, fmt: str) -> None:
    """Write a clip [C, N] into `target` (whatever its name) as 16-bit PCM in `fmt` ("WAV" or "FLAC")."""
    import soundfile

    data = wav.detach().float().clamp(-1, 1).T.cpu().numpy()  # [N, C]
    soundfile.write(str(target), data, int(sample_rate), subtype="PCM_16", format=fmt)


def audio_format(path: str | os.PathLike) -> str:
    """The soundfile format for a file name ("WAV" or "FLAC"); AudioFileError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise AudioFileError(f"cannot write {suffix or 'extension-less'} files ({Path(path).name}): "
                             f"use {' or '.join(FORMATS)}")
    return FORMATS[suffix]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """`with atomic_path(final) as tmp:` write to `tmp`; on success it is renamed to `final`, on error removed."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def temporary_name(path: Path) -> str:
    """A new empty hidden file next to `path` (".NAME.random.tmp", NAME cut short so that a long file name
    still leaves room, and kept to ASCII, which every library can pass on), with a normal new file's
    permissions."""
    name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in path.name[:40])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private
    return tmp


def _measurable_loudness(wav: torch.Tensor, sample_rate: int) -> float | None:
    if not long_enough_for_loudness(wav, sample_rate):
        return None
    value = loudness(wav, sample_rate)
    return value if math.isfinite(value) else None

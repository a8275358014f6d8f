"""A WAV file written while the audio is made: `generate.py --output -` streams one to standard output.

    python generate.py "lo-fi funk" --output - | aplay        (or `| ffplay -nodisp -`, `| sox -t wav - -d`)

The header is written first: its lengths are known before any audio exists, since `--duration` fixes the number
of samples (frames x hop). Then each chunk of `MusicGen.generate_stream` follows as 16-bit PCM.

Loudness normalisation needs the whole clip (BS.1770 integrates over all of it), so a stream cannot have it.
It plays the model's own level instead (as `--normalize none`), through the true-peak limiter of
inference/limiter.py, run over a sliding buffer: each chunk is limited together with the 0.5 s before it (what
the limiter's release still remembers: 60 dB/s) and holds back its last 20 ms (the limiter's 5 ms look-ahead
and its average, and the oversampling filter's reach) until the next chunk comes. The peaks stay under the
ceiling as in a whole clip; the gain differs from a whole clip's only where one gain reduction lasts longer than
the context.
"""

import struct

import torch

from inference.limiter import limit_true_peak

CONTEXT_S = 0.5  # audio before a chunk that the limiter reads again
HOLD_S = 0.02  # audio at the end of a chunk held back until the next one


def wav_header(num_samples: int, channels: int, sample_rate: int) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV file of `num_samples` samples per channel (RIFF, `fmt `, `data`)."""
    block = 2 * channels  # bytes per sample frame
    data = num_samples * block
    if data + 36 >= 2**32:
        raise ValueError(f"{num_samples} samples of {channels} channels do not fit in a WAV file (4 GiB)")
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * block, block, 16)  # PCM, 16 bit
    return b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", data)


def pcm16(audio: torch.Tensor) -> bytes:
    """Audio [C, n] in [-1, 1] -> interleaved little-endian 16-bit samples."""
    samples = (audio.clamp(-1, 1) * 32767).round().to(torch.int16)  # [C, n]
    return samples.t().contiguous().numpy().tobytes()  # [n, C]: one sample frame after another


class StreamingLimiter:
    """The true-peak limiter over a stream of chunks [C, n]: `push` each one, then `flush` the held-back end.

    Args:
        sample_rate: of the audio.
        ceiling_db: the true peak's ceiling in dBFS.
    """

    def __init__(self, sample_rate: int, ceiling_db: float) -> None:
        self.sample_rate, self.ceiling_db = sample_rate, ceiling_db
        self.context, self.hold = round(CONTEXT_S * sample_rate), round(HOLD_S * sample_rate)
        self.past: torch.Tensor | None = None  # [C, <= context] input already emitted, read again for context
        self.pending: torch.Tensor | None = None  # [C, <= hold + n] input not yet emitted

    def push(self, chunk: torch.Tensor, final: bool = False) -> torch.Tensor:
        """The limited audio [C, m] that is final now: the held-back part of the last chunk and most of this one."""
        chunk = chunk.float()
        parts = [p for p in (self.past, self.pending) if p is not None]
        x = torch.cat([*parts, chunk], dim=-1)  # [C, past + pending + n]
        start = 0 if self.past is None else self.past.shape[-1]
        end = x.shape[-1] if final else max(start, x.shape[-1] - self.hold)
        limited, _, _ = limit_true_peak(x, self.sample_rate, self.ceiling_db)  # [C, past + pending + n]
        self.past, self.pending = x[:, max(0, end - self.context) : end], x[:, end:]
        return limited[:, start:end]

    def flush(self) -> torch.Tensor:
        """The limited audio [C, m] held back at the end of the last chunk: the stream ends there."""
        return self.push(self.pending[:, :0], final=True)

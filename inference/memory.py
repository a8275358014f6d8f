"""Memory planning: how many prompts one batch can hold, and what cannot fit at all.

The memory of a generation is bounded by one window of the LM and one chunk of the codec, per prompt:

    per prompt   KV cache     rows x layers x 2 (keys, values) x dim x steps x bytes of the compute dtype
                              (rows: 2 with classifier-free guidance; steps: one window + the delays, + the
                              melody prefix of melody models)
                 prefill      rows x steps x (3 dim + ffn) x 4 bytes, + the attention scores (the first pass
                              reads the whole prompt of a window at once)
                 audio        C x N x 4 bytes (the decoded clip, float32) and its codes, K x T x 8 bytes
                 codec        one decode chunk's activations (inference/chunked.py): about
                              DECODER_BYTES x n_filters bytes per audio sample of the chunk and its context
                 encode       an audio prompt: its samples (float32), and one encode chunk's activations
                              (inference/chunked.py), about ENCODER_BYTES x n_filters bytes per sample of it
    per run      saving       one clip at a time: loudness at 48 kHz and the 4x oversampled true peak, about
                              SAVE_BYTES bytes per audio sample

What still grows with the length of a clip is its audio and saving it (the loudness meter and the true-peak
limiter read the whole clip): about 15 GB for an hour at 32 kHz. A clip that does not fit is refused before any
generation. On CUDA the plan is held against the GPU's free memory (saving, on the CPU, is counted there too).

The numbers are estimates (bench/chunked_decode.py measures the codec's), meant to choose a batch size with
room to spare, not to predict the peak to the megabyte.
"""

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the command line reads MAX_BATCH before torch loads
    import torch

DECODER_BYTES = 14  # measured: a whole decode on the published codec (64 filters) takes 28 MB per second more
ENCODER_BYTES = 18  # measured (bench/chunked_decode.py memory --encode --whole): a whole encode, 36 MB per second
SAVE_BYTES = 128  # measured: normalising (loudness) and writing a 60 s clip peaks 128 bytes per sample higher
USABLE = 0.5  # share of the available memory a run plans to use (the estimates are rough; the system needs room)
MAX_BATCH = 16  # a cap, so that the first clips are written early and a roomy machine is not filled


@dataclass(frozen=True)
class MemoryPlan:
    """What one prompt and one run need, in bytes, and the batch size that fits `available`."""

    kv_cache: int
    prefill: int
    audio: int
    codec: int
    saving: int
    available: int
    encode: int = 0

    @property
    def per_prompt(self) -> int:
        return self.kv_cache + self.prefill + self.audio + self.codec + self.encode

    @property
    def batch_size(self) -> int:
        """Prompts per batch: as many as fit in USABLE of the available memory, 1 to MAX_BATCH."""
        fits = (USABLE * self.available - self.saving) // self.per_prompt
        return int(min(MAX_BATCH, max(1, fits)))

    @property
    def fits(self) -> bool:
        """Whether one prompt fits in the available memory at all."""
        return self.per_prompt + self.saving <= self.available


def plan_memory(mg, num_frames: int, guided: bool, prompt_frames: int = 0,
                available: int | None = None) -> MemoryPlan:
    """The memory plan of generating clips of `num_frames` frames with `mg` (a MusicGen).

    Args:
        num_frames: T, frames of each clip (an audio prompt's included).
        guided: classifier-free guidance (two LM rows per prompt).
        prompt_frames: frames of an audio prompt (read by the first pass of the first window).
        available: bytes available on the model's device; default `available_memory(mg.device)`.
    """
    from inference.chunked import CHUNK_FRAMES, CONTEXT_FRAMES
    from inference.speed import compute_dtype

    config = mg.lm.config
    window = min(num_frames, math.floor(mg.max_duration * mg.frame_rate + 1e-6))
    prefix = 0 if config.cross_attention else config.chroma_length
    steps = window + max(config.delays) + 1 + prefix
    rows = 2 if guided else 1
    kv = rows * config.num_layers * 2 * config.dim * steps * compute_dtype(mg.lm).itemsize
    first = min(prompt_frames, window) + 1 + prefix  # steps of the first (prefill) pass
    prefill = rows * first * (3 * config.dim + config.ffn_dim) * 4 + rows * config.num_heads * first**2 * 4
    codec = mg.codec
    samples = num_frames * codec.hop_length * mg.audio_channels
    audio = samples * 4 + config.num_codebooks * num_frames * 8
    chunk = min(num_frames, CHUNK_FRAMES + 2 * CONTEXT_FRAMES) * codec.hop_length  # samples of one decode
    decode = DECODER_BYTES * codec.config.n_filters * chunk
    prompt_samples = prompt_frames * codec.hop_length  # per channel; a stereo model encodes each channel alone
    encode_chunk = min(prompt_samples, (CHUNK_FRAMES + 2 * CONTEXT_FRAMES) * codec.hop_length)
    encode = prompt_samples * mg.audio_channels * 4 + ENCODER_BYTES * codec.config.n_filters * encode_chunk
    return MemoryPlan(kv_cache=kv, prefill=prefill, audio=audio, codec=decode, saving=SAVE_BYTES * samples,
                      available=available if available is not None else available_memory(mg.device), encode=encode)


def available_memory(device: "torch.device") -> int:
    """Bytes that can still be allocated: free GPU memory on CUDA, else the system's MemAvailable (Linux) or,
    elsewhere, half the physical memory."""
    if device.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def size(n: float) -> str:
    """Bytes for people: "850 MB", "2.4 GB", "31 GB"."""
    return f"{n / 1e6:.0f} MB" if n < 1e9 else f"{n / 1e9:.1f} GB" if n < 10e9 else f"{n / 1e9:.0f} GB"

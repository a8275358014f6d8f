"""EnCodec configuration: one frozen dataclass, and the published models as named presets."""

import math
from dataclasses import dataclass, replace

from encodec.conv import NORMS


@dataclass(frozen=True)
class EncodecConfig:
    """Every number that shapes an EnCodec model. Defaults are MusicGen's 32 kHz codec.

    Attributes:
        sample_rate: audio rate in Hz.
        channels: audio channels C (1 mono, 2 stereo).
        dimension: latent width D, also the codebook vector size.
        n_filters: channels after the first conv; they double after each downsampling.
        ratios: up-sampling ratios in *decoder* order; their product is the hop (samples per frame).
        n_residual_layers: residual blocks per resolution (dilations 1, base, base^2, ...).
        kernel_size, last_kernel_size, residual_kernel_size: the first conv's, the last one's, the blocks'.
        dilation_base: dilation growth inside the residual blocks.
        compress: channel reduction inside a residual block's bottleneck.
        lstm_layers: layers of the LSTM after the encoder's convs and before the decoder's.
        true_skip: identity skip in residual blocks (else a 1x1 conv).
        causal: causal padding everywhere (the 24 kHz streaming codec).
        pad_mode: "reflect" or "constant"; the checkpoint's own config decides (see encodec/loading.py).
        norm: "weight_norm", "time_group_norm" or "none".
        trim_right_ratio: share of a causal transposed conv's trim taken on the right.
        n_q: number of residual codebooks K at the highest bandwidth.
        bins: codebook size V (the cardinality of a code).
        q_dropout: train with a random number of codebooks per batch (variable bandwidth).
        decay, epsilon, kmeans_iters, threshold_ema_dead_code: codebook training (EMA, Laplace smoothing,
            k-means initialisation, dead-code restart).
    """

    sample_rate: int = 32_000
    channels: int = 1
    dimension: int = 128
    n_filters: int = 64
    ratios: tuple[int, ...] = (8, 5, 4, 4)
    n_residual_layers: int = 1
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2
    lstm_layers: int = 2
    true_skip: bool = True
    causal: bool = False
    pad_mode: str = "reflect"
    norm: str = "weight_norm"
    trim_right_ratio: float = 1.0
    n_q: int = 4
    bins: int = 2048
    q_dropout: bool = False
    decay: float = 0.99
    epsilon: float = 1e-5
    kmeans_iters: int = 50
    threshold_ema_dead_code: float = 2.0

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.pad_mode not in ("reflect", "constant", "replicate"):
            raise ValueError(f"pad_mode must be 'reflect', 'constant' or 'replicate', got {self.pad_mode!r}")
        if self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {self.channels}")
        object.__setattr__(self, "ratios", tuple(int(r) for r in self.ratios))

    @property
    def hop_length(self) -> int:
        """Samples per latent frame: the product of the ratios (640 for MusicGen's codec)."""
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (50 for MusicGen's codec)."""
        return self.sample_rate / self.hop_length

    @property
    def bits_per_codebook(self) -> float:
        return math.log2(self.bins)

    @property
    def bandwidth(self) -> float:
        """kbps at n_q codebooks: n_q * log2(bins) * frame_rate / 1000 (2.2 for MusicGen's codec)."""
        return self.n_q * self.bits_per_codebook * self.frame_rate / 1000

    def num_codebooks_for_bandwidth(self, bandwidth: float) -> int:
        """The bandwidth -> codebook count rule: as many codebooks as fit in `bandwidth` kbps, at least 1.

        With frame rate 75 Hz and 1024 bins, one codebook costs 0.75 kbps: 6 kbps -> 8 codebooks.
        """
        if bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}")
        per_codebook = self.bits_per_codebook * self.frame_rate / 1000
        return min(self.n_q, max(1, math.floor(bandwidth / per_codebook + 1e-9)))


PRESETS: dict[str, EncodecConfig] = {
    # MusicGen's codec (audiocraft `encodec_large_nq4_s640`, HF `facebook/encodec_32khz`):
    # 4 x 2048 codes at 50 Hz = 2.2 kbps. pad_mode: audiocraft's training config says "constant", the HF
    # config (and so HF's implementation) uses "reflect"; a checkpoint's own config always wins.
    "encodec-32khz": EncodecConfig(),
    # The original streaming codec (`encodec_24khz`, HF `facebook/encodec_24khz`): causal, 1x1 conv
    # skips, 32 x 1024 codes at 75 Hz, trained with variable bandwidth 1.5 / 3 / 6 / 12 / 24 kbps.
    "encodec-24khz": EncodecConfig(
        sample_rate=24_000, n_filters=32, ratios=(8, 5, 4, 2), true_skip=False, causal=True,
        pad_mode="reflect", n_q=32, bins=1024, q_dropout=True,
    ),
}

BANDWIDTHS_24KHZ = (1.5, 3.0, 6.0, 12.0, 24.0)


def get_preset(name: str, **overrides) -> EncodecConfig:
    """A published config by name, optionally with some fields replaced (e.g. for tiny test models)."""
    if name not in PRESETS:
        raise ValueError(f"unknown EnCodec preset {name!r}; known presets: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)

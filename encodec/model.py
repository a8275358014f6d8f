"""EncodecModel: SEANet encoder -> residual vector quantizer -> SEANet decoder.

    audio [B, C, N] --encoder--> latents [B, D, T] --RVQ--> codes [B, K, T]
    codes [B, K, T] --RVQ lookup--> latents [B, D, T] --decoder--> audio [B, C, T * hop]

with T = ceil(N / hop). MusicGen's codec: C = 1, D = 128, K = 4 codebooks of V = 2048 codes, hop = 640
samples, so one second of 32 kHz audio is 50 frames of 4 codes.
"""

from dataclasses import dataclass

import torch
from torch import nn

from encodec.config import EncodecConfig
from encodec.inference import fold_weight_norm
from encodec.quantizer import ResidualVectorQuantizer
from encodec.seanet import SEANetDecoder, SEANetEncoder


@dataclass
class EncodecOutput:
    """Output of the training forward pass.

    Attributes:
        audio: [B, C, N] reconstruction, trimmed to the input length.
        codes: [B, K, T] codes used.
        commitment_loss: scalar, to be added to the training loss outside any loss balancer.
        bandwidth: kbps of the codebooks used in this pass.
    """

    audio: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    bandwidth: float


class EncodecModel(nn.Module):
    """The EnCodec neural audio codec (Défossez et al. 2022) without its training losses."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.config = config
        self.encoder = SEANetEncoder(config)
        self.decoder = SEANetDecoder(config)
        self.quantizer = ResidualVectorQuantizer(
            config.dimension, config.n_q, config.bins, q_dropout=config.q_dropout, frame_rate=config.frame_rate,
            decay=config.decay, epsilon=config.epsilon, kmeans_iters=config.kmeans_iters,
            threshold_ema_dead_code=config.threshold_ema_dead_code,
        )

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def num_codebooks(self) -> int:
        return self.config.n_q

    @property
    def cardinality(self) -> int:
        return self.config.bins

    def _check_audio(self, wav: torch.Tensor) -> None:
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise ValueError(f"expected audio of shape [B, {self.channels}, N], got {list(wav.shape)}")

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
        """Audio [B, C, N] in [-1, 1] at `sample_rate` -> codes [B, K, ceil(N / hop)] (int64).

        Args:
            wav: the waveform.
            bandwidth: target kbps; picks the number of codebooks K (all of them by default).
        """
        self._check_audio(wav)
        n_q = None if bandwidth is None else self.config.num_codebooks_for_bandwidth(bandwidth)
        return self.quantizer.encode(self.encoder(wav), n_q)  # [B, K, T]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T] -> audio [B, C, T * hop]. K may be fewer than `num_codebooks` (lower bandwidth)."""
        if codes.dim() != 3:
            raise ValueError(f"expected codes of shape [B, K, T], got {list(codes.shape)}")
        return self.decoder(self.quantizer.decode(codes))  # [B, C, T * hop]

    def forward(self, wav: torch.Tensor) -> EncodecOutput:
        """Training pass: reconstruct `wav` [B, C, N] through the quantizer (straight-through gradients)."""
        self._check_audio(wav)
        N = wav.shape[-1]
        latents = self.encoder(wav)  # [B, D, T]
        q = self.quantizer(latents)
        audio = self.decoder(q.quantized)[..., :N]  # [B, C, N], the tail padding removed
        return EncodecOutput(audio, q.codes, q.commitment_loss, q.bandwidth)

    def fold_weight_norm(self) -> "EncodecModel":
        """Fold weight norm into plain conv weights (same outputs, faster). For inference; returns self.

        `encodec.inference.prepare_codec_for_inference` does this and swaps in the faster modules too."""
        fold_weight_norm(self)
        return self

    @property
    def is_folded(self) -> bool:
        return not any(hasattr(m, "parametrizations") for m in self.modules())

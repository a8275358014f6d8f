"""SEANet encoder and decoder: the convolutional autoencoder around EnCodec's quantizer.

EnCodec paper (Défossez et al. 2022), section 3.1. The encoder is a stack of residual blocks and strided
convolutions that turns audio at `sample_rate` into `dimension`-sized latents at `sample_rate / hop`,
followed by a two-layer LSTM; the decoder mirrors it with transposed convolutions.

Encoder, for ratios (8, 5, 4, 4) given in *decoder* order (the encoder walks them reversed):

    conv k7 (C -> nf)
    [resblock, ELU, conv k=2r stride=r (m*nf -> 2m*nf)]   for r in 4, 4, 5, 8  (m doubles each time)
    LSTM (+ skip), ELU, conv k7 (16nf -> dimension)

`layers` is one flat ModuleList so that layer indices equal the published checkpoints' (`model.{i}`).
This file is the architecture as published; `encodec/inference.py` swaps in faster equivalents of some of
its modules (1x1 convs as matrix products, in-place activations) for inference.
"""

import torch
from torch import nn

from encodec.config import EncodecConfig
from encodec.conv import PaddedConv1d, PaddedConvTranspose1d


class ResidualBlock(nn.Module):
    """ELU -> dilated conv (dim -> dim / compress) -> ELU -> 1x1 conv (-> dim), plus a skip connection.

    The skip is the identity (`true_skip`, MusicGen's codec) or a 1x1 conv (the 24 kHz codec).
    `block` keeps the Sequential indices of the checkpoints: the convs sit at 1 and 3.
    """

    def __init__(self, config: EncodecConfig, dim: int, dilation: int):
        super().__init__()
        hidden = dim // config.compress
        conv = dict(causal=config.causal, pad_mode=config.pad_mode, norm=config.norm)
        self.block = nn.Sequential(
            nn.ELU(),
            PaddedConv1d(dim, hidden, config.residual_kernel_size, dilation=dilation, **conv),
            nn.ELU(),
            PaddedConv1d(hidden, dim, 1, **conv),
        )
        self.shortcut = nn.Identity() if config.true_skip else PaddedConv1d(dim, dim, 1, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)  # [B, dim, T]


LSTMState = tuple[torch.Tensor, torch.Tensor]  # nn.LSTM's (h, c), each [num_layers, B, D]


class LSTMBlock(nn.Module):
    """A unidirectional LSTM over time with a skip connection, in conv layout: [B, D, T] -> [B, D, T]."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0]

    def run(self, x: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """Like forward, from `state` (zeros when None); also returns the state after the last step, so that
        a sequence fed in pieces gives the same output as fed whole (streaming decoding)."""
        x = x.permute(2, 0, 1)  # [T, B, D], nn.LSTM's default layout
        y, state = self.lstm(x, state)
        return (y + x).permute(1, 2, 0), state  # [B, D, T]


def _down_blocks(config: EncodecConfig) -> list[nn.Module]:
    conv = dict(causal=config.causal, pad_mode=config.pad_mode, norm=config.norm)
    layers: list[nn.Module] = []
    mult = 1
    for ratio in reversed(config.ratios):
        dim = mult * config.n_filters
        layers += [ResidualBlock(config, dim, config.dilation_base**j) for j in range(config.n_residual_layers)]
        layers += [nn.ELU(), PaddedConv1d(dim, 2 * dim, 2 * ratio, stride=ratio, **conv)]
        mult *= 2
    return layers


def _up_blocks(config: EncodecConfig) -> list[nn.Module]:
    layers: list[nn.Module] = []
    mult = 2 ** len(config.ratios)
    for ratio in config.ratios:
        dim = mult * config.n_filters
        upsample = PaddedConvTranspose1d(dim, dim // 2, 2 * ratio, stride=ratio, causal=config.causal,
                                         norm=config.norm, trim_right_ratio=config.trim_right_ratio)
        layers += [nn.ELU(), upsample]
        layers += [ResidualBlock(config, dim // 2, config.dilation_base**j)
                   for j in range(config.n_residual_layers)]
        mult //= 2
    return layers


class SEANetEncoder(nn.Module):
    """Audio [B, C, N] -> latents [B, D, ceil(N / hop)]."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        conv = dict(causal=config.causal, pad_mode=config.pad_mode, norm=config.norm)
        width = 2 ** len(config.ratios) * config.n_filters
        self.layers = nn.ModuleList([
            PaddedConv1d(config.channels, config.n_filters, config.kernel_size, **conv),
            *_down_blocks(config),
            LSTMBlock(width, config.lstm_layers),
            nn.ELU(),
            PaddedConv1d(width, config.dimension, config.last_kernel_size, **conv),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x  # [B, D, T]


class SEANetDecoder(nn.Module):
    """Latents [B, D, T] -> audio [B, C, T * hop]."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        conv = dict(causal=config.causal, pad_mode=config.pad_mode, norm=config.norm)
        width = 2 ** len(config.ratios) * config.n_filters
        self.layers = nn.ModuleList([
            PaddedConv1d(config.dimension, width, config.kernel_size, **conv),
            LSTMBlock(width, config.lstm_layers),
            *_up_blocks(config),
            nn.ELU(),
            PaddedConv1d(config.n_filters, config.channels, config.last_kernel_size, **conv),
        ])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            z = layer(z)
        return z  # [B, C, T * hop]

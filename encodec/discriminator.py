"""Multi-scale STFT discriminator (MS-STFTD), the adversary of EnCodec (paper section 3.4, figure 4).

Each sub-discriminator looks at one complex STFT of the audio (real and imaginary parts stacked as
channels) through a small 2-D conv net over (time, frequency): a first conv, three convs that halve the
frequency axis while dilating in time by 1, 2, 4, a last 3x3 conv, and a 3x3 projection to one logit per
(time, frequency) cell. The activations after each conv but the projection are its feature maps, used by
the feature-matching loss. Five scales (n_fft 2048 ... 128) see different time/frequency trade-offs.

Shape legend: B batch, C audio channels, N samples, T STFT frames, F frequency bins (n_fft // 2 + 1).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _same_padding(kernel_size: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """Padding that keeps the size of a stride-1 conv (odd kernels)."""
    return ((kernel_size[0] - 1) * dilation[0] // 2, (kernel_size[1] - 1) * dilation[1] // 2)


class STFTDiscriminator(nn.Module):
    """One scale of the MS-STFT discriminator.

    Args:
        filters: channels of every hidden conv (audiocraft's `filters_scale` growth is fixed to 1, the
            published setting, so all hidden convs have `filters` channels).
        in_channels: audio channels C; the net sees 2C spectrogram channels (real, imag).
        n_fft, hop_length, win_length: the STFT (periodic Hann window, `center=False`).
        kernel_size: (time, frequency) kernel of the first four convs; the last two use (k0, k0).
        stride: (time, frequency) stride of the three dilated convs.
        dilations: time dilations of those convs.
        negative_slope: LeakyReLU slope (paper and class default 0.2; audiocraft's solver config 0.3).
        normalized: divide the STFT by sqrt(sum(window^2)), as torchaudio's `normalized=True`.
    """

    def __init__(self, filters: int = 32, in_channels: int = 1, n_fft: int = 1024, hop_length: int = 256,
                 win_length: int = 1024, kernel_size: tuple[int, int] = (3, 9),
                 stride: tuple[int, int] = (1, 2), dilations: Sequence[int] = (1, 2, 4),
                 negative_slope: float = 0.2, normalized: bool = True):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.negative_slope, self.normalized = negative_slope, normalized
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        square = (kernel_size[0], kernel_size[0])
        # Reference quirk kept: the first conv has no weight norm (audiocraft's NormConv2d default is 'none').
        convs = [nn.Conv2d(2 * in_channels, filters, kernel_size, padding=_same_padding(kernel_size))]
        for d in dilations:
            convs.append(weight_norm(nn.Conv2d(filters, filters, kernel_size, stride, dilation=(d, 1),
                                               padding=_same_padding(kernel_size, (d, 1)))))
        convs.append(weight_norm(nn.Conv2d(filters, filters, square, padding=_same_padding(square))))
        self.convs = nn.ModuleList(convs)
        self.conv_post = weight_norm(nn.Conv2d(filters, 1, square, padding=_same_padding(square)))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, C, N], N >= n_fft. Returns: [B, 2C, T, F], real parts then imaginary parts."""
        B, C, N = x.shape
        spec = torch.stft(x.reshape(B * C, N), self.n_fft, self.hop_length, self.window.shape[0],
                          self.window, center=False, return_complex=True)  # [B * C, F, T]
        if self.normalized:
            spec = spec / self.window.pow(2).sum().sqrt()
        spec = spec.reshape(B, C, *spec.shape[-2:])  # [B, C, F, T]
        z = torch.cat([spec.real, spec.imag], dim=1)  # [B, 2C, F, T]
        return z.transpose(2, 3)  # [B, 2C, T, F]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Args: x [B, C, N] audio, N >= n_fft.

        Returns:
            logits [B, 1, T, F'] (F' = F halved three times, rounding up) and the 5 feature maps
            [B, filters, T, F_l], each taken after a conv and its LeakyReLU.
        """
        z = self.spectrogram(x)  # [B, 2C, T, F]
        fmaps = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), self.negative_slope)  # [B, filters, T, F_l]
            fmaps.append(z)
        return self.conv_post(z), fmaps  # logits [B, 1, T, F']


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's MS-STFT discriminator: one `STFTDiscriminator` per STFT resolution.

    Defaults are the published ones (EnCodec / audiocraft config `msstftd`): 32 filters and the five
    resolutions n_fft 1024, 2048, 512, 256, 128 with hop n_fft / 4 and window n_fft.

    Args:
        filters, in_channels, negative_slope: passed to every scale.
        n_ffts, hop_lengths, win_lengths: one entry per scale.
    """

    def __init__(self, filters: int = 32, in_channels: int = 1,
                 n_ffts: Sequence[int] = (1024, 2048, 512, 256, 128),
                 hop_lengths: Sequence[int] = (256, 512, 128, 64, 32),
                 win_lengths: Sequence[int] = (1024, 2048, 512, 256, 128), negative_slope: float = 0.2):
        super().__init__()
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(filters, in_channels, n_fft, hop, win, negative_slope=negative_slope)
            for n_fft, hop, win in zip(n_ffts, hop_lengths, win_lengths, strict=True)
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Args: x [B, C, N] audio, N >= max(n_ffts).

        Returns:
            (logits, fmaps): one [B, 1, T_k, F_k] logit map per scale k, and per scale its list of
            feature maps.
        """
        logits, fmaps = [], []
        for disc in self.discriminators:
            logit, fmap = disc(x)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps

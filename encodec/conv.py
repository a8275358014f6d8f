"""Padded 1-D convolutions: the building blocks of the SEANet encoder and decoder.

EnCodec pads every convolution itself instead of relying on `nn.Conv1d(padding=...)`, for two reasons:

1. *Causality.* A causal conv puts all its padding on the left, so output frame t sees inputs <= t only.
   A non-causal conv splits it, with the extra sample (for odd totals) on the left.
2. *Exact frame counts.* A strided conv drops the input's tail when `(length - kernel) % stride != 0`.
   We add just enough zeros on the right so that the last window is complete; then an encoder of total
   stride `hop` turns N samples into exactly `ceil(N / hop)` frames, and the decoder gives back
   `frames * hop` samples, which the model trims to N.

Norms (`norm=`): "weight_norm" (w = g * v / ||v||, g per output channel, or per *input* channel for a
transposed conv, as torch's `weight_norm(dim=0)` does), "time_group_norm" (GroupNorm(1, C) after the conv,
used by the 48 kHz model), or "none".
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

NORMS = ("weight_norm", "time_group_norm", "none")


def pad1d(x: torch.Tensor, paddings: tuple[int, int], mode: str = "constant", value: float = 0.0) -> torch.Tensor:
    """`F.pad` on the last axis that also allows reflect padding wider than the input.

    Reflect padding needs `pad < length`; for shorter inputs we first append zeros on the right, reflect,
    then cut those zeros off again (the reference implementations do the same).

    Args:
        x: [..., T] signal.
        paddings: (left, right), both >= 0.
        mode: "constant", "reflect" or "replicate".
    Returns:
        [..., left + T + right]
    """
    left, right = paddings
    if left < 0 or right < 0:
        raise ValueError(f"paddings must be non-negative, got {paddings}")
    if left == right == 0:
        return x
    if mode != "reflect":
        return F.pad(x, paddings, mode, value)
    extra = max(0, max(left, right) - x.shape[-1] + 1)
    if extra == 0:
        return F.pad(x, paddings, mode)
    padded = F.pad(F.pad(x, (0, extra)), paddings, mode)
    return padded[..., : padded.shape[-1] - extra]


def unpad1d(x: torch.Tensor, paddings: tuple[int, int]) -> torch.Tensor:
    """Remove (left, right) samples from the last axis of x: [..., T] -> [..., T - left - right]."""
    left, right = paddings
    if left < 0 or right < 0 or left + right > x.shape[-1]:
        raise ValueError(f"cannot unpad {paddings} from a signal of length {x.shape[-1]}")
    return x[..., left : x.shape[-1] - right]


def extra_padding_for_conv1d(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Zeros to append on the right so that a strided conv covers the whole input.

    Worked example: length 5, kernel 4, stride 2, padding_total 2. Without extra padding the conv sees
    7 samples and emits frames starting at 0, 2 (a window at 4 would need 8 samples): the last input
    sample is only partly covered. n_frames = (5 - 4 + 2) / 2 + 1 = 2.5 -> 3 frames, which need
    (3 - 1) * 2 + 4 - 2 = 6 input samples: 1 extra zero.
    """
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def _apply_norm(conv: nn.Module, norm: str, channels: int) -> tuple[nn.Module, nn.Module]:
    """Wrap `conv` with weight norm, or return a GroupNorm to apply after it."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}, expected one of {NORMS}")
    if norm == "weight_norm":
        conv = parametrizations.weight_norm(conv, dim=0)
    post = nn.GroupNorm(1, channels) if norm == "time_group_norm" else nn.Identity()
    return conv, post


class PaddedConv1d(nn.Module):
    """Conv1d that pads its input itself: causally or centred, plus the tail padding for exact frames.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation: as `nn.Conv1d`.
        causal: all padding on the left (streaming-friendly) instead of split around the signal.
        pad_mode: "reflect" or "constant" (zeros), the mode of the fixed padding. The tail padding that
            completes the last window uses the same mode, as in the reference.
        norm: "weight_norm", "time_group_norm" or "none".
    Shapes: [B, C_in, T] -> [B, C_out, ceil(T / stride)].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, causal: bool = False, pad_mode: str = "reflect", norm: str = "weight_norm"):
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        self.conv, self.norm = _apply_norm(conv, norm, out_channels)
        self.causal = causal
        self.pad_mode = pad_mode
        self.stride = stride
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.padding_total = self.effective_kernel - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.pad(x)))  # [B, C_out, ceil(T / stride)]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, T] -> [B, C_in, T'], padded so that the conv gives ceil(T / stride) frames."""
        extra = extra_padding_for_conv1d(x.shape[-1], self.effective_kernel, self.stride, self.padding_total)
        if self.causal:
            left, right = self.padding_total, 0
        else:
            right = self.padding_total // 2
            left = self.padding_total - right  # the odd sample goes left
        return pad1d(x, (left, right + extra), self.pad_mode)  # [B, C_in, T']


class PaddedConvTranspose1d(nn.Module):
    """ConvTranspose1d that trims its own output so that T frames give exactly T * stride samples.

    A transposed conv of kernel k and stride s emits (T - 1) * s + k samples; we cut `k - s` of them:
    all on the right when causal (or the fraction `trim_right_ratio`), split otherwise. The right
    padding added by the encoder's `extra_padding_for_conv1d` is not removed here but by the model,
    which trims the decoded signal to the input length.

    Shapes: [B, C_in, T] -> [B, C_out, T * stride].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 causal: bool = False, norm: str = "weight_norm", trim_right_ratio: float = 1.0):
        super().__init__()
        if not causal and trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio != 1.0 only makes sense for causal convolutions")
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        self.conv, self.norm = _apply_norm(conv, norm, out_channels)
        padding_total = kernel_size - stride
        right = math.ceil(padding_total * trim_right_ratio) if causal else padding_total // 2
        self.trim = (padding_total - right, right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))  # [B, C_out, (T - 1) * stride + kernel]
        return unpad1d(y, self.trim)  # [B, C_out, T * stride]

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
from torch.nn.utils import parametrizations, parametrize

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


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrization below `module` by the plain weight g * v / ||v||.

    The result computes the same function without re-normalising the weight at every call: this is the
    inference form (weight-norm folding). Returns `module` for chaining.
    """
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
    return module


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
        return self.convolve(self.pad(x))  # [B, C_out, ceil(T / stride)]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, T] -> [B, C_in, T'] padded for `convolve` (x itself when no padding is needed)."""
        extra = extra_padding_for_conv1d(x.shape[-1], self.effective_kernel, self.stride, self.padding_total)
        if self.causal:
            left, right = self.padding_total, 0
        else:
            right = self.padding_total // 2
            left = self.padding_total - right  # the odd sample goes left
        return pad1d(x, (left, right + extra), self.pad_mode)  # [B, C_in, T']

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution (and norm) of an already padded input: [B, C_in, T'] -> [B, C_out, T_out]."""
        if self.effective_kernel == 1 and self.stride == 1:  # 1x1 conv: the faster equivalent
            return self.norm(pointwise_conv1d(x, self.conv.weight, self.conv.bias))
        return self.norm(self.conv(x))


def pointwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution as the matrix product it is: [B, C_in, T] -> [B, C_out, T].

    Same result as `F.conv1d(x, weight, bias)` up to float rounding; on CPU torch's convolution path takes
    about twice as long for these shapes (bench/codec.py).
    """
    w = weight[:, :, 0]  # [C_out, C_in]
    if x.shape[0] == 1 and bias is not None:
        return torch.addmm(bias[:, None], w, x[0])[None]  # [1, C_out, T]
    y = torch.matmul(w, x)  # [B, C_out, T]
    return y if bias is None else y + bias[:, None]


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
        conv = self.conv
        if conv.kernel_size[0] == 2 * conv.stride[0]:  # every EnCodec model: the faster equivalent
            y = conv_transpose1d_two_taps(x, conv.weight, conv.bias, conv.stride[0])
        else:
            y = conv(x)
        y = self.norm(y)  # [B, C_out, (T - 1) * stride + kernel]
        return unpad1d(y, self.trim)  # [B, C_out, T * stride]


def conv_transpose1d_two_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                              stride: int) -> torch.Tensor:
    """`F.conv_transpose1d(x, weight, bias, stride)` for kernel = 2 * stride, as a 2-tap conv plus an interleave.

    Output sample n * s + p receives x[n] through tap p and x[n - 1] through tap s + p, and nothing else.
    So one ordinary conv over the pairs [x[n - 1], x[n]] with s * C_out output channels computes all s phases
    at once; interleaving the phases gives the output. The result is the same up to float rounding, without the
    transposed conv's scatter-add (col2im): faster on CPU (bench/codec.py).

    Args:
        x: [B, C_in, T]; weight: [C_in, C_out, 2s] (transposed-conv layout); bias: [C_out] or None.
    Returns:
        [B, C_out, (T + 1) * s], i.e. (T - 1) * s + k samples.
    """
    C_in, C_out, _ = weight.shape
    s = stride
    taps = torch.stack([weight[:, :, s:], weight[:, :, :s]], dim=-1)  # [C_in, C_out, s, 2]: for x[n-1], x[n]
    taps = taps.permute(1, 2, 0, 3).reshape(C_out * s, C_in, 2)  # [C_out * s, C_in, 2]
    phase_bias = None if bias is None else bias.repeat_interleave(s)  # [C_out * s]
    y = F.conv1d(x, taps, phase_bias, padding=1)  # [B, C_out * s, T + 1]
    B, _, T1 = y.shape
    return y.view(B, C_out, s, T1).transpose(2, 3).reshape(B, C_out, T1 * s)  # [B, C_out, (T + 1) * s]

"""The codec's inference form: weight norm folded, and faster equivalents of some modules swapped in, in place.

`encodec/conv.py` and `encodec/seanet.py` are the architecture as published. For inference,
`prepare_codec_for_inference(codec)` transforms that one model at the call site (as gpt-fast swaps int8
linears into its model): no second copy of the weights, the same parameter names (state dicts and exports
are unchanged), the same function up to float rounding. What it does, each measured on CPU by
`bench/codec.py` and checked against transformers by `tests/test_encodec_parity.py`:

1. *Weight-norm folding*: w = g * v / ||v|| computed once instead of at every call.
2. *1x1 convs as matrix products*: torch's convolution path takes about twice as long for these shapes.
3. *Transposed convs of kernel 2 * stride as a 2-tap conv plus an interleave*: every EnCodec upsampling
   layer has this shape, and the ordinary conv avoids the transposed conv's scatter-add (col2im).
4. *In-place activations*: an ELU whose input is a temporary overwrites it. In a residual block the first
   ELU runs after the padding, on the padded copy (padding only copies samples, so the two commute), which
   leaves the block's input intact for the skip connection. On CPU, writing into fresh memory costs as much
   as the ELU itself.
"""

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from encodec.conv import PaddedConv1d, PaddedConvTranspose1d, unpad1d
from encodec.seanet import ResidualBlock

if TYPE_CHECKING:  # encodec/model.py imports this file (for `fold_weight_norm`)
    from encodec.model import EncodecModel


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrization below `module` by the plain weight g * v / ||v||.

    The result computes the same function without re-normalising the weight at every call: this is the
    inference form (weight-norm folding). Returns `module` for chaining.
    """
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
    return module


def prepare_codec_for_inference(codec: "EncodecModel") -> "EncodecModel":
    """Fold weight norm and swap in the faster equivalents listed above, in place. Returns `codec` in eval mode.

    After this the codec is for inference only (its weights no longer carry weight norm's g and v).
    """
    fold_weight_norm(codec)
    _replace_children(codec, _fast_conv)  # first the convs, which the residual blocks then reuse
    _replace_children(codec, _fast_block)
    for layers in (codec.encoder.layers, codec.decoder.layers):
        for layer in layers:  # the input of every top-level ELU is the previous layer's fresh output
            if isinstance(layer, nn.ELU):
                layer.inplace = True
    return codec.eval()


def _replace_children(root: nn.Module, replacement) -> None:
    """Set every child `c` of every module below `root` to `replacement(c)` where that is not None."""
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if (new := replacement(child)) is not None:
                setattr(parent, name, new)


def _fast_conv(module: nn.Module) -> nn.Module | None:
    if isinstance(module, PaddedConv1d) and module.effective_kernel == 1 and module.stride == 1:
        return PointwiseConv1d(module)
    if isinstance(module, PaddedConvTranspose1d) and module.conv.kernel_size[0] == 2 * module.conv.stride[0]:
        return TwoTapConvTranspose1d(module)
    return None


def _fast_block(module: nn.Module) -> nn.Module | None:
    return InPlaceResidualBlock(module) if isinstance(module, ResidualBlock) else None


class PointwiseConv1d(nn.Module):
    """A 1x1 `PaddedConv1d` (no padding needed) computed as the matrix product it is: [B, C_in, T] -> [B, C_out, T].

    Takes over the original's `conv` and `norm` (same parameters, same names).
    """

    def __init__(self, padded: PaddedConv1d):
        super().__init__()
        self.conv, self.norm = padded.conv, padded.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(pointwise_conv1d(x, self.conv.weight, self.conv.bias))  # [B, C_out, T]


def pointwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.conv1d(x, weight, bias)` for a kernel of size 1, as a matrix product: [B, C_in, T] -> [B, C_out, T]."""
    w = weight[:, :, 0]  # [C_out, C_in]
    if x.shape[0] == 1 and bias is not None:
        return torch.addmm(bias[:, None], w, x[0])[None]  # [1, C_out, T]
    y = torch.matmul(w, x)  # [B, C_out, T]
    return y if bias is None else y + bias[:, None]


class TwoTapConvTranspose1d(nn.Module):
    """A `PaddedConvTranspose1d` of kernel 2 * stride computed by `conv_transpose1d_two_taps`.

    Takes over the original's `conv`, `norm` and trim. Shapes: [B, C_in, T] -> [B, C_out, T * stride].
    """

    def __init__(self, padded: PaddedConvTranspose1d):
        super().__init__()
        self.conv, self.norm, self.trim = padded.conv, padded.norm, padded.trim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        y = self.norm(conv_transpose1d_two_taps(x, conv.weight, conv.bias, conv.stride[0]))  # [B, C_out, (T+1)s]
        return unpad1d(y, self.trim)  # [B, C_out, T * stride]


def conv_transpose1d_two_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                              stride: int) -> torch.Tensor:
    """`F.conv_transpose1d(x, weight, bias, stride)` for kernel = 2 * stride, as a 2-tap conv plus an interleave.

    Output sample n * s + p receives x[n] through tap p and x[n - 1] through tap s + p, and nothing else.
    So one ordinary conv over the pairs [x[n - 1], x[n]] with s * C_out output channels computes all s phases
    at once; interleaving the phases gives the output.

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


class InPlaceResidualBlock(nn.Module):
    """A `ResidualBlock` whose activations overwrite temporaries. Takes over its `block` and `shortcut`."""

    def __init__(self, residual: ResidualBlock):
        super().__init__()
        self.block, self.shortcut = residual.block, residual.shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.block[1]
        padded = first.pad(x)  # [B, dim, T']: a copy of x (the dilated conv always pads)
        h = first.norm(first.conv(F.elu(padded) if padded is x else F.elu_(padded)))  # [B, dim / compress, T]
        h = self.block[3](F.elu_(h))  # [B, dim, T]
        return h.add_(self.shortcut(x))

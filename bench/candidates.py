"""Speed transforms measured by the benches but not offered: each fails the quality bar or the speed it promised.

The quality bar of a default (issue 22): teacher-forced top-1 agreement with float32 >= 95% and cross-entropy
+1% at most, on the demo model's held-out tokens and on random weights of the published shape
(bench/int8_quality.py). What passed moved into inference/speed.py; what is here says why it did not.

- `int8 heads`: `quantize_int8` and the output heads in int8 too.
- `int8-bf16`: int8 weights and heads, and the residual stream, norms and embeddings in bfloat16.
- `int4`: weight-only int4 in groups of `group` inputs (asymmetric, one bfloat16 scale and zero per group),
  `aten._weight_int4pack_mm_for_cpu` with bfloat16 activations: an eighth of float32's bytes.
- `int8-dyn`: int8 weights and int8 activations quantized at each step (W8A8, fbgemm's dynamic quantization):
  1.2-1.4x faster end to end than `quantize_int8` on an Intel Xeon, but 90.6% CFG-guided agreement on random
  weights, and built on torch's deprecated quantized tensors.
"""

import warnings

import torch
from torch import nn

from inference.speed import Int8Linear, _swap_linears, compute_dtype, quantize_int8
from lm.model import MusicGenLM


class Int4Linear(nn.Module):
    """W ~= (q - 8) * scale + zero per group of `group` inputs, q in 0..15, packed for torch's CPU kernel."""

    def __init__(self, weight: torch.Tensor, group: int) -> None:
        super().__init__()
        out, inp = weight.shape
        grouped = weight.detach().float().reshape(out, inp // group, group)  # [D_out, G, group]
        low, high = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
        scale = (high - low).clamp(min=1e-8) / 15
        q = torch.round((grouped - low) / scale).clamp(0, 15).to(torch.int32).reshape(out, inp)
        zero = low + 8 * scale  # the kernel computes (q - 8) * scale + zero
        scales_zeros = torch.stack([scale.reshape(out, -1), zero.reshape(out, -1)], -1)  # [D_out, G, 2]
        self.group, self.out_features = group, out
        self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 8))
        self.register_buffer("scales_zeros", scales_zeros.transpose(0, 1).contiguous().bfloat16())  # [G, D_out, 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)  # [rows, D_in]
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.weight, self.group, self.scales_zeros)
        return out.view(*x.shape[:-1], self.out_features)  # [..., D_out]


def quantize_int4(lm: MusicGenLM, group: int) -> MusicGenLM:
    """The transformer's linear layers of `lm` as `Int4Linear` in place (heads and projections stay float32)."""
    return _swap_linears(lm, lambda weight: Int4Linear(weight, group))


def quantize_int8_heads(lm: MusicGenLM) -> MusicGenLM:
    """`quantize_int8`, and the K output heads as int8 too (a quarter of their float32 bytes read per step)."""
    quantize_int8(lm)
    for k, head in enumerate(lm.heads):
        lm.heads[k] = Int8Linear(head.weight, compute_dtype(lm))
    return lm


def quantize_int8_bf16_stream(lm: MusicGenLM) -> MusicGenLM:
    """`quantize_int8_heads`, and everything else in bfloat16 too: the residual stream, norms, embeddings,
    projections (one dtype, no casts between the blocks)."""
    return quantize_int8_heads(lm).to(torch.bfloat16)


CANDIDATES = {"int8-heads": quantize_int8_heads, "int8-bf16": quantize_int8_bf16_stream,
              "int4-g32": lambda lm: quantize_int4(lm, 32), "int4-g64": lambda lm: quantize_int4(lm, 64)}


class Int8DynamicLinear(nn.Module):
    """int8 weights (one scale per output channel) and int8 activations quantized on the fly with one scale and
    zero point per call (W8A8): fbgemm's `quantized.linear_dynamic`, float32 in and out, VNNI sums in int32.

    A decoding step's input is the 2 rows of one step (conditional and null, CFG), which share the scale. Longer
    inputs (prefill, the teacher-forced quality bench) are computed as the kernel would compute them one step at
    a time: the same arithmetic (`emulate`, equal to the kernel within 3e-7), with each step's rows b and B + b
    sharing a scale, in float64 so the integer sums are exact.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # [D_out]
        q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)  # [D_out, D_in]
        zero = torch.zeros_like(scale, dtype=torch.long)
        with warnings.catch_warnings():  # torch's quantized tensors are deprecated (one more reason not to offer it)
            warnings.simplefilter("ignore")
            quantized = torch._make_per_channel_quantized_tensor(q, scale.double(), zero, 0)
        self.packed = torch.ops.quantized.linear_prepack(quantized, None)
        self.register_buffer("weight", q)  # [D_out, D_in] int8, what the kernel's packed copy holds
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 and x.shape[1] == 1:  # one decoding step (a batch of prompts shares one scale)
            out = torch.ops.quantized.linear_dynamic(x.reshape(x.shape[0], -1).float(), self.packed, False)
            return out.view(x.shape[0], 1, -1)  # reduce_range False: 8-bit activations (VNNI has no overflow)
        return self.emulate(x)

    def emulate(self, x: torch.Tensor) -> torch.Tensor:
        """The kernel's arithmetic on x [B(x2), S, D], one scale for each step's rows."""
        rows, S, D = x.shape
        groups = 2 if rows % 2 == 0 else 1
        steps = x.double().view(groups, rows // groups, S, D)
        low = steps.amin(dim=(0, 3), keepdim=True).clamp(max=0)  # the range always holds 0
        high = steps.amax(dim=(0, 3), keepdim=True).clamp(min=0)
        scale = ((high - low) / 255).clamp(min=1e-10).float().double()  # uint8 codes 0..255
        zero = torch.round(-low / scale).clamp(0, 255)
        codes = (torch.round(steps / scale) + zero).clamp(0, 255) - zero
        out = (codes @ self.weight.double().t()) * scale * self.scale.double()  # [groups, rows / groups, S, D_out]
        return out.reshape(rows, S, -1).float()


def quantize_int8_dynamic(lm: MusicGenLM) -> MusicGenLM:
    """The transformer's linear layers of `lm` as `Int8DynamicLinear` in place (heads stay float32)."""
    return _swap_linears(lm, Int8DynamicLinear)


CANDIDATES["int8-dyn"] = quantize_int8_dynamic

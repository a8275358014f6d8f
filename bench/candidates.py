"""Speed transforms measured by the benches but not offered: each fails the quality bar or the speed it promised.

The quality bar of a default (issue 22): teacher-forced top-1 agreement with float32 >= 95% and cross-entropy
+1% at most, on the demo model's held-out tokens and on random weights of the published shape
(bench/int8_quality.py). What passed moved into inference/speed.py; what is here says why it did not.

- `int8 heads`: `quantize_int8` and the output heads in int8 too.
- `int8-bf16`: int8 weights and heads, and the residual stream, norms and embeddings in bfloat16.
- `int4`: weight-only int4 in groups of `group` inputs (asymmetric, one bfloat16 scale and zero per group),
  `aten._weight_int4pack_mm_for_cpu` with bfloat16 activations: an eighth of float32's bytes.
"""

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

"""The MusicGen transformer: pre-norm layers of causal self-attention, cross-attention and a GELU FFN.

Follows audiocraft's `StreamingTransformer` with MusicGen's settings (MusicGen paper, section 2.2; see
docs/architecture.md 1.1): LayerNorm eps 1e-5 before each block, no biases in attention or FFN, exact (erf) GELU,
no dropout (0 in every released model, so it is left out), softmax scale 1/sqrt(head_dim), sinusoidal
positions added once at the input.

One forward serves training (whole sequences, no cache), prefill (a prompt written into a `KVCache`) and
single-step decoding (one step appended to it). The cache is static, as in gpt-fast: self-attention keys and
values go into buffers preallocated for the whole window, written in place at the step's position, and
cross-attention keys/values are computed from the condition once per window and reused. audiocraft recomputes
cross-attention K/V every step (same numbers, more work); transformers caches them too.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import LMConfig


def sinusoidal_embedding(positions: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal positional embedding, cos first (audiocraft `create_sin_embedding`).

    phase[s, i] = positions[s] / max_period ** (i / (half - 1)) with half = dim // 2; note the divisor
    `half - 1`, not `half`. Computed in float32: audiocraft computes it in the activations' dtype (fp16 on
    GPU), transformers in float32 via exp(-i * ln(max_period) / (half - 1)); all agree in fp32 to rounding.

    Args:
        positions: [S] integer positions.
        dim: D, even.
        max_period: longest period.
    Returns:
        [S, D] float32 embedding.
    """
    half = dim // 2
    index = torch.arange(half, device=positions.device, dtype=torch.float32)  # [D/2]
    phase = positions.to(torch.float32)[:, None] / max_period ** (index / (half - 1))  # [S, D/2]
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)  # [S, D]


@dataclass
class LayerCache:
    """Decoding state of one layer.

    keys, values: self-attention [B, H, S_max, Dh], allocated by the first write (in the dtype and on the
        device of the keys written); the first `KVCache.offset` steps are filled.
    cross_keys, cross_values: cross-attention [B, H, L, Dh], set on the first call and reused afterwards.
    """

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None
    cross_keys: torch.Tensor | None = None
    cross_values: torch.Tensor | None = None


class KVCache:
    """Static decoding state of the whole transformer: one LayerCache per layer, room for `capacity` steps.

    Two ways to say where new steps go:
    - `offset` (a Python int, the default): steps already written. The forward writes the new steps at
      `offset`, attends to the filled part only, then advances it.
    - `step` (a 0-d device tensor, after `make_static()`): the position of the single step of each call.
      The forward writes at that position with `index_copy_` and attends to the whole buffer under a mask of
      the positions up to it (masked keys get weight exactly 0: the same softmax). Every shape is fixed and
      nothing is read back to the host, which is what a CUDA graph needs to record the step once and replay it.
    """

    def __init__(self, num_layers: int, capacity: int) -> None:
        self.layers = [LayerCache() for _ in range(num_layers)]
        self.capacity = capacity
        self.offset = 0
        self.step: torch.Tensor | None = None

    def make_static(self) -> torch.Tensor:
        """Switch to static single steps; returns the step tensor, which the caller sets before each call."""
        device = self.layers[0].keys.device  # allocated by a first (prefill) call
        self.step = torch.tensor(self.offset, device=device)
        return self.step

    def positions(self, steps: int, device: torch.device) -> torch.Tensor:
        """Positions [S] of the next `steps` steps."""
        if self.step is not None:
            if steps != 1:
                raise ValueError(f"a static cache takes one step per call, got {steps}")
            return self.step.reshape(1)
        if self.offset + steps > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} steps, step {self.offset + steps} was requested")
        return torch.arange(self.offset, self.offset + steps, device=device)

    def update(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Write the new steps' keys/values [B, H, S, Dh] of one layer; return what the queries attend to.

        Returns:
            keys, values [B, H, S_k, Dh] and a visibility mask: None with `offset` (causal over the last S of
            S_k keys), or [1, S_max] bool in static mode.
        """
        cache = self.layers[layer]
        if cache.keys is None:
            B, H, _, Dh = keys.shape
            cache.keys = keys.new_zeros(B, H, self.capacity, Dh)  # [B, H, S_max, Dh]
            cache.values = torch.zeros_like(cache.keys)
        if self.step is not None:  # static: write at a device position, attend over the whole buffer
            cache.keys.index_copy_(2, self.step.reshape(1), keys)
            cache.values.index_copy_(2, self.step.reshape(1), values)
            visible = torch.arange(self.capacity, device=keys.device) <= self.step  # [S_max]
            return cache.keys, cache.values, visible[None]
        end = self.offset + keys.shape[2]
        cache.keys[:, :, self.offset : end] = keys
        cache.values[:, :, self.offset : end] = values
        return cache.keys[:, :, :end], cache.values[:, :, :end], None  # [B, H, end, Dh]

    def advance(self, steps: int) -> None:
        """Count `steps` new steps as written (after every layer has written them; no-op when static)."""
        if self.step is None:
            self.offset += steps


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) v over heads.

    Args:
        q: [B, H, S, Dh] queries; k, v: [B, H, S_k, Dh]. With a cache S_k = past steps + S.
        causal: query i (the (S_k - S + i)-th step) sees keys up to its own step. One query needs no mask.
        key_mask: optional bool mask of the keys to attend to, broadcast to [B, H, S, S_k]: a static cache's
            [1, S_k] visibility, or a [B, 1, 1, S_k] cross-attention mask of padded text. A query that can see
            no key attends uniformly, not NaN.
    Returns:
        [B, H, S, Dh].
    """
    S, S_k = q.shape[2], k.shape[2]
    if key_mask is not None:  # additive bias: finfo.min keeps fully masked rows finite
        bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~key_mask, torch.finfo(q.dtype).min))
    if not causal or S == 1:
        return F.scaled_dot_product_attention(q, k, v)
    if S_k == S:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = torch.ones(S, S_k, dtype=torch.bool, device=q.device).tril(diagonal=S_k - S)  # [S, S_k]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class MultiheadAttention(nn.Module):
    """Multi-head attention without biases; queries from x, keys/values given by the caller.

    audiocraft packs q, k, v into one `in_proj_weight` [3D, D] (rows q, k, v); transformers and this
    module keep three separate [D, D] projections.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        return x.view(B, S, self.num_heads, D // self.num_heads).transpose(1, 2)  # [B, H, S, Dh]

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project source [B, S_k, D] to keys and values, each [B, H, S_k, Dh]."""
        return self.split_heads(self.k_proj(source)), self.split_heads(self.v_proj(source))

    def forward(
        self,
        x: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        causal: bool,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from x [B, S, D] to keys/values [B, H, S_k, Dh]; returns [B, S, D]."""
        B, S, D = x.shape
        q = self.split_heads(self.q_proj(x))  # [B, H, S, Dh]
        out = attention(q, keys, values, causal, key_mask)  # [B, H, S, Dh]
        return self.out_proj(out.transpose(1, 2).reshape(B, S, D))  # [B, S, D]


class TransformerLayer(nn.Module):
    """One pre-norm layer: x += SA(LN(x)); x += CA(LN(x), cond); x += FFN(LN(x))."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        dim, eps = config.dim, config.norm_eps
        self.self_attn_norm = nn.LayerNorm(dim, eps=eps)
        self.self_attn = MultiheadAttention(dim, config.num_heads)
        self.cross_attn_norm = nn.LayerNorm(dim, eps=eps) if config.cross_attention else None
        self.cross_attn = MultiheadAttention(dim, config.num_heads) if config.cross_attention else None
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)
        self.linear1 = nn.Linear(dim, config.ffn_dim, bias=False)
        self.linear2 = nn.Linear(config.ffn_dim, dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None,
        cond_mask: torch.Tensor | None,
        cache: KVCache | None,
        index: int,
    ) -> torch.Tensor:
        """x [B, S, D], cond [B, L, D] (may be None once cached); `index` is this layer's place in the cache.

        Each block adds its output to the stream x. When the linear layers run in reduced precision (see
        inference/speed.py) their outputs are bfloat16/float16 and the sum promotes back to the stream's float32.
        """
        x = x + self._self_attention(self.self_attn_norm(x), cache, index)
        if self.cross_attn is not None:
            x = x + self._cross_attention(self.cross_attn_norm(x), cond, cond_mask, cache, index)
        return x + self.linear2(F.gelu(self.linear1(self.ffn_norm(x))))  # exact erf GELU

    def _self_attention(self, h: torch.Tensor, cache: KVCache | None, index: int) -> torch.Tensor:
        keys, values = self.self_attn.keys_values(h)  # [B, H, S, Dh]
        visible = None
        if cache is not None:
            keys, values, visible = cache.update(index, keys, values)  # [B, H, S_k, Dh]
        return self.self_attn(h, keys, values, causal=visible is None, key_mask=visible)

    def _cross_attention(
        self,
        h: torch.Tensor,
        cond: torch.Tensor | None,
        cond_mask: torch.Tensor | None,
        cache: KVCache | None,
        index: int,
    ) -> torch.Tensor:
        layer_cache = None if cache is None else cache.layers[index]
        if layer_cache is not None and layer_cache.cross_keys is not None:
            keys, values = layer_cache.cross_keys, layer_cache.cross_values  # computed once per window
        else:
            if cond is None:
                raise ValueError("this layer cross-attends: pass the condition [B, L, D]")
            keys, values = self.cross_attn.keys_values(cond)  # [B, H, L, Dh]
            if layer_cache is not None:
                layer_cache.cross_keys, layer_cache.cross_values = keys, values
        key_mask = None if cond_mask is None else cond_mask.bool()[:, None, None, :]  # [B, 1, 1, L]
        return self.cross_attn(h, keys, values, causal=False, key_mask=key_mask)


class Transformer(nn.Module):
    """Stack of TransformerLayer with sinusoidal positions added at the input (no final norm here)."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.max_period = config.max_period
        self.layers = nn.ModuleList([TransformerLayer(config) for _ in range(config.num_layers)])

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Run all layers.

        Args:
            x: [B, S, D] input embeddings.
            cond: [B, L, D] condition for cross-attention (None without cross-attention or once cached).
            cond_mask: optional [B, L] bool key mask for cross-attention (None = audiocraft: no masking).
            cache: decoding state; the S steps are written after those it holds, then counted.
        Returns:
            [B, S, D] hidden states.
        """
        B, S, D = x.shape
        positions = torch.arange(S, device=x.device) if cache is None else cache.positions(S, x.device)  # [S]
        x = x + sinusoidal_embedding(positions, D, self.max_period).to(x.dtype)  # [B, S, D]
        for index, layer in enumerate(self.layers):
            x = layer(x, cond, cond_mask, cache, index)
        if cache is not None:
            cache.advance(S)
        return x

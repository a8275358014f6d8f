"""The MusicGen transformer: pre-norm layers of causal self-attention, cross-attention and a GELU FFN.

Follows audiocraft's `StreamingTransformer` with MusicGen's settings (docs/architecture.md 1.1): LayerNorm eps
1e-5 before each block, no biases in attention or FFN, exact (erf) GELU, no dropout (0 in every released
model, so it is left out), softmax scale 1/sqrt(head_dim), sinusoidal positions added once at the input.

Incremental decoding keeps a `KVCache`: self-attention keys/values are written into preallocated buffers,
and cross-attention keys/values are computed from the condition on the first call and reused.
Audiocraft recomputes cross-attention K/V every step (same numbers, more work); transformers caches them.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import LMConfig

try:  # optional; scaled_dot_product_attention already picks a flash kernel on CUDA when it can
    from flash_attn import flash_attn_func
except ImportError:
    flash_attn_func = None


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

    keys, values: self-attention, preallocated [B, H, S_max, Dh]; the first `KVCache.offset` steps are filled.
    cross_keys, cross_values: cross-attention [B, H, L, Dh], set on the first call and reused afterwards.
    """

    keys: torch.Tensor
    values: torch.Tensor
    cross_keys: torch.Tensor | None = None
    cross_values: torch.Tensor | None = None


class KVCache:
    """Decoding state of the whole transformer: one LayerCache per layer and the number of steps seen.

    The offset is advanced by `Transformer.forward`, after all layers have written their keys/values.
    """

    def __init__(self, layers: list[LayerCache]) -> None:
        self.layers = layers
        self.offset = 0

    @classmethod
    def empty(
        cls, config: LMConfig, batch: int, max_steps: int, device: torch.device, dtype: torch.dtype
    ) -> "KVCache":
        """Allocate room for `max_steps` steps of a batch of `batch` sequences."""
        shape = (batch, config.num_heads, max_steps, config.head_dim)  # [B, H, S_max, Dh]
        layers = [
            LayerCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
            for _ in range(config.num_layers)
        ]
        return cls(layers)

    @property
    def capacity(self) -> int:
        return self.layers[0].keys.shape[2]


def _use_flash(q: torch.Tensor) -> bool:
    return flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, key_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) v over heads.

    Args:
        q: [B, H, S, Dh] queries; k, v: [B, H, S_k, Dh]. With a cache S_k = past steps + S.
        causal: query i (the (S_k - S + i)-th step) sees keys up to its own step. One query needs no mask.
        key_mask: optional [B, S_k] bool, False for keys to ignore; cross-attention only (transformers'
            padded-text behaviour; audiocraft never masks). A fully masked row attends uniformly, not NaN.
    Returns:
        [B, H, S, Dh].
    """
    if causal and key_mask is not None:
        raise ValueError("key_mask is for (non-causal) cross-attention only")
    S, S_k = q.shape[2], k.shape[2]
    causal = causal and S > 1
    if key_mask is None and _use_flash(q):  # flash aligns a causal mask to the last keys, as we want
        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=causal)
        return out.transpose(1, 2)  # [B, H, S, Dh]
    if causal and S_k == S:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = None
    if causal:  # queries are the last S of S_k steps (prompt fed after earlier steps)
        mask = torch.ones(S, S_k, dtype=torch.bool, device=q.device).tril(diagonal=S_k - S)  # [S, S_k]
    elif key_mask is not None:  # additive bias: finfo.min keeps fully masked rows finite
        bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device)
        mask = bias.masked_fill(~key_mask.bool(), torch.finfo(q.dtype).min)[:, None, None, :]  # [B, 1, 1, S_k]
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

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        return x.view(B, S, self.num_heads, D // self.num_heads).transpose(1, 2)  # [B, H, S, Dh]

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project source [B, S_k, D] to keys and values, each [B, H, S_k, Dh]."""
        return self._split_heads(self.k_proj(source)), self._split_heads(self.v_proj(source))

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
        q = self._split_heads(self.q_proj(x))  # [B, H, S, Dh]
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
        cache: LayerCache | None,
        offset: int,
    ) -> torch.Tensor:
        """x [B, S, D], cond [B, L, D] (may be None once cached), offset = steps already in the cache."""
        x = x + self._self_attention(self.self_attn_norm(x), cache, offset)
        if self.cross_attn is not None:
            x = x + self._cross_attention(self.cross_attn_norm(x), cond, cond_mask, cache)
        return x + self.linear2(F.gelu(self.linear1(self.ffn_norm(x))))  # exact erf GELU

    def _self_attention(self, h: torch.Tensor, cache: LayerCache | None, offset: int) -> torch.Tensor:
        keys, values = self.self_attn.keys_values(h)  # [B, H, S, Dh]
        if cache is not None:
            end = offset + h.shape[1]
            if end > cache.keys.shape[2]:
                raise ValueError(f"KV cache holds {cache.keys.shape[2]} steps, step {end} was requested")
            cache.keys[:, :, offset:end] = keys
            cache.values[:, :, offset:end] = values
            keys, values = cache.keys[:, :, :end], cache.values[:, :, :end]  # [B, H, end, Dh]
        return self.self_attn(h, keys, values, causal=True)

    def _cross_attention(
        self, h: torch.Tensor, cond: torch.Tensor | None, cond_mask: torch.Tensor | None, cache: LayerCache | None
    ) -> torch.Tensor:
        if cache is not None and cache.cross_keys is not None:
            keys, values = cache.cross_keys, cache.cross_values
        else:
            if cond is None:
                raise ValueError("this layer cross-attends: pass the condition [B, L, D]")
            keys, values = self.cross_attn.keys_values(cond)  # [B, H, L, Dh]
            if cache is not None:
                cache.cross_keys, cache.cross_values = keys, values
        return self.cross_attn(h, keys, values, causal=False, key_mask=cond_mask)


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
            cache: decoding state; positions start at `cache.offset`, which is then advanced by S.
        Returns:
            [B, S, D] hidden states.
        """
        B, S, D = x.shape
        offset = 0 if cache is None else cache.offset
        positions = torch.arange(offset, offset + S, device=x.device)  # [S]
        x = x + sinusoidal_embedding(positions, D, self.max_period).to(x.dtype)  # [B, S, D]
        for i, layer in enumerate(self.layers):
            x = layer(x, cond, cond_mask, None if cache is None else cache.layers[i], offset)
        if cache is not None:
            cache.offset += S
        return x

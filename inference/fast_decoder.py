"""The MusicGen LM laid out for fast decoding: fused weights, a static KV cache, prefill and single steps.

`FastLM` reads a `MusicGenLM`'s weights and runs the same arithmetic as `lm/model.py` and `lm/transformer.py`
in fewer, larger operations; `inference/fast.py` drives it over a window of the delay pattern.

- **Weights prepared once**, optionally cast to bfloat16 / float16 (`dtype=`): the K heads become one
  float32 [K*V, D] matrix, the K embedding tables one table, and, when cast, q/k/v one [3D, D] matrix. Other
  weights in the model's dtype are the model's own tensors (no second copy).
- **Static KV cache** (`DecodeState`): self-attention keys/values preallocated as [layers, B, H, S_max, Dh]
  and written in place at the step's position; cross-attention keys/values computed once from the condition.
- **Prefill separated from the single step**: `prefill` reads the prompt (and a melody model's prepended
  condition) in one causal pass; `decode_one_step` reads one step. Only the last position goes through the
  output norm and the heads.
- **CFG without a doubled input**: both halves of the batch read the same tokens, so a step embeds B rows
  and repeats them.
- **CPU, reduced precision**: a linear layer over a handful of rows is computed as (W @ x^T)^T, which
  oneDNN runs with a kernel that streams W as stored: on a Xeon with AMX, one thread, 2 bf16 rows through
  the musicgen-small matrices, 12 GB/s against 9 GB/s for x @ W^T (the sum of a large tensor reads ~13).
  float16 has no fast CPU kernel for this shape (~4.5 GB/s either way): use bfloat16 on CPU.
- **Mixed precision** (when `dtype` is bfloat16 / float16): weights, matmul inputs, attention and the KV
  cache in `dtype`; the residual stream, the layer norms and the output heads in float32 (as autocast would
  keep them). On random musicgen-small weights with CFG 3 this raises the teacher-forced top-1 agreement with
  float32 from 92% (everything in bf16) to 98%, for 16 MB more per step (the heads) and a cast per block.
- `decode_one_step_static` is the same step with static shapes (the position a device tensor, attention
  over the whole cache under a mask), the form a CUDA graph can record.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lm.model import MusicGenLM
from lm.transformer import sinusoidal_embedding

FEW_ROWS = 16  # up to this many rows, CPU reduced-precision linears use the transposed product


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [..., D_in] @ weight [D_out, D_in]^T -> [..., D_out] (no bias), with the fast form for the device.

    On CPU in bf16/fp16 with few rows this is (W @ x^T)^T: the same sums, a kernel that reads W as stored.
    The result is made contiguous (a few KB) so that the ops after it, SDPA's flash kernel included, see
    the usual layout.
    """
    rows = x.numel() // x.shape[-1]
    if x.device.type == "cpu" and x.dtype != torch.float32 and rows <= FEW_ROWS:
        out = weight @ x.reshape(rows, x.shape[-1]).t()  # [D_out, rows]
        return out.t().contiguous().view(*x.shape[:-1], weight.shape[0])  # [..., D_out]
    return F.linear(x, weight)


@dataclass
class LayerWeights:
    """One transformer layer's weights, fused for decoding (norms as (weight, bias) pairs)."""

    self_norm: tuple[torch.Tensor, torch.Tensor]
    qkv: tuple[torch.Tensor, ...]  # q, k, v: one fused [3D, D] matrix, or three [D, D] (see FastLM)
    self_out: torch.Tensor  # [D, D]
    cross_norm: tuple[torch.Tensor, torch.Tensor] | None
    cross_q: torch.Tensor | None  # [D, D]
    cross_kv: tuple[torch.Tensor, torch.Tensor] | None  # k, v [D, D], used once per window on the condition
    cross_out: torch.Tensor | None  # [D, D]
    ffn_norm: tuple[torch.Tensor, torch.Tensor]
    ffn_in: torch.Tensor  # [F, D]
    ffn_out: torch.Tensor  # [D, F]


@dataclass
class DecodeState:
    """The static decoding state of one window.

    keys, values: self-attention cache [layers, B, H, S_max, Dh], filled up to the current position.
    cross_keys, cross_values: [layers, B, H, L, Dh], computed once from the condition (None without
        cross-attention).
    positions: [S_max, D] float32 sinusoidal position table.
    prefix: positions taken by a prepended condition (melody models), 0 otherwise.
    """

    keys: torch.Tensor
    values: torch.Tensor
    cross_keys: torch.Tensor | None
    cross_values: torch.Tensor | None
    positions: torch.Tensor
    prefix: int

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]


class FastLM:
    """A MusicGenLM's weights laid out for fast decoding; `prefill` and `decode_one_step` run it.

    Args:
        lm: the model whose weights are read (tensors are shared where no fusing or cast is needed).
        dtype: dtype of the weights, matmuls, attention and KV cache; default the model's own. The residual
            stream, layer norms and output heads are float32 whatever it is.
    """

    def __init__(self, lm: MusicGenLM, dtype: torch.dtype | None = None) -> None:
        config = lm.config
        self.config = config
        self.dtype = dtype or lm.out_norm.weight.dtype

        def cast(*tensors: torch.Tensor) -> torch.Tensor:  # concatenated along rows; shared if single, same dtype
            tensors = [t.detach().to(self.dtype) for t in tensors]
            return tensors[0] if len(tensors) == 1 else torch.cat(tensors)

        def fused(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            """One concatenated matrix when casting copies the weights anyway (one kernel reads them faster);
            in the model's own dtype the model's tensors themselves, so that no weight is held twice."""
            return (cast(*tensors),) if tensors[0].dtype != self.dtype else tuple(t.detach() for t in tensors)

        def norm(module: torch.nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:  # float32, as the stream
            return module.weight.detach().float(), module.bias.detach().float()

        self.layers = []
        for layer in lm.transformer.layers:
            sa, ca = layer.self_attn, layer.cross_attn
            self.layers.append(LayerWeights(
                self_norm=norm(layer.self_attn_norm),
                qkv=fused(sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight),
                self_out=cast(sa.out_proj.weight),
                cross_norm=norm(layer.cross_attn_norm) if ca is not None else None,
                cross_q=cast(ca.q_proj.weight) if ca is not None else None,
                cross_kv=(cast(ca.k_proj.weight), cast(ca.v_proj.weight)) if ca is not None else None,
                cross_out=cast(ca.out_proj.weight) if ca is not None else None,
                ffn_norm=norm(layer.ffn_norm),
                ffn_in=cast(layer.linear1.weight),
                ffn_out=cast(layer.linear2.weight),
            ))
        self.embedding = cast(*(emb.weight for emb in lm.embeddings))  # [K * (card + 1), D]
        device = self.embedding.device
        self.embedding_offsets = torch.arange(config.num_codebooks, device=device) * (config.card + 1)  # [K]
        self.out_norm = norm(lm.out_norm)
        self.heads = torch.cat([head.weight.detach().float() for head in lm.heads])  # [K * card, D] float32

    # ----- state -----

    def new_state(self, cond: torch.Tensor, max_steps: int) -> DecodeState:
        """Allocate the cache for `max_steps` token steps of cond.shape[0] rows; cross K/V from cond [B, L, D]."""
        config, B = self.config, cond.shape[0]
        cond = cond.to(self.dtype)
        prefix = 0 if config.cross_attention else cond.shape[1]
        S_max = prefix + max_steps
        shape = (config.num_layers, B, config.num_heads, S_max, config.head_dim)  # [layers, B, H, S_max, Dh]
        keys = torch.zeros(shape, dtype=self.dtype, device=cond.device)
        cross_keys = cross_values = None
        if config.cross_attention:
            cross_keys, cross_values = (
                torch.stack([self._heads(linear(cond, w.cross_kv[j])) for w in self.layers])  # [layers, B, H, L, Dh]
                for j in (0, 1)
            )
        positions = sinusoidal_embedding(torch.arange(S_max, device=cond.device), config.dim, config.max_period)
        return DecodeState(keys, torch.zeros_like(keys), cross_keys, cross_values, positions, prefix)

    # ----- the two entry points -----

    def prefill(self, state: DecodeState, codes: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The first pass of a window: steps 0..S-1 of codes [B, K, S] (and a prepended condition).

        Args:
            state: a fresh state from `new_state`; its cache is filled for the first S (+ prefix) positions.
            codes: [B, K, S] pattern steps; with CFG (state rows = 2B) both halves read the same codes.
            cond: [B_state, L, D] the condition; prepended here when the model has no cross-attention.
        Returns:
            float32 logits [B_state, K, V] for the step after the last one.
        """
        x = self._embed(codes, state.keys.shape[1])  # [B_state, S, D]
        if state.prefix:
            x = torch.cat([cond.float(), x], dim=1)  # melody: [B_state, prefix + S, D]
        x = x + state.positions[: x.shape[1]]
        for i, w in enumerate(self.layers):
            x = self._layer(state, i, w, x, 0, None)
        return self._logits(x[:, -1])

    def decode_one_step(self, state: DecodeState, tokens: torch.Tensor, step: int) -> torch.Tensor:
        """One pass over pattern step `step`: tokens [B, K] -> float32 logits [B_state, K, V] of step + 1."""
        position = state.prefix + step
        x = self._embed(tokens[..., None], state.keys.shape[1]) + state.positions[position]  # [B_state, 1, D]
        for i, w in enumerate(self.layers):
            x = self._layer(state, i, w, x, position, None)
        return self._logits(x[:, -1])

    def decode_one_step_static(self, state: DecodeState, tokens: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """`decode_one_step` with static shapes, for CUDA graphs: step is a 0-d device tensor.

        The step's keys/values are written with index_copy_ and attention reads the whole cache, masking the
        positions after this one (the same softmax: masked keys get weight exactly zero).
        """
        position = (step + state.prefix).reshape(1)  # [1]
        x = self._embed(tokens[..., None], state.keys.shape[1])  # [B_state, 1, D]
        x = x + state.positions.index_select(0, position)  # [B_state, 1, D]
        visible = (torch.arange(state.capacity, device=step.device) <= position)[None]  # [1, S_max]
        for i, w in enumerate(self.layers):
            x = self._layer(state, i, w, x, position, visible)
        return self._logits(x[:, -1])

    # ----- pieces -----

    def _embed(self, codes: torch.Tensor, rows: int) -> torch.Tensor:
        """codes [B, K, S] -> summed float32 embeddings [rows, S, D]; rows = 2B repeats the batch for CFG."""
        B = codes.shape[0]
        ids = codes + self.embedding_offsets[:, None]  # [B, K, S], rows of the stacked tables
        x = F.embedding(ids, self.embedding).sum(dim=1, dtype=torch.float32)  # [B, S, D]
        return x.repeat(rows // B, 1, 1)  # [rows, S, D]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden state [B, D] -> float32 logits [B, K, V] (output norm and the K heads as one matrix)."""
        x = F.layer_norm(x, x.shape[-1:], *self.out_norm, self.config.norm_eps)
        return F.linear(x, self.heads).view(x.shape[0], self.config.num_codebooks, self.config.card)

    def _layer(self, state: DecodeState, i: int, w: LayerWeights, x: torch.Tensor, position: int | torch.Tensor,
               visible: torch.Tensor | None) -> torch.Tensor:
        """One pre-norm layer over the float32 stream x [B, S, D] at `position` (int: eager slices; tensor:
        static, `visible` mask). Each block's input is cast to the compute dtype, its output added in float32."""
        x = x + self._self_attention(state, i, w, self._norm(x, w.self_norm), position, visible)
        if w.cross_q is not None:
            q = self._heads(linear(self._norm(x, w.cross_norm), w.cross_q))  # [B, H, S, Dh]
            out = F.scaled_dot_product_attention(q, state.cross_keys[i], state.cross_values[i])  # [B, H, S, Dh]
            x = x + linear(self._merge(out), w.cross_out)
        return x + linear(F.gelu(linear(self._norm(x, w.ffn_norm), w.ffn_in)), w.ffn_out)  # exact erf GELU

    def _norm(self, x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """LayerNorm of the float32 stream, cast to the compute dtype (a no-op in float32)."""
        return F.layer_norm(x, x.shape[-1:], *norm, self.config.norm_eps).to(self.dtype)

    def _self_attention(self, state: DecodeState, i: int, w: LayerWeights, h: torch.Tensor,
                        position: int | torch.Tensor, visible: torch.Tensor | None) -> torch.Tensor:
        B, S, D = h.shape
        H = self.config.num_heads
        qkv = linear(h, w.qkv[0]) if len(w.qkv) == 1 else torch.cat([linear(h, m) for m in w.qkv], dim=-1)  # [B, S, 3D]
        q, k, v = qkv.view(B, S, 3, H, D // H).permute(2, 0, 3, 1, 4)  # each [B, H, S, Dh]
        if visible is not None:  # static: write at a device position, attend over the whole cache
            state.keys[i].index_copy_(2, position, k)
            state.values[i].index_copy_(2, position, v)
            out = F.scaled_dot_product_attention(q, state.keys[i], state.values[i], attn_mask=visible)
        else:
            end = position + S
            state.keys[i, :, :, position:end] = k
            state.values[i, :, :, position:end] = v
            keys, values = state.keys[i, :, :, :end], state.values[i, :, :, :end]  # [B, H, end, Dh]
            out = F.scaled_dot_product_attention(q, keys, values, is_causal=S > 1)  # prefill: position == 0
        return linear(self._merge(out), w.self_out)  # [B, S, D]

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        H = self.config.num_heads
        return x.view(B, S, H, D // H).transpose(1, 2)  # [B, H, S, Dh]

    @staticmethod
    def _merge(x: torch.Tensor) -> torch.Tensor:
        B, H, S, Dh = x.shape
        return x.transpose(1, 2).reshape(B, S, H * Dh)  # [B, S, D]

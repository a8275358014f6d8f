"""MusicGen language model: K summed token embeddings -> transformer -> K linear heads (audiocraft `LMModel`).

    codes [B, K, S] --emb[k], summed--> [B, S, D] --transformer(cond)--> LN --head[k]--> logits [B, K, S, V]

Each codebook has its own embedding table of card + 1 rows (row `card` is the special token) and its own
head of `card` outputs (the model never predicts the special token). The text projection (audiocraft's
T5 conditioner `output_proj`, transformers' `enc_to_dec_proj`) lives here as `cond_proj`, so that all LM
weights of a checkpoint load into this one module; the T5 encoder itself lives outside the LM.
"""

import torch
from torch import nn

from .config import LMConfig
from .transformer import KVCache, Transformer


class MusicGenLM(nn.Module):
    """The MusicGen transformer LM over delayed codec tokens (MusicGen paper, section 2).

    Args:
        config: sizes; see LMConfig.
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.cond_proj = nn.Linear(config.cond_dim, config.dim) if config.cond_dim is not None else None
        # melody models: one-hot chroma frames [B, F, 12] -> [B, F, D] (transformers' audio_enc_to_dec_proj)
        self.chroma_proj = nn.Linear(config.num_chroma, config.dim) if config.num_chroma is not None else None
        self.embeddings = nn.ModuleList(
            [nn.Embedding(config.card + 1, config.dim) for _ in range(config.num_codebooks)]
        )
        self.transformer = Transformer(config)
        self.out_norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.heads = nn.ModuleList(
            [nn.Linear(config.dim, config.card, bias=False) for _ in range(config.num_codebooks)]
        )

    def project_condition(self, text_states: torch.Tensor, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Project text encoder states to the model width and zero the padded positions.

        This is audiocraft's `T5Conditioner`: output_proj, then multiply by the mask. Padded and null
        text positions become zero vectors, which (no attention biases) give zero keys and values.
        transformers does the same (`enc_to_dec_proj`, then `* attention_mask`) before cross-attention.

        Args:
            text_states: [B, L, D_text] text encoder output (T5 last_hidden_state).
            text_mask: optional [B, L], 1 for real tokens, 0 for padding.
        Returns:
            cond [B, L, D] to pass to `forward`.
        """
        cond = text_states if self.cond_proj is None else self.cond_proj(text_states)  # [B, L, D]
        if text_mask is not None:
            cond = cond * text_mask[..., None].to(cond.dtype)  # [B, L, D]
        return cond

    def new_cache(self, batch: int, max_steps: int) -> KVCache:
        """An empty decoding state for `batch` sequences of up to `max_steps` steps, on this model's device."""
        param = self.out_norm.weight
        return KVCache.empty(self.config, batch, max_steps, param.device, param.dtype)

    def forward(
        self,
        codes: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits for the next token of every codebook at every step.

        Args:
            codes: [B, K, S] delayed token sequence, values in [0, card] (card = special token).
            cond: [B, L, D] projected condition (`project_condition`, `melody_condition`). With cross-attention
                it may be None once a cache holds its keys/values. Without cross-attention (melody models) it
                is prepended to the sequence: pass it on the first call only (positions count it too).
            cond_mask: optional [B, L] key mask for cross-attention. None (the default) is audiocraft's
                behaviour: padded text is zero vectors but still attended. transformers masks the padding,
                so logits differ from transformers whenever a batch mixes text lengths.
            cache: decoding state; the S new steps are appended after `cache.offset` steps.
        Returns:
            logits [B, K, S, V] for the S token steps (never for prepended positions).
        """
        B, K, S = codes.shape
        if self.config.num_codebooks != K:
            raise ValueError(f"codes have {K} codebooks, the model has {self.config.num_codebooks}")
        x = sum(emb(codes[:, k]) for k, emb in enumerate(self.embeddings))  # [B, S, D]
        if not self.config.cross_attention and cond is not None:
            x = torch.cat([cond.to(x.dtype), x], dim=1)  # prepend conditioning: [B, L + S, D]
            cond = None
        x = self.transformer(x, cond, cond_mask, cache)  # [B, L + S, D]
        x = self.out_norm(x[:, -S:])  # [B, S, D]
        return torch.stack([head(x) for head in self.heads], dim=1)  # [B, K, S, V]

    def melody_condition(self, chroma: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The prefix of a melody model: [projected chroma, projected text] (audiocraft's prepend fuser order).

        The chroma is tiled or cut to `chroma_length` frames (a short melody repeats, as in transformers).

        Args:
            chroma: [B, F, num_chroma] one-hot chroma frames (the null melody is bin 0 everywhere).
            text: [B, L, D] projected text (`project_condition`), zeros for the null condition.
        Returns:
            cond [B, chroma_length + L, D] to pass to `forward`.
        """
        length = self.config.chroma_length
        repeats = -(-length // chroma.shape[1])  # ceil
        chroma = self.chroma_proj(chroma.to(text.dtype)).repeat(1, repeats, 1)[:, :length]  # [B, chroma_length, D]
        return torch.cat([chroma, text], dim=1)  # [B, chroma_length + L, D]

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

    def new_cache(self, max_steps: int) -> KVCache:
        """An empty decoding state for up to `max_steps` steps (prepended condition included).

        Its buffers are allocated by the first call that writes to it, for that call's batch, in the dtype of
        the keys (the model's, or the compute dtype of reduced-precision linears) and on their device.
        """
        return KVCache(self.config.num_layers, max_steps)

    def forward(
        self,
        codes: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits for the next token of every codebook at every step: `logits(hidden_states(...))`.

        Args:
            codes: [B, K, S] delayed token sequence, values in [0, card] (card = special token).
            cond: [B, L, D] projected condition (`project_condition`, `melody_condition`). With cross-attention
                it may be None once a cache holds its keys/values. Without cross-attention (melody models) it
                is prepended to the sequence: pass it on the first call only (positions count it too).
            cond_mask: optional [B, L] key mask for cross-attention. None (the default) is audiocraft's
                behaviour: padded text is zero vectors but still attended. transformers masks the padding,
                so logits differ from transformers whenever a batch mixes text lengths.
            cache: decoding state; the S new steps are appended after the steps it holds.
        Returns:
            logits [B, K, S, V] for the S token steps (never for prepended positions).
        """
        return self.logits(self.hidden_states(codes, cond, cond_mask, cache))

    def hidden_states(
        self,
        codes: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """The normalised last hidden state of each token step, [B, S, D]; arguments as `forward`.

        Decoding needs only the last step's logits: `logits(hidden_states(...)[:, -1:])` skips the K heads
        for the other steps of a prompt.
        """
        B, K, S = codes.shape
        if self.config.num_codebooks != K:
            raise ValueError(f"codes have {K} codebooks, the model has {self.config.num_codebooks}")
        x = sum(emb(codes[:, k]) for k, emb in enumerate(self.embeddings))  # [B, S, D]
        if not self.config.cross_attention and cond is not None:
            x = torch.cat([cond.to(x.dtype), x], dim=1)  # prepend conditioning: [B, L + S, D]
            cond = None
        x = self.transformer(x, cond, cond_mask, cache)  # [B, L + S, D]
        return self.out_norm(x[:, -S:])  # [B, S, D]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, S, D] -> logits [B, K, S, V], one linear head per codebook."""
        return torch.stack([head(hidden) for head in self.heads], dim=1)  # [B, K, S, V]

    def melody_condition(self, chroma: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The prefix of a melody model: [projected chroma, projected text] (audiocraft's prepend fuser order).

        Args:
            chroma: [B, chroma_length, num_chroma] one-hot chroma frames (a shorter melody is tiled to this
                length by the caller, as transformers does; the null melody is bin 0 everywhere).
            text: [B, L, D] projected text (`project_condition`), zeros for the null condition.
        Returns:
            cond [B, chroma_length + L, D] to pass to `forward`.
        """
        if chroma.shape[1] != self.config.chroma_length:
            raise ValueError(f"the melody has {chroma.shape[1]} chroma frames, the model takes "
                             f"{self.config.chroma_length}")
        chroma = self.chroma_proj(chroma.to(text.dtype))  # [B, chroma_length, D]
        return torch.cat([chroma, text], dim=1)  # [B, chroma_length + L, D]

"""Text conditioners: turn descriptions into the sequence the LM cross-attends to.

Both return `(states [B, L, D_text], mask [B, L])`. The projection to the LM width and the zeroing of padded
positions happen in `MusicGenLM.project_condition`, so that every LM weight lives in one module.

The null condition used for classifier-free guidance (audiocraft: the description dropped, i.e. ""):
its mask is all zeros, so after the projection it is all zero vectors. A cross-attention over zero keys and
zero values returns exactly zero, whatever the length, so the unconditional rows see "no text at all".
"""

import zlib

import torch
from torch import nn


class T5Conditioner(nn.Module):
    """A frozen T5 encoder and its tokenizer (MusicGen: t5-base, 768 wide).

    Args:
        encoder: a transformers `T5EncoderModel`.
        tokenizer: the tokenizer stored with the checkpoint (transformers `AutoTokenizer`).
    """

    def __init__(self, encoder: nn.Module, tokenizer) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer

    @property
    def dim(self) -> int:
        return self.encoder.config.d_model

    @torch.no_grad()
    def forward(self, descriptions: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of descriptions; None or "" is the empty (null) description.

        Returns:
            states [B, L, D_text] (float32) and mask [B, L] (1 = real token), L = longest tokenized text.
        """
        texts = [text or "" for text in descriptions]
        tokens = self.tokenizer(texts, return_tensors="pt", padding=True)
        device = next(self.encoder.parameters()).device
        ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, D_text]
        empty = torch.tensor([not text for text in texts], device=device)
        mask = mask.masked_fill(empty[:, None], 0)  # as audiocraft: an empty description conditions on nothing
        return states, mask


class LookupTableConditioner(nn.Module):
    """Words -> learned vectors: a tiny text conditioner for small self-trained models (audiocraft `LUTConditioner`).

    Each lower-cased, whitespace-separated word is hashed (crc32, stable across runs and machines) into one of
    `num_bins` rows of an embedding table. No pretrained weights, no tokenizer files.

    Args:
        num_bins: rows of the table (hash buckets).
        dim: vector width D_text.
        max_words: descriptions are cut to this many words.
    """

    def __init__(self, num_bins: int, dim: int, max_words: int = 32) -> None:
        super().__init__()
        self.num_bins, self.max_words = num_bins, max_words
        self.embedding = nn.Embedding(num_bins, dim)

    @property
    def dim(self) -> int:
        return self.embedding.embedding_dim

    def word_ids(self, text: str) -> list[int]:
        return [zlib.crc32(word.encode()) % self.num_bins for word in text.lower().split()[: self.max_words]]

    def forward(self, descriptions: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns states [B, L, D_text] and mask [B, L]; L is the longest description (at least 1)."""
        ids = [self.word_ids(text or "") for text in descriptions]
        L = max(1, *(len(i) for i in ids))
        device = self.embedding.weight.device
        padded = torch.zeros(len(ids), L, dtype=torch.long, device=device)
        mask = torch.zeros(len(ids), L, dtype=torch.long, device=device)
        for row, word_ids in enumerate(ids):
            padded[row, : len(word_ids)] = torch.tensor(word_ids, dtype=torch.long)
            mask[row, : len(word_ids)] = 1
        return self.embedding(padded), mask  # [B, L, D_text], [B, L]

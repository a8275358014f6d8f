"""Text conditioners: turn descriptions into the sequence the LM cross-attends to.

Both return `(states [B, L, D_text], mask [B, L])`. The projection to the LM width and the zeroing of padded
positions happen in `MusicGenLM.project_condition`, so that every LM weight lives in one module.

The null condition used for classifier-free guidance (audiocraft: the description dropped, i.e. ""):
its mask is all zeros, so after the projection it is all zero vectors. A cross-attention over zero keys and
zero values returns exactly zero, whatever the length, so the unconditional rows see "no text at all".
"""

import re
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

    A description is lower-cased and split into words, punctuation dropped ("Lo-fi funk." and "lo-fi funk" are
    the same two words; audiocraft's `WhiteSpaceTokenizer` drops punctuation too). Each word is hashed (crc32,
    stable across runs and machines) into one of `num_bins` rows of an embedding table. No pretrained weights,
    no tokenizer files.

    Every description is padded to `max_words` positions, not to the longest of its batch as audiocraft does.
    The LM cross-attends to the padding (zero vectors, see `MusicGenLM.project_condition`) without a mask, so the
    padding takes part of the attention: with a fixed length a description reads the same alone as beside a
    longer one, and the same in training (batches of mixed lengths) as at generation (often one prompt).

    Args:
        num_bins: rows of the table (hash buckets).
        dim: vector width D_text.
        max_words: descriptions are cut to this many words, and padded to it.
    """

    WORD = re.compile(r"\w+(?:['-]\w+)*")  # "lo-fi", "don't", "80s", "124", "café"; not "(", "." or ","

    def __init__(self, num_bins: int, dim: int, max_words: int = 32) -> None:
        super().__init__()
        self.num_bins, self.max_words = num_bins, max_words
        self.embedding = nn.Embedding(num_bins, dim)

    @property
    def dim(self) -> int:
        return self.embedding.embedding_dim

    def words(self, text: str) -> list[str]:
        """The words the conditioner reads: lower-cased, without punctuation, at most `max_words`."""
        return self.WORD.findall(text.lower())[: self.max_words]

    def word_ids(self, text: str) -> list[int]:
        return [zlib.crc32(word.encode()) % self.num_bins for word in self.words(text)]

    def forward(self, descriptions: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns states [B, max_words, D_text] and mask [B, max_words] (1 = a word, 0 = padding)."""
        device = self.embedding.weight.device
        padded = torch.zeros(len(descriptions), self.max_words, dtype=torch.long, device=device)
        mask = torch.zeros(len(descriptions), self.max_words, dtype=torch.long, device=device)
        for row, text in enumerate(descriptions):
            word_ids = self.word_ids(text or "")
            padded[row, : len(word_ids)] = torch.tensor(word_ids, dtype=torch.long)
            mask[row, : len(word_ids)] = 1
        return self.embedding(padded), mask  # [B, max_words, D_text], [B, max_words]

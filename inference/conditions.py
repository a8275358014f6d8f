"""What the LM is conditioned on: the projected text, the melody's chroma, and the null condition of CFG.

    descriptions --T5--> states [B, L, D_text] --LM projection--> text [B, L, D]
    text models:   cond = text (cross-attended); the null condition is zeros
    melody models: cond = [projected chroma of 235 frames, text] (prepended); the null condition is the null
                   melody (pitch class 0 everywhere) and zero text

With CFG the B null rows follow the B conditional rows: cond [2B, ...].
"""

import torch

from audio.clip import check_finite, resample
from lm.chroma import ChromaExtractor, null_chroma
from lm.model import MusicGenLM


@torch.no_grad()
def lm_condition(lm: MusicGenLM, text_encoder: torch.nn.Module, descriptions: list[str | None], with_null: bool,
                 chroma: list[torch.Tensor | None] | None = None) -> torch.Tensor:
    """The LM's condition for each description, followed by B null conditions when `with_null` (CFG).

    Args:
        lm: the language model (its text projection and, for melody models, its chroma projection).
        text_encoder: descriptions -> (states [B, L, D_text], mask [B, L]); None encodes to the null text.
        descriptions: B texts (None: no text).
        with_null: append the B null rows.
        chroma: melody models: one one-hot chroma [F, 12] or None per description.
    Returns:
        text models [B(x2), L, D]; melody models [B(x2), 235 + L, D].
    """
    states, mask = text_encoder(descriptions)  # [B, L, D_text], [B, L]
    param = lm.out_norm.weight
    text = lm.project_condition(states.to(param.dtype), mask)  # [B, L, D]
    if lm.config.num_chroma is None:
        return torch.cat([text, torch.zeros_like(text)]) if with_null else text  # [B(x2), L, D]
    frames = lm.config.chroma_length

    def tiled(c: torch.Tensor) -> torch.Tensor:  # [F, 12] -> [235, 12]: a short melody repeats, as in transformers
        return c.repeat(-(-frames // c.shape[0]), 1)[:frames].to(param.dtype)

    null = tiled(null_chroma(1, lm.config.num_chroma, param.device)[0])  # [235, 12]
    melody = torch.stack([null if c is None else tiled(c) for c in chroma or [None] * len(descriptions)])
    cond = lm.melody_condition(melody, text)  # [B, 235 + L, D]
    if not with_null:
        return cond
    nulls = null[None].expand(len(descriptions), -1, -1)  # [B, 235, 12]
    return torch.cat([cond, lm.melody_condition(nulls, torch.zeros_like(text))])  # [2B, 235 + L, D]


@torch.no_grad()
def melody_chroma(wav: torch.Tensor | None, sample_rate: int, model_rate: int, num_chroma: int,
                  device: torch.device) -> torch.Tensor | None:
    """One-hot chroma [F, 12] of a melody [C, N] at `sample_rate` (resampled to `model_rate`, mixed to mono)."""
    if wav is None:
        return None
    if wav.dim() != 2 or wav.shape[-1] == 0:
        raise ValueError(f"a melody must be a [C, N] waveform with N > 0, got {list(wav.shape)}")
    check_finite(wav, "the melody")
    wav = resample(wav.float().to(device), sample_rate, model_rate)
    extractor = ChromaExtractor(model_rate, n_chroma=num_chroma).to(device)
    return extractor(wav[None])[0]  # [F, 12]

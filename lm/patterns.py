"""Delay interleaving of the K codebook streams (MusicGen paper, section 2.2; audiocraft `DelayedPatternProvider`).

MusicGen predicts all K codebooks of a step in parallel, but codebook k is shifted right by `delays[k]`
steps, so the codes of frame t for codebook k are predicted after the coarser codebooks of frame t were
already seen. Step 0 holds only the special token (= card), which is the "start" input.

Worked example, delays (0, 1, 2, 3), T = 3 frames, codes a_t b_t c_t d_t for codebooks 0..3,
`_` the special token; S = T + max(delays) + 1 = 7 steps:

    step s:   0   1   2   3   4   5   6
    k = 0:    _   a0  a1  a2  _   _   _
    k = 1:    _   _   b0  b1  b2  _   _
    k = 2:    _   _   _   c0  c1  c2  _
    k = 3:    _   _   _   _   d0  d1  d2

Build:  seq[k, s] = codes[k, s - 1 - delays[k]] when that frame exists, else the special token.
Revert: codes[k, t] = seq[k, t + 1 + delays[k]].
Logits: the logits at step s predict the token at step s + 1, so logits_out[k, t] = logits[k, t + delays[k]].

Stereo models interleave left/right codebooks [q0_L, q0_R, q1_L, q1_R, ...] with delays (0, 0, 1, 1, 2, 2, 3, 3);
the delays are data here, so nothing else changes.

The index tensors depend only on (delays, T, device) and are cached, so the generation loop can call these
functions every step without rebuilding them.
"""

from collections.abc import Sequence
from functools import lru_cache

import torch


def num_pattern_steps(num_frames: int, delays: Sequence[int]) -> int:
    """S = T + max_delay + 1: the initial all-special step, the frames, and the delay tail."""
    return num_frames + max(delays) + 1


@lru_cache(maxsize=64)
def _build_index(delays: tuple[int, ...], T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Index into codes padded with one special column, and the mask of real codes, both [K, S]."""
    S = num_pattern_steps(T, delays)
    steps = torch.arange(S, device=device)
    frames = steps[None, :] - 1 - torch.tensor(delays, device=device)[:, None]  # [K, S]
    mask = (frames >= 0) & (frames < T)  # [K, S]
    index = torch.where(mask, frames, T)  # column T of the padded codes is the special token
    return index, mask


@lru_cache(maxsize=64)
def _revert_index(delays: tuple[int, ...], T: int, device: torch.device) -> torch.Tensor:
    """Index of frame t of codebook k in the pattern sequence: t + 1 + delays[k], [K, T]."""
    frames = torch.arange(T, device=device)
    return frames[None, :] + 1 + torch.tensor(delays, device=device)[:, None]  # [K, T]


def delay_pattern_mask(num_frames: int, delays: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """Where the pattern sequence holds a real code (True) rather than the special token.

    Args:
        num_frames: T.
        delays: one delay per codebook (K entries).
    Returns:
        bool mask [K, S] with S = T + max(delays) + 1.
    """
    return _build_index(tuple(delays), num_frames, torch.device(device or "cpu"))[1].clone()


def build_delay_pattern(codes: torch.Tensor, delays: Sequence[int], special_token: int) -> torch.Tensor:
    """Interleave codes [B, K, T] into the delayed sequence [B, K, S] (see the module docstring).

    Args:
        codes: [B, K, T] integer codes (any values, e.g. -1 for "not generated yet").
        delays: one delay per codebook.
        special_token: id written at step 0 and in the delay padding (card).
    Returns:
        [B, K, S] sequence, S = T + max(delays) + 1.
    """
    B, K, T = codes.shape
    if len(delays) != K:
        raise ValueError(f"codes have {K} codebooks but {len(delays)} delays were given")
    index, _ = _build_index(tuple(delays), T, codes.device)
    padded = torch.cat([codes, codes.new_full((B, K, 1), special_token)], dim=-1)  # [B, K, T + 1]
    return padded.gather(-1, index.expand(B, -1, -1))  # [B, K, S]


def revert_delay_pattern(sequence: torch.Tensor, delays: Sequence[int]) -> torch.Tensor:
    """Undo `build_delay_pattern`: [B, K, S] -> [B, K, T] with T = S - max(delays) - 1.

    Args:
        sequence: [B, K, S] delayed sequence.
        delays: one delay per codebook.
    Returns:
        codes [B, K, T].
    """
    B, K, S = sequence.shape
    T = S - max(delays) - 1
    if len(delays) != K or T < 0:
        raise ValueError(f"sequence of shape {tuple(sequence.shape)} does not fit delays {tuple(delays)}")
    index = _revert_index(tuple(delays), T, sequence.device)
    return sequence.gather(-1, index.expand(B, -1, -1))  # [B, K, T]


def revert_delay_logits(
    logits: torch.Tensor, delays: Sequence[int], num_frames: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Align logits over pattern steps with the frames they predict (training; audiocraft `revert_pattern_logits`).

    The logits at step s predict the token at step s + 1, so frame t of codebook k is predicted at step
    t + delays[k]. Its target exists only if step t + delays[k] + 1 is inside the sequence (< S).

    Args:
        logits: [B, K, S, V] logits for every step of the input sequence.
        delays: one delay per codebook.
        num_frames: T. Default S - max(delays) - 1 (the full pattern). Training feeds only the first T + 1
            steps (audiocraft's `keep_only_valid_steps`), then pass T = S - 1 and the last delays[k]
            frames of codebook k come back masked.
    Returns:
        logits [B, K, T, V] (NaN where invalid, so a missed mask is loud) and a bool mask [K, T].
    """
    B, K, S, V = logits.shape
    T = S - max(delays) - 1 if num_frames is None else num_frames
    steps = torch.arange(T, device=logits.device)[None, :] + torch.tensor(delays, device=logits.device)[:, None]
    mask = steps + 1 < S  # [K, T]
    index = steps.clamp(max=S - 1)[None, :, :, None].expand(B, K, T, V)  # [B, K, T, V]
    out = logits.gather(2, index)  # [B, K, T, V]
    return out.masked_fill(~mask[None, :, :, None], float("nan")), mask

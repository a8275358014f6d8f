"""The MusicGen training objective: teacher-forced cross-entropy over the delay pattern.

audiocraft (`LMModel.compute_predictions`, `MusicGenSolver`): the codes [B, K, T] are interleaved with the
delay pattern and only the first T + 1 steps are fed (`keep_only_valid_steps`), the logits are aligned back
to frames, and each codebook's cross-entropy is averaged over the frames it can predict, then over codebooks.

    step s:   0   1   2   3   4          input (delays 0, 1, 2, 3; T = 4, steps 0..T)
    k = 0:    _   a0  a1  a2  a3         logits at step s predict step s + 1: a0 a1 a2 a3 (all 4 frames)
    k = 1:    _   _   b0  b1  b2         b0 b1 b2 (b3 would need step 5: masked)
    k = 3:    _   _   _   _   d0         nothing (d0 sits at the last input step: masked)
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lm.patterns import build_delay_pattern, revert_delay_logits


@dataclass
class LMLoss:
    """Output of `delayed_cross_entropy`.

    Attributes:
        loss: scalar, mean over codebooks of each codebook's mean cross-entropy.
        per_codebook: [K] cross-entropy of each codebook (nan for a codebook with no valid frame).
        accuracy: [K] top-1 accuracy of each codebook over its valid frames.
    """

    loss: torch.Tensor
    per_codebook: torch.Tensor
    accuracy: torch.Tensor


def teacher_forcing_inputs(codes: torch.Tensor, delays: tuple[int, ...], special_token: int) -> torch.Tensor:
    """The pattern steps fed in training: [B, K, T] codes -> [B, K, T + 1] (step 0 plus T steps)."""
    T = codes.shape[-1]
    return build_delay_pattern(codes, delays, special_token)[..., : T + 1]  # [B, K, T + 1]


def delayed_cross_entropy(logits: torch.Tensor, codes: torch.Tensor, delays: tuple[int, ...]) -> LMLoss:
    """Cross-entropy of the LM's logits over `teacher_forcing_inputs(codes)` against the codes.

    Args:
        logits: [B, K, T + 1, V] the LM's output for the T + 1 input steps.
        codes: [B, K, T] the target codes.
        delays: the pattern's delays.
    Returns:
        LMLoss (loss, per-codebook loss and accuracy).
    """
    B, K, T = codes.shape
    aligned, mask = revert_delay_logits(logits, delays, num_frames=T)  # [B, K, T, V] (nan where masked), [K, T]
    losses, accuracies = [], []
    for k in range(K):
        valid = mask[k]  # [T]
        if not valid.any():
            losses.append(logits.new_tensor(float("nan")))
            accuracies.append(logits.new_tensor(float("nan")))
            continue
        target = codes[:, k, valid].reshape(-1)  # [B * T_k]
        pred = aligned[:, k, valid].reshape(-1, aligned.shape[-1]).float()  # [B * T_k, V]
        losses.append(F.cross_entropy(pred, target))
        accuracies.append((pred.argmax(-1) == target).float().mean())
    per_codebook = torch.stack(losses)
    return LMLoss(per_codebook.nanmean(), per_codebook, torch.stack(accuracies))

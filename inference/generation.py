"""Token generation: one window of the delay pattern, and audiocraft's sliding windows for long pieces.

One window (audiocraft `LMModel.generate`): codes [B, K, T] start as the prompt's frames followed by
UNKNOWN; the delay pattern turns them into a sequence [B, K, S], S = T + max(delays) + 1. The first forward
pass reads every step up to and including the prompt's last frame of codebook 0 (step T_prompt), the
following passes one step each; each pass gives the logits of the next step. Positions already known (the
prompt) or kept special by the pattern are never overwritten (delay masking).

Long pieces (audiocraft `MusicGen._generate_tokens`): windows of `window` frames (30 s, the length the
models were trained on); after each window the last `window - stride` frames (12 s) become the prompt of
the next, which adds `stride` new frames (18 s). Positions restart at 0 in every window.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lm.model import MusicGenLM
from lm.patterns import build_delay_pattern, revert_delay_pattern
from lm.sampling import classifier_free_guidance, sample_next_token

UNKNOWN = -1  # a pattern position still to be generated


@dataclass(frozen=True)
class SamplingParams:
    """How each next token is chosen (MusicGen's defaults)."""

    use_sampling: bool = True
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    cfg_coef: float = 3.0


def window_steps(prompt_frames: int, num_frames: int, max_delay: int) -> int:
    """Forward passes one window takes: T + max_delay - T_prompt."""
    return num_frames + max_delay - prompt_frames


@torch.no_grad()
def generate_window(lm: MusicGenLM, cond: torch.Tensor, prompt: torch.Tensor, num_frames: int,
                    params: SamplingParams, generator: torch.Generator | None = None,
                    on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """Complete `prompt` [B, K, T_prompt] (T_prompt may be 0) to `num_frames` frames.

    Args:
        lm: the language model.
        cond: [B, L, D] projected condition, or [2B, L, D] (conditional rows, then null rows) for CFG;
            cross-attended, or prepended on the first pass for models without cross-attention (melody).
        prompt: [B, K, T_prompt] known codes.
        num_frames: T, frames of the result, prompt included (T > T_prompt).
        params: sampling settings; CFG is applied when cond has 2B rows.
        generator: random generator for the sampling.
        on_step: called after every forward pass (progress).
    Returns:
        codes [B, K, T], starting with the prompt.
    """
    B, K, T_prompt = prompt.shape
    delays, special = lm.config.delays, lm.config.special_token
    codes = torch.full((B, K, num_frames), UNKNOWN, dtype=torch.long, device=prompt.device)
    codes[..., :T_prompt] = prompt
    sequence = build_delay_pattern(codes, delays, special)  # [B, K, S]
    guided = cond.shape[0] == 2 * B
    prefix = 0 if lm.config.cross_attention else cond.shape[1]  # melody models prepend the condition
    cache = lm.new_cache(cond.shape[0], prefix + sequence.shape[-1])
    start = T_prompt + 1  # the first step holding an unknown frame of codebook 0 (delays[0] == 0)
    fed = 0
    for step in range(start, sequence.shape[-1]):
        inputs = sequence[..., fed:step]  # [B, K, steps]: the prompt at once, then one step at a time
        inputs = torch.cat([inputs, inputs]) if guided else inputs  # CFG: one doubled batch
        logits = lm(inputs, cond if fed == 0 else None, cache=cache)[:, :, -1].float()  # [B(x2), K, V]
        if guided:
            logits = classifier_free_guidance(logits, params.cfg_coef)  # [B, K, V]
        tokens = sample_next_token(logits, params.use_sampling, params.temperature, params.top_k, params.top_p,
                                   generator)  # [B, K]
        current = sequence[..., step]
        sequence[..., step] = torch.where(current == UNKNOWN, tokens, current)  # delay masking: keep knowns
        fed = step
        if on_step is not None:
            on_step()
    return revert_delay_pattern(sequence, delays)  # [B, K, T]


def plan_windows(prompt_frames: int, total_frames: int, window: int, stride: int) -> list[tuple[int, int]]:
    """The (prompt frames, window frames) of each window of a long generation (audiocraft's loop).

    Example: window 50, stride 30, no prompt, 115 frames -> [(0, 50), (20, 50), (20, 50), (20, 25)]:
    50 new frames, then 30, 30 and 5; each window after the first starts from the previous one's last 20.
    """
    if total_frames <= window:
        return [(prompt_frames, total_frames)]
    if not 0 < stride <= window:
        raise ValueError(f"the stride ({stride} frames) must be in 1..window ({window} frames)")
    plan, offset, prompt = [], 0, prompt_frames
    while offset + prompt < total_frames:
        frames = min(total_frames - offset, window)
        plan.append((prompt, frames))
        prompt = max(0, frames - stride)
        offset += stride
    return plan


def generate_long(lm: MusicGenLM, cond: torch.Tensor, prompt: torch.Tensor, total_frames: int, window: int,
                  stride: int, params: SamplingParams, generator: torch.Generator | None = None,
                  on_step: Callable[[], None] | None = None, window_fn: Callable | None = None) -> torch.Tensor:
    """A window function over sliding windows: codes [B, K, total_frames], the prompt first.

    `window_fn` has `generate_window`'s signature and results (the default; `inference.fast.generate_window_fast`
    is the faster equivalent the pipeline uses).
    """
    window_fn = window_fn or generate_window
    pieces, context = [prompt], prompt
    for prompt_frames, frames in plan_windows(prompt.shape[-1], total_frames, window, stride):
        assert context.shape[-1] == prompt_frames
        codes = window_fn(lm, cond, context, frames, params, generator, on_step)  # [B, K, frames]
        pieces.append(codes[..., prompt_frames:])
        context = codes[..., stride:]
    return torch.cat(pieces, dim=-1)  # [B, K, total_frames]

"""Token generation: one window of the delay pattern, and audiocraft's sliding windows for long pieces.

One window (audiocraft `LMModel.generate`): codes [B, K, T] start as the prompt's frames followed by
UNKNOWN; the delay pattern turns them into a sequence [B, K, S], S = T + max(delays) + 1. The first forward
pass (prefill) reads every step up to and including the prompt's last frame of codebook 0 (step T_prompt) into
the model's KV cache; each following pass reads one step. Each pass gives the logits of the next step. Positions
already known (the prompt) or kept special by the pattern are never overwritten (delay masking).

The loop never reads a tensor value back to the host: sampling runs on the device, the delay mask is computed
once, and loop control depends only on shapes. The loop hands out each frame as soon as its last codebook is
sampled (`window_frames`, `piece_frames`), which is what streaming reads; `generate_window` and `generate_long`
gather the frames. Speed transforms wrap the one-step pass (`StepTransform`): with `cuda_graph=True` it is
recorded once per window in a CUDA graph and replayed (inference/cuda_graph.py).

Long pieces (audiocraft `MusicGen._generate_tokens`): windows of `window` frames (30 s, the length the
models were trained on); after each window the last `window - stride` frames (12 s) become the prompt of
the next, which adds `stride` new frames (18 s). Positions restart at 0 in every window.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from inference.cuda_graph import StaticStep
from lm.model import MusicGenLM
from lm.patterns import build_delay_pattern
from lm.sampling import SamplingParams, classifier_free_guidance, sample_next_token
from lm.transformer import KVCache

UNKNOWN = -1  # a pattern position still to be generated


def last_logits(lm: MusicGenLM, codes: torch.Tensor, cond: torch.Tensor | None, cache: KVCache) -> torch.Tensor:
    """One forward pass over new steps codes [B, K, S]; float32 logits [B, K, V] of the step after the last.

    Only the last step goes through the output heads.
    """
    hidden = lm.hidden_states(codes, cond, cache=cache)  # [B, S, D]
    return lm.logits(hidden[:, -1:])[:, :, 0].float()  # [B, K, V]


# The one-step pass of a window: steps [B(x2), K, 1] and the cache position they are written at -> logits
# [B(x2), K, V]. Speed transforms of the step (a CUDA graph) wrap the plain pass: make(step, cache, example).
Step = Callable[[torch.Tensor, int], torch.Tensor]
StepTransform = Callable[[Callable[[torch.Tensor], torch.Tensor], KVCache, torch.Tensor], Step]


def cuda_graph_step(step: Callable[[torch.Tensor], torch.Tensor], cache: KVCache, example: torch.Tensor) -> Step:
    """The step transform of `cuda_graph=True`: the pass recorded once per window and replayed."""
    return StaticStep(step, cache, example, record=True)


@torch.no_grad()
def window_frames(lm: MusicGenLM, cond: torch.Tensor, prompt: torch.Tensor, num_frames: int, *,
                  sampling: SamplingParams, generator: torch.Generator | None = None,
                  on_step: Callable[[], None] | None = None,
                  step_transform: StepTransform | None = None) -> Iterator[torch.Tensor]:
    """Complete `prompt` [B, K, T_prompt] (T_prompt may be 0) to `num_frames` frames, yielding each new frame.

    Frame t is complete once its last codebook is sampled, at step t + 1 + max(delays): the frames come out
    max(delays) steps behind the first codebook, in order, each as new codes [B, K]. Nothing is read back to
    the host, so a consumer that only stores the frames never waits for the device.

    Args:
        lm: the language model (as loaded, or transformed for speed by inference/speed.py).
        cond: [B, L, D] projected condition, or [2B, L, D] (conditional rows, then null rows) for CFG;
            cross-attended, or prepended on the first pass for models without cross-attention (melody).
        prompt: [B, K, T_prompt] known codes.
        num_frames: T, frames of the window, prompt included (T > T_prompt).
        sampling: how tokens are chosen; CFG is applied when cond has 2B rows.
        generator: random generator for the sampling.
        on_step: called after every forward pass (progress).
        step_transform: wraps the one-step pass for speed (`cuda_graph_step`); None runs it as it is.
    Yields:
        frames T_prompt .. T - 1, each [B, K].
    """
    B, K, T_prompt = prompt.shape
    if cond.shape[0] not in (B, 2 * B):
        raise ValueError(f"cond has {cond.shape[0]} rows for a batch of {B}: expected {B}, or {2 * B} with CFG")
    guided = cond.shape[0] == 2 * B
    codes = torch.full((B, K, num_frames), UNKNOWN, dtype=torch.long, device=prompt.device)
    codes[..., :T_prompt] = prompt
    sequence = build_delay_pattern(codes, lm.config.delays, lm.config.special_token)  # [B, K, S]
    known = sequence != UNKNOWN  # [B, K, S] delay masking: prompt and special positions are never overwritten
    delays = torch.tensor(lm.config.delays, device=prompt.device)  # [K]
    codebooks = torch.arange(K, device=prompt.device)  # [K]
    max_delay = max(lm.config.delays)

    def rows(steps: torch.Tensor) -> torch.Tensor:  # CFG: the null rows read the same tokens
        return torch.cat([steps, steps]) if guided else steps  # [B(x2), K, steps]

    prefix = 0 if lm.config.cross_attention else cond.shape[1]  # melody models prepend the condition
    cache = lm.new_cache(prefix + sequence.shape[-1])
    start = T_prompt + 1  # the first step holding an unknown frame of codebook 0 (delays[0] == 0)
    logits = last_logits(lm, rows(sequence[..., :start]), cond, cache)  # prefill: [B(x2), K, V]

    def one_step(steps: torch.Tensor) -> torch.Tensor:  # [B(x2), K, 1] at the cache's next position
        return last_logits(lm, steps, None, cache)  # [B(x2), K, V]

    if step_transform is None:
        step: Step = lambda steps, position: one_step(steps)  # noqa: E731  (the cache knows the position)
    else:
        step = step_transform(one_step, cache, rows(sequence[..., :1]))
    for s in range(start, sequence.shape[-1]):
        if s > start:
            logits = step(rows(sequence[..., s - 1 : s]), prefix + s - 1)  # [B(x2), K, V]
        if guided:
            logits = classifier_free_guidance(logits, sampling.cfg_coef)  # [B, K, V]
        tokens = sample_next_token(logits, sampling, generator)  # [B, K]
        sequence[..., s] = torch.where(known[..., s], sequence[..., s], tokens)
        if on_step is not None:
            on_step()
        frame = s - 1 - max_delay  # complete now: codebook k of frame t sits at step t + 1 + delays[k]
        if frame >= T_prompt:
            yield sequence[:, codebooks, frame + 1 + delays]  # [B, K]


def generate_window(lm: MusicGenLM, cond: torch.Tensor, prompt: torch.Tensor, num_frames: int, *,
                    sampling: SamplingParams, generator: torch.Generator | None = None,
                    on_step: Callable[[], None] | None = None, cuda_graph: bool = False) -> torch.Tensor:
    """`window_frames` gathered: codes [B, K, T], starting with the prompt (arguments as there)."""
    frames = window_frames(lm, cond, prompt, num_frames, sampling=sampling, generator=generator, on_step=on_step,
                           step_transform=cuda_graph_step if cuda_graph else None)
    return torch.cat([prompt, torch.stack(list(frames), dim=-1)], dim=-1)  # [B, K, T]


@dataclass(frozen=True)
class Window:
    """One window of a long generation: it starts at frame `start` of the piece, and its first `prompt` of
    `frames` frames are known (the end of the previous window, or of the audio prompt)."""

    start: int
    prompt: int
    frames: int


def plan_windows(prompt_frames: int, total_frames: int, window: int, stride: int) -> list[Window]:
    """The windows of a generation of `total_frames` frames, the first `prompt_frames` given (audiocraft's loop).

    Example: window 50, stride 30, no prompt, 115 frames -> windows at 0, 30, 60, 90 of 50, 50, 50, 25 frames,
    each after the first re-reading the previous one's last 20 frames: 50 new frames, then 30, 30 and 5.
    A prompt of a window or more is continued from its last `window - stride` frames, as a later window would be.
    """
    if not 0 <= prompt_frames < total_frames:
        raise ValueError(f"the prompt ({prompt_frames} frames) must be shorter than the piece ({total_frames})")
    if total_frames <= window:
        return [Window(0, prompt_frames, total_frames)]
    if not 0 < stride <= window:
        raise ValueError(f"the stride ({stride} frames) must be in 1..window ({window} frames)")
    start, prompt = 0, prompt_frames
    if prompt >= window:
        start, prompt = prompt_frames - (window - stride), window - stride
    plan = []
    while True:
        frames = min(total_frames - start, window)
        plan.append(Window(start, prompt, frames))
        if start + frames >= total_frames:
            return plan
        start, prompt = start + stride, frames - stride


def plan_steps(plan: list[Window], max_delay: int) -> int:
    """Forward passes a plan takes: each window makes T + max_delay - T_prompt of them."""
    return sum(w.frames - w.prompt + max_delay for w in plan)


def piece_frames(lm: MusicGenLM, cond: torch.Tensor, prompt: torch.Tensor, plan: list[Window], *,
                 sampling: SamplingParams, generator: torch.Generator | None = None,
                 on_step: Callable[[], None] | None = None,
                 step_transform: StepTransform | None = None) -> Iterator[torch.Tensor]:
    """Run `window_frames` over the windows of `plan`, yielding the piece's new frames [B, K] in order.

    The piece's codes are kept (int64, 1.6 kB a second per codebook row) so that each window can read its
    prompt from the end of the previous one.
    """
    B, K, T_prompt = prompt.shape
    last = plan[-1]
    codes = torch.full((B, K, last.start + last.frames), UNKNOWN, dtype=torch.long, device=prompt.device)
    codes[..., :T_prompt] = prompt
    for w in plan:
        context = codes[..., w.start : w.start + w.prompt]  # [B, K, prompt]
        frames = window_frames(lm, cond, context, w.frames, sampling=sampling, generator=generator,
                               on_step=on_step, step_transform=step_transform)
        for t, frame in enumerate(frames, start=w.start + w.prompt):
            codes[..., t] = frame
            yield frame  # [B, K]


def generate_long(lm: MusicGenLM, cond: torch.Tensor, prompt: torch.Tensor, plan: list[Window], *,
                  sampling: SamplingParams, generator: torch.Generator | None = None,
                  on_step: Callable[[], None] | None = None, cuda_graph: bool = False) -> torch.Tensor:
    """`piece_frames` gathered: codes [B, K, total], starting with the whole prompt."""
    frames = piece_frames(lm, cond, prompt, plan, sampling=sampling, generator=generator, on_step=on_step,
                          step_transform=cuda_graph_step if cuda_graph else None)
    return torch.cat([prompt, torch.stack(list(frames), dim=-1)], dim=-1)  # [B, K, total]

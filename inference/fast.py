"""Fast token generation: `generate_window`'s loop over `FastLM` (inference/fast_decoder.py), gpt-fast style.

`generate_window_fast` is a drop-in replacement for `inference.generation.generate_window`: same arguments,
same tokens (greedy: equal codes; sampling: the same ops draw from the same generator in the same order).
Beyond the decoder's layout (see inference/fast_decoder.py):

- **No host synchronisation in the loop**: sampling runs on the device (`lm.sampling`: softmax, topk,
  multinomial), delay masking uses the mask of known pattern positions computed once per window, and loop
  control depends only on shapes, never on tensor values.
- **Weights prepared once per model and dtype** (`fast_lm`), reused across windows and calls.
- **CUDA**: `compile=True` records the single step once per window in a CUDA graph and replays it
  (`CUDAGraphStep`), which removes the per-kernel launch cost that dominates small-batch decoding on a GPU.
  Sampling stays outside the graph. SDPA picks its flash / memory-efficient kernels itself. torch.compile is
  not used on CPU: inductor takes minutes to compile the step there and its kernels were slower than eager's.
"""

import warnings
import weakref
from collections.abc import Callable

import torch

from inference.fast_decoder import DecodeState, FastLM
from inference.generation import UNKNOWN, SamplingParams
from lm.model import MusicGenLM
from lm.patterns import build_delay_pattern, revert_delay_pattern
from lm.sampling import classifier_free_guidance, sample_next_token


class CUDAGraphStep:
    """`FastLM.decode_one_step_static` recorded once in a CUDA graph and replayed for every step of a window.

    The graph reads its inputs from fixed buffers (tokens, step) and writes fixed logits; sampling stays
    outside the graph, so any generator works. Warm-up runs write at the last cache position, which no
    real step attends to (the last pattern step is never fed back).
    """

    def __init__(self, fast: FastLM, state: DecodeState, tokens: torch.Tensor) -> None:
        self.tokens = tokens.clone()  # [B, K]
        self.step = torch.full((), state.capacity - 1 - state.prefix, dtype=torch.long, device=tokens.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # lazy library initialisation must not happen during capture
            for _ in range(2):
                fast.decode_one_step_static(state, self.tokens, self.step)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = fast.decode_one_step_static(state, self.tokens, self.step)  # [B_state, K, V]

    def __call__(self, state: DecodeState, tokens: torch.Tensor, step: int) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.step.fill_(step)
        self.graph.replay()
        return self.logits


_PREPARED: "weakref.WeakKeyDictionary[MusicGenLM, dict]" = weakref.WeakKeyDictionary()


def fast_lm(lm: MusicGenLM, dtype: torch.dtype | None = None) -> FastLM:
    """The FastLM of `lm` in `dtype`, prepared on first use and reused while the model's weights are unchanged."""
    dtype = dtype or lm.out_norm.weight.dtype
    weights = tuple((p.data_ptr(), p._version) for p in lm.parameters())  # changes on .to(), load, optimizer
    prepared = _PREPARED.setdefault(lm, {})
    if dtype not in prepared or prepared[dtype][0] != weights:
        prepared.pop(dtype, None)  # free a stale copy before building the new one
        prepared[dtype] = (weights, FastLM(lm, dtype))
    return prepared[dtype][1]


@torch.no_grad()
def generate_window_fast(lm: MusicGenLM, cond: torch.Tensor, prompt: torch.Tensor, num_frames: int,
                         params: SamplingParams, generator: torch.Generator | None = None,
                         on_step: Callable[[], None] | None = None, compile: bool = False,
                         dtype: torch.dtype | None = None) -> torch.Tensor:
    """`inference.generation.generate_window`, fast: complete `prompt` [B, K, T_prompt] to `num_frames` frames.

    Args:
        lm, cond, prompt, num_frames, params, generator, on_step: as `generate_window`.
        compile: on CUDA, record the single step in a CUDA graph and replay it. On CPU the same static step
            runs eagerly (slower than the default path; useful to check it), with a warning.
        dtype: compute dtype of the LM (e.g. torch.bfloat16); default the model's. Weights are cast once per
            model and dtype and kept (`fast_lm`).
    Returns:
        codes [B, K, T], starting with the prompt.
    """
    B, K, T_prompt = prompt.shape
    if cond.shape[0] not in (B, 2 * B):
        raise ValueError(f"cond has {cond.shape[0]} rows for a batch of {B}: expected {B}, or {2 * B} with CFG")
    delays, special = lm.config.delays, lm.config.special_token
    codes = torch.full((B, K, num_frames), UNKNOWN, dtype=torch.long, device=prompt.device)
    codes[..., :T_prompt] = prompt
    sequence = build_delay_pattern(codes, delays, special)  # [B, K, S]
    known = sequence != UNKNOWN  # [B, K, S] delay masking: prompt and special positions are never overwritten
    guided = cond.shape[0] == 2 * B
    fast = fast_lm(lm, dtype)
    state = fast.new_state(cond, sequence.shape[-1])
    step_fn = _step_function(fast, state, sequence[..., 0], compile)
    start = T_prompt + 1  # the first step holding an unknown frame of codebook 0 (delays[0] == 0)
    for step in range(start, sequence.shape[-1]):
        if step == start:
            logits = fast.prefill(state, sequence[..., :start], cond)  # [B(x2), K, V]
        else:
            logits = step_fn(state, sequence[..., step - 1], step - 1)  # [B(x2), K, V]
        if guided:
            logits = classifier_free_guidance(logits, params.cfg_coef)  # [B, K, V]
        tokens = sample_next_token(logits, params.use_sampling, params.temperature, params.top_k, params.top_p,
                                   generator)  # [B, K]
        sequence[..., step] = torch.where(known[..., step], sequence[..., step], tokens)
        if on_step is not None:
            on_step()
    return revert_delay_pattern(sequence, delays)  # [B, K, T]


def _step_function(fast: FastLM, state: DecodeState, tokens: torch.Tensor,
                   compile: bool) -> Callable[[DecodeState, torch.Tensor, int], torch.Tensor]:
    """The single-step function of a window: eager slices, or the static step (CUDA graph on CUDA)."""
    if not compile:
        return fast.decode_one_step
    if tokens.device.type == "cuda":
        return CUDAGraphStep(fast, state, tokens)
    warnings.warn("compile=True records CUDA graphs, which need CUDA; running the static step eagerly", stacklevel=3)
    step = torch.zeros((), dtype=torch.long, device=tokens.device)
    return lambda state, tokens, index: fast.decode_one_step_static(state, tokens, step.fill_(index))

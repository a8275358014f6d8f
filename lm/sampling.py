"""Next-token selection: classifier-free guidance, temperature, top-k, top-p, greedy (audiocraft `LMModel`).

Order of operations (audiocraft `_sample_next_token`): CFG mix on raw logits, then softmax(logits / T),
then top-p if p > 0, else top-k if k > 0, else plain multinomial; argmax when sampling is off or T == 0.
Every random draw takes an explicit `torch.Generator`, so a seed reproduces a run. The ops and their order
match audiocraft's, so a generator seeded like audiocraft's global RNG draws the same tokens.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How each next token is chosen; the defaults are MusicGen's (sampling, top-k 250, CFG 3).

    Args:
        use_sampling: sample (True) or take the argmax (False, "greedy").
        top_k: keep the k likeliest tokens (ties kept) when > 0 and top_p is 0.
        top_p: nucleus mass in [0, 1]; when > 0 it takes precedence over top_k.
        temperature: softmax temperature; 0 means argmax.
        cfg_coef: classifier-free guidance strength; 1.0 (or less) turns guidance off.
    """

    use_sampling: bool = True
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    cfg_coef: float = 3.0

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1], got {self.top_p}")
        if not self.temperature >= 0.0:  # also refuses NaN
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not -1e6 < self.cfg_coef < 1e6:
            raise ValueError(f"cfg_coef must be a finite number, got {self.cfg_coef}")

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance runs (a doubled batch of conditional and null rows)."""
        return self.cfg_coef > 1.0


def classifier_free_guidance(logits: torch.Tensor, cfg_coef: float) -> torch.Tensor:
    """CFG mix of a doubled batch: uncond + cfg_coef * (cond - uncond), on raw logits.

    Args:
        logits: [2B, ...] with the conditional half first and the unconditional (null text) half second.
        cfg_coef: guidance strength (3.0 for MusicGen); 1.0 gives the conditional logits back.
    Returns:
        [B, ...] guided logits.
    """
    cond, uncond = logits.chunk(2, dim=0)  # [B, ...] each
    return uncond + (cond - uncond) * cfg_coef


def multinomial(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw from each distribution of probs [..., V]; returns indices [...]."""
    flat = probs.reshape(-1, probs.shape[-1])  # [N, V]
    return torch.multinomial(flat, num_samples=1, generator=generator).reshape(probs.shape[:-1])  # [...]


def top_k_filter(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Keep every probability >= the k-th largest (ties at the boundary are all kept), renormalised."""
    kth_largest = torch.topk(probs, k, dim=-1).values[..., -1:]  # [..., 1]
    kept = probs * (probs >= kth_largest).to(probs.dtype)  # [..., V]
    return kept / kept.sum(dim=-1, keepdim=True)


def _nucleus_sorted(probs: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted probabilities with the nucleus kept (mass before a token <= p) and renormalised, and the order."""
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)  # [..., V]
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # [..., V]
    kept = sorted_probs * (mass_before <= p).to(probs.dtype)  # the top token always stays
    return kept / kept.sum(dim=-1, keepdim=True), order


def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of top tokens whose mass reaches p, renormalised.

    A token is kept when the mass of the tokens ranked above it is <= p.
    """
    kept, order = _nucleus_sorted(probs, p)
    return torch.zeros_like(probs).scatter(-1, order, kept)  # [..., V], original token order


def sample_top_p(probs: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Nucleus sampling from probs [..., V] -> [...]. Draws in sorted order, as audiocraft does."""
    kept, order = _nucleus_sorted(probs, p)
    rank = multinomial(kept, generator)  # [...]
    return order.gather(-1, rank[..., None])[..., 0]  # [...]


def sample_next_token(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Choose the next token of each distribution.

    Args:
        logits: [..., V] raw (already CFG-mixed) logits, e.g. [B, K, V] for the last step.
        params: use_sampling, temperature, top_k and top_p are read (cfg_coef is the caller's).
        generator: random generator on the logits' device (None = torch's global RNG).
    Returns:
        token indices [...], int64.
    """
    if not params.use_sampling or params.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)  # [..., V]
    if params.top_p > 0:
        return sample_top_p(probs, params.top_p, generator)
    if params.top_k > 0:
        probs = top_k_filter(probs, min(params.top_k, probs.shape[-1]))
    return multinomial(probs, generator)

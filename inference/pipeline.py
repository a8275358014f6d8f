"""MusicGen: text -> codec tokens -> audio.

    descriptions --T5--> text states --LM proj--> cond [B, L, D]
    cond (+ null cond for CFG) --LM, one delay-pattern step at a time--> codes [B, K, T]
    codes --EnCodec decoder--> audio [B, C, T * hop]

The decoding loop (audiocraft `LMModel.generate` semantics): the pattern sequence starts with one all-special
step; each forward pass over the newest step gives logits for the next one; positions that the delay pattern
keeps special are never sampled. T frames take T + max(delays) passes; the KV cache makes each pass one step.
"""

import os
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from encodec import EncodecModel
from inference.loading import load_musicgen_parts
from lm.conditioning import T5Conditioner
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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class MusicGen:
    """The MusicGen text-to-music model: a T5 text encoder, the MusicGen LM, and the EnCodec codec.

    Args:
        lm: the language model over delayed codec tokens.
        codec: the audio codec (mono; stereo models interleave left/right codebooks).
        text: the text conditioner.
        max_duration: the longest generation in one window, in seconds (the models were trained on 30 s).
    """

    def __init__(self, lm: MusicGenLM, codec: EncodecModel, text: T5Conditioner, max_duration: float = 30.0):
        self.lm, self.codec, self.text, self.max_duration = lm, codec, text, max_duration
        codec_codebooks = codec.num_codebooks * lm.config.audio_channels
        if lm.config.num_codebooks != codec_codebooks:
            raise ValueError(f"the LM predicts {lm.config.num_codebooks} codebooks, the codec gives "
                             f"{codec.num_codebooks} per channel x {lm.config.audio_channels} channels")

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike = "facebook/musicgen-small",
                        device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "MusicGen":
        """Load a published MusicGen (Hub repo id, short name like "small", or a local transformers-layout folder).

        Args:
            device: default CUDA when available, else CPU.
            dtype: the LM's dtype; default float16 on CUDA (as audiocraft), float32 on CPU. T5 and the codec
                always run in float32.
        """
        device = torch.device(device) if device is not None else default_device()
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        parts = load_musicgen_parts(source, device, dtype)
        return cls(parts.lm, parts.codec, parts.text)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def audio_channels(self) -> int:
        return self.lm.config.audio_channels

    @property
    def device(self) -> torch.device:
        return self.lm.out_norm.weight.device

    def generate(self, descriptions: list[str | None] | str, duration: float = 10.0, seed: int | None = None,
                 use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0, temperature: float = 1.0,
                 cfg_coef: float = 3.0, progress: bool = False) -> torch.Tensor:
        """Generate music for each description. Returns audio [B, C, N] at `sample_rate`, N = T * hop.

        Args:
            descriptions: one text per sample; None or "" generates without text.
            duration: seconds of audio (T = int(duration * frame_rate) frames).
            seed: seeds the sampling; the same seed, settings and device give the same audio.
            use_sampling, top_k, top_p, temperature: see `lm.sampling.sample_next_token`.
            cfg_coef: classifier-free guidance strength; 1.0 (or less) turns guidance off.
            progress: show a progress bar over the decoding steps.
        """
        codes = self.generate_tokens(descriptions, duration, seed, use_sampling, top_k, top_p, temperature,
                                     cfg_coef, progress)
        return self.decode(codes)

    def generate_tokens(self, descriptions: list[str | None] | str, duration: float = 10.0, seed: int | None = None,
                        use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0, temperature: float = 1.0,
                        cfg_coef: float = 3.0, progress: bool = False) -> torch.Tensor:
        """Like `generate`, but return the codec tokens [B, K, T] instead of audio."""
        descriptions = [descriptions] if isinstance(descriptions, str) else list(descriptions)
        if not descriptions:
            raise ValueError("give at least one description (None or '' for unconditional generation)")
        num_frames = self._num_frames(duration)
        params = SamplingParams(use_sampling, top_k, top_p, temperature, cfg_coef)
        generator = None
        if seed is not None:
            generator = torch.Generator(self.device).manual_seed(seed)
        cond = self._condition(descriptions, with_null=cfg_coef > 1.0)
        return self._decode_loop(cond, len(descriptions), num_frames, params, generator, progress)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T] -> audio [B, C, T * hop]; stereo codes interleave left and right codebooks."""
        if self.audio_channels == 1:
            return self.codec.decode(codes)
        left, right = self.codec.decode(codes[:, 0::2]), self.codec.decode(codes[:, 1::2])
        return torch.cat([left, right], dim=1)  # [B, 2, N]

    def _num_frames(self, duration: float) -> int:
        if not duration > 0:
            raise ValueError(f"duration must be a positive number of seconds, got {duration}")
        if duration > self.max_duration:
            raise ValueError(f"duration {duration} s is longer than the model's window of {self.max_duration} s")
        return max(1, int(duration * self.frame_rate))

    @torch.no_grad()
    def _condition(self, descriptions: list[str | None], with_null: bool) -> torch.Tensor:
        """Projected text condition [B, L, D], followed by B null conditions (all zeros) for CFG."""
        states, mask = self.text(descriptions)  # [B, L, D_text], [B, L]
        param = self.lm.out_norm.weight
        cond = self.lm.project_condition(states.to(param.dtype), mask)  # [B, L, D]
        if with_null:
            cond = torch.cat([cond, torch.zeros_like(cond)], dim=0)  # [2B, L, D]
        return cond

    @torch.no_grad()
    def _decode_loop(self, cond: torch.Tensor, batch: int, num_frames: int, params: SamplingParams,
                     generator: torch.Generator | None, progress: bool) -> torch.Tensor:
        """Fill the delay pattern one step at a time. Returns codes [B, K, T]."""
        config = self.lm.config
        unknown = torch.full((batch, config.num_codebooks, num_frames), UNKNOWN, device=self.device)
        sequence = build_delay_pattern(unknown, config.delays, config.special_token)  # [B, K, S]
        S = sequence.shape[-1]
        guided = cond.shape[0] == 2 * batch
        cache = self.lm.new_cache(cond.shape[0], S)
        for step in tqdm(range(1, S), desc="generating", unit="step", disable=not progress):
            last = sequence[..., step - 1 : step]  # [B, K, 1]
            inputs = torch.cat([last, last]) if guided else last  # CFG: one doubled batch, cond rows first
            logits = self.lm(inputs, cond if step == 1 else None, cache=cache)[:, :, -1].float()  # [B(x2), K, V]
            if guided:
                logits = classifier_free_guidance(logits, params.cfg_coef)  # [B, K, V]
            tokens = sample_next_token(logits, params.use_sampling, params.temperature, params.top_k, params.top_p,
                                       generator)  # [B, K]
            current = sequence[..., step]
            sequence[..., step] = torch.where(current == UNKNOWN, tokens, current)  # delay masking keeps specials
        return revert_delay_pattern(sequence, config.delays)  # [B, K, T]

"""MusicGen: text (and optionally an audio prompt) -> codec tokens -> audio.

    descriptions --T5--> text states --LM proj--> cond [B, L, D] (+ B null rows for CFG)
    cond (+ prompt codes) --LM over the delay pattern, window by window--> codes [B, K, T]
    codes --EnCodec decoder--> audio [B, C, T * hop]

The token loops live in `inference/generation.py`; this class wires the parts and handles audio in and out.
"""

import math
import os
from collections.abc import Callable
from functools import partial

import torch
from tqdm.auto import tqdm

from encodec import EncodecModel
from inference.audio import check_finite, resample
from inference.audio_prompt import prepare_prompt
from inference.fast import generate_window_fast
from inference.generation import SamplingParams, generate_long, generate_window, plan_windows, window_steps
from inference.loading import load_musicgen_parts
from lm.chroma import ChromaExtractor, null_chroma
from lm.model import MusicGenLM


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class MusicGen:
    """The MusicGen text-to-music model: a T5 text encoder, the MusicGen LM, and the EnCodec codec.

    Args:
        lm: the language model over delayed codec tokens.
        codec: the audio codec (mono; stereo models interleave left/right codebooks).
        text: the text conditioner (`lm.conditioning`: T5, or the word lookup table of small trained models).
        max_duration: seconds generated in one window (the models were trained on 30 s excerpts).
        extend_stride: seconds added by each further window of a longer piece (audiocraft: 18 s, so each
            window re-reads the last max_duration - extend_stride = 12 s as its prompt). Default
            min(18, 0.6 * max_duration), for models trained on windows shorter than 30 s.
    """

    def __init__(self, lm: MusicGenLM, codec: EncodecModel, text: torch.nn.Module, max_duration: float = 30.0,
                 extend_stride: float | None = None):
        self.lm, self.codec, self.text = lm, codec, text
        # audiocraft's 18 s for 30 s windows; models trained on shorter windows keep the same 60% stride
        self.max_duration = max_duration
        self.extend_stride = extend_stride if extend_stride is not None else min(18.0, 0.6 * max_duration)
        # The decoding loop: inference/fast.py (static cache, prefill + one-step decode; equal tokens) by default,
        # inference/generation.py's reference loop with fast=False. cuda_graphs records the step on CUDA.
        self.fast, self.cuda_graphs = True, False
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
        return cls(parts.lm, parts.codec, parts.text, max_duration=parts.max_duration)

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
                 cfg_coef: float = 3.0, progress: bool = False,
                 callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Generate music for each description. Returns audio [B, C, N] at `sample_rate`, N = T * hop.

        Args:
            descriptions: one text per sample; None or "" generates without text.
            duration: seconds of audio (T = duration * frame_rate frames); longer than `max_duration` is
                generated in sliding windows.
            seed: seeds the sampling; the same seed, settings and device give the same audio.
            use_sampling, top_k, top_p, temperature: see `lm.sampling.sample_next_token`.
            cfg_coef: classifier-free guidance strength; 1.0 (or less) turns guidance off.
            progress: show a progress bar over all decoding steps of all windows.
            callback: called as callback(steps_done, steps_total) after every decoding step.
        """
        codes = self.generate_tokens(descriptions, duration, seed, use_sampling, top_k, top_p, temperature,
                                     cfg_coef, progress, callback)
        return self.decode(codes)

    def generate_tokens(self, descriptions: list[str | None] | str, duration: float = 10.0, seed: int | None = None,
                        use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0, temperature: float = 1.0,
                        cfg_coef: float = 3.0, progress: bool = False,
                        callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Like `generate`, but return the codec tokens [B, K, T] instead of audio."""
        descriptions = [descriptions] if isinstance(descriptions, str) else list(descriptions)
        if not descriptions:
            raise ValueError("give at least one description (None or '' for unconditional generation)")
        prompt = torch.zeros(len(descriptions), self.lm.config.num_codebooks, 0, dtype=torch.long,
                             device=self.device)
        params = SamplingParams(use_sampling, top_k, top_p, temperature, cfg_coef)
        return self._generate(descriptions, prompt, self._num_frames(duration), params, seed, progress, callback)

    def generate_with_chroma(self, descriptions: list[str | None] | str, melody_wavs: torch.Tensor | list,
                             melody_sample_rate: int, duration: float = 10.0, seed: int | None = None,
                             use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                             temperature: float = 1.0, cfg_coef: float = 3.0, progress: bool = False,
                             callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Generate music that follows a melody (melody models only). Returns audio [B, C, N].

        The melody's chromagram (its loudest pitch class per 128 ms frame) is prepended to the text condition.
        Unlike audiocraft we do not separate the drums and bass out first (demucs): the chroma is computed on
        the whole mix, which works best for melodic recordings.

        Args:
            descriptions: one text per melody (None for none).
            melody_wavs: [B, C, N] or [C, N] audio, or a list of [C, N] tensors / None (no melody for that item).
            melody_sample_rate: their sample rate (resampled to the model's).
            Other arguments as `generate`; the duration is limited to one window (`max_duration`).
        """
        if self.lm.config.num_chroma is None:
            raise ValueError("this model is not a melody model: it cannot follow a melody")
        descriptions = [descriptions] if isinstance(descriptions, str) else list(descriptions)
        if isinstance(melody_wavs, torch.Tensor):
            melody_wavs = list(melody_wavs[None] if melody_wavs.dim() == 2 else melody_wavs)
        if len(melody_wavs) != len(descriptions):
            raise ValueError(f"got {len(melody_wavs)} melodies for {len(descriptions)} descriptions")
        num_frames = self._num_frames(duration)
        if num_frames > self.max_duration * self.frame_rate + 1e-6:
            raise ValueError(f"melody conditioning covers one window: duration must be <= {self.max_duration} s")
        chroma = [self._chroma(wav, melody_sample_rate) for wav in melody_wavs]
        prompt = torch.zeros(len(descriptions), self.lm.config.num_codebooks, 0, dtype=torch.long,
                             device=self.device)
        params = SamplingParams(use_sampling, top_k, top_p, temperature, cfg_coef)
        codes = self._generate(descriptions, prompt, num_frames, params, seed, progress, callback, chroma)
        return self.decode(codes)

    def generate_continuation(self, prompt_wav: torch.Tensor, prompt_sample_rate: int,
                              descriptions: list[str | None] | str | None = None, duration: float = 10.0,
                              seed: int | None = None, use_sampling: bool = True, top_k: int = 250,
                              top_p: float = 0.0, temperature: float = 1.0, cfg_coef: float = 3.0,
                              progress: bool = False,
                              callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Continue a piece of audio. Returns [B, C, N]: the prompt's reconstruction, then the continuation.

        Args:
            prompt_wav: [B, C, N] or [C, N] audio at `prompt_sample_rate` (resampled and mixed to the codec's
                rate and channels here).
            descriptions: None (no text) or one text per prompt.
            duration: seconds of the result, prompt included.
            Other arguments as `generate`.
        """
        prompt = prepare_prompt(self.codec, self.audio_channels, prompt_wav, prompt_sample_rate)  # [B, K, T_p]
        prompt = prompt.to(self.device)
        batch = prompt.shape[0]
        if descriptions is None:
            descriptions = [None] * batch
        descriptions = [descriptions] if isinstance(descriptions, str) else list(descriptions)
        if len(descriptions) != batch:
            raise ValueError(f"got {len(descriptions)} descriptions for {batch} audio prompts")
        num_frames = self._num_frames(duration)
        if prompt.shape[-1] >= num_frames:
            raise ValueError(f"the prompt ({prompt.shape[-1] / self.frame_rate:.2f} s) must be shorter than the "
                             f"requested duration ({duration} s), which includes it")
        params = SamplingParams(use_sampling, top_k, top_p, temperature, cfg_coef)
        codes = self._generate(descriptions, prompt, num_frames, params, seed, progress, callback)
        return self.decode(codes)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T] -> audio [B, C, T * hop]; stereo codes interleave left and right codebooks."""
        if self.audio_channels == 1:
            return self.codec.decode(codes)
        left, right = self.codec.decode(codes[:, 0::2]), self.codec.decode(codes[:, 1::2])
        return torch.cat([left, right], dim=1)  # [B, 2, N]

    def _num_frames(self, duration: float) -> int:
        """T = duration * frame_rate frames (audiocraft truncates with int(); the 1e-6 guards float error)."""
        if not (isinstance(duration, int | float) and math.isfinite(duration) and duration > 0):
            raise ValueError(f"duration must be a positive number of seconds, got {duration}")
        return max(1, math.floor(duration * self.frame_rate + 1e-6))

    def _generate(self, descriptions: list[str | None], prompt: torch.Tensor, num_frames: int,
                  params: SamplingParams, seed: int | None, progress: bool,
                  callback: Callable[[int, int], None] | None,
                  chroma: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        window = math.floor(self.max_duration * self.frame_rate + 1e-6)
        stride = math.floor(self.extend_stride * self.frame_rate + 1e-6)
        max_delay = max(self.lm.config.delays)
        total = sum(window_steps(p, t, max_delay) for p, t in plan_windows(prompt.shape[-1], num_frames, window,
                                                                           stride))
        generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        cond = self._condition(descriptions, with_null=params.cfg_coef > 1.0, chroma=chroma)
        bar = tqdm(total=total, desc="generating", unit="step", disable=not progress)
        done = 0

        def on_step() -> None:
            nonlocal done
            done += 1
            bar.update(1)
            if callback is not None:
                callback(done, total)

        try:
            window_fn = partial(generate_window_fast, compile=self.cuda_graphs) if self.fast else generate_window
            return generate_long(self.lm, cond, prompt, num_frames, window, stride, params, generator, on_step,
                                 window_fn)
        finally:
            bar.close()

    @torch.no_grad()
    def _condition(self, descriptions: list[str | None], with_null: bool,
                   chroma: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """The LM's condition for each description, followed by B null conditions for CFG.

        Text models: projected text [B(x2), L, D] for cross-attention (the null condition is all zeros).
        Melody models: the prefix [chroma, text] [B(x2), 235 + L, D]; the null condition is the null melody
        (pitch class 0) and zero text. `chroma`: one [F, 12] one-hot tensor or None per description.
        """
        states, mask = self.text(descriptions)  # [B, L, D_text], [B, L]
        param = self.lm.out_norm.weight
        text = self.lm.project_condition(states.to(param.dtype), mask)  # [B, L, D]
        if self.lm.config.num_chroma is None:
            return torch.cat([text, torch.zeros_like(text)]) if with_null else text  # [B(x2), L, D]
        chroma = chroma or [None] * len(descriptions)
        melody = [self._null_chroma() if c is None else c for c in chroma]
        frames = self.lm.config.chroma_length  # each melody tiled (or cut) to 235 frames on its own
        melody = torch.stack([c.repeat(-(-frames // c.shape[0]), 1)[:frames] for c in melody])  # [B, 235, 12]
        cond = self.lm.melody_condition(melody.to(param.dtype), text)  # [B, 235 + L, D]
        if not with_null:
            return cond
        null = self._null_chroma()[None].expand(len(descriptions), -1, -1).to(param.dtype)
        return torch.cat([cond, self.lm.melody_condition(null, torch.zeros_like(text))])  # [2B, 235 + L, D]

    def _null_chroma(self) -> torch.Tensor:
        return null_chroma(1, self.lm.config.num_chroma, self.device)[0]  # [1, 12]

    @torch.no_grad()
    def _chroma(self, wav: torch.Tensor | None, sample_rate: int) -> torch.Tensor | None:
        """One-hot chroma [F, 12] of a melody [C, N] (resampled to the model's rate, mixed to mono)."""
        if wav is None:
            return None
        if wav.dim() != 2 or wav.shape[-1] == 0:
            raise ValueError(f"a melody must be a [C, N] waveform with N > 0, got {list(wav.shape)}")
        check_finite(wav, "the melody")
        wav = resample(wav.float().to(self.device), sample_rate, self.sample_rate)
        extractor = ChromaExtractor(self.sample_rate, n_chroma=self.lm.config.num_chroma).to(self.device)
        return extractor(wav[None])[0]  # [F, 12]

"""MusicGen: text (and optionally an audio prompt) -> codec tokens -> audio.

    descriptions --T5--> text states --LM proj--> cond [B, L, D] (+ B null rows for CFG)
    cond (+ prompt codes) --LM over the delay pattern, window by window--> codes [B, K, T]
    codes --EnCodec decoder, in overlapping chunks for long pieces--> audio [B, C, T * hop]

The token loop lives in `inference/generation.py`; this class wires the parts and handles audio in and out.
Speed is applied to the one LM at load time (`inference/speed.py`: reduced precision) and in the loop
(`cuda_graph`: the one-step pass recorded once per window and replayed).
"""

import math
import os
import warnings
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from encodec import EncodecModel
from inference.audio import check_finite, resample
from inference.audio_prompt import prepare_prompt
from inference.chunked import decode_in_chunks
from inference.generation import Window, generate_long, plan_steps, plan_windows
from inference.loading import load_musicgen_parts
from inference.speed import default_quantize, load_transform
from lm.chroma import ChromaExtractor, null_chroma
from lm.model import MusicGenLM
from lm.sampling import SamplingParams


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
        cuda_graph: record each window's one-step pass in a CUDA graph and replay it (CUDA only).
    """

    def __init__(self, lm: MusicGenLM, codec: EncodecModel, text: torch.nn.Module, max_duration: float = 30.0,
                 extend_stride: float | None = None, cuda_graph: bool = False):
        self.lm, self.codec, self.text = lm, codec, text
        # audiocraft's 18 s for 30 s windows; models trained on shorter windows keep the same 60% stride
        self.max_duration = max_duration
        self.extend_stride = extend_stride if extend_stride is not None else min(18.0, 0.6 * max_duration)
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; the model is on {self.device.type}")
        self.cuda_graph = cuda_graph
        codec_codebooks = codec.num_codebooks * lm.config.audio_channels
        if lm.config.num_codebooks != codec_codebooks:
            raise ValueError(f"the LM predicts {lm.config.num_codebooks} codebooks, the codec gives "
                             f"{codec.num_codebooks} per channel x {lm.config.audio_channels} channels")

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike = "facebook/musicgen-small",
                        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                        quantize: str | None = "auto", cuda_graph: bool = False) -> "MusicGen":
        """Load a published MusicGen (Hub repo id, short name like "small", or a local folder of either layout).

        Args:
            device: default CUDA when available, else CPU.
            dtype: the dtype of the LM's matrix products (`inference.speed`); default float16 on CUDA (as
                audiocraft), bfloat16 with int8 weights, else float32. The residual stream, norms and heads of
                the LM, T5 and the codec always run in float32.
            quantize: "auto" (the default): "int8" on a CPU when no dtype is given, the fastest CPU path
                measured against the quality bar (`inference.speed.default_quantize`), else None. None: no quantization
                (exact float32 on a CPU). "int8": the LM's transformer weights as int8 with per-channel scales
                (a quarter of float32's bytes; on CPU 1.7x (Xeon with AMX) to 4.5x (AMD EPYC) faster decoding
                than float32).
            cuda_graph: record each window's one-step pass in a CUDA graph and replay it (CUDA only).
        """
        device = torch.device(device) if device is not None else default_device()
        if quantize not in (None, "auto", "int8"):
            raise ValueError(f"quantize must be None, 'auto' or 'int8', got {quantize!r}")
        if quantize == "auto":
            quantize = default_quantize(device, dtype)
        if quantize is not None and dtype == torch.float32:
            raise ValueError("int8 weights compute with bfloat16 or float16 activations: leave dtype unset or "
                             "choose one of them")
        if dtype is None and quantize is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        # the LM is built in its final form: each float32 tensor cast or quantized as it is read
        parts = load_musicgen_parts(source, device, torch.float32, load_transform(device, dtype, quantize))
        return cls(parts.lm, parts.codec, parts.text, max_duration=parts.max_duration, cuda_graph=cuda_graph)

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
        sampling = SamplingParams(use_sampling=use_sampling, top_k=top_k, top_p=top_p, temperature=temperature,
                                  cfg_coef=cfg_coef)
        return self._generate(descriptions, prompt, self._num_frames(duration), sampling=sampling, seed=seed,
                              progress=progress, callback=callback)

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
        sampling = SamplingParams(use_sampling=use_sampling, top_k=top_k, top_p=top_p, temperature=temperature,
                                  cfg_coef=cfg_coef)
        codes = self._generate(descriptions, prompt, num_frames, sampling=sampling, seed=seed, progress=progress,
                               callback=callback, chroma=chroma)
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
        sampling = SamplingParams(use_sampling=use_sampling, top_k=top_k, top_p=top_p, temperature=temperature,
                                  cfg_coef=cfg_coef)
        codes = self._generate(descriptions, prompt, num_frames, sampling=sampling, seed=seed, progress=progress,
                               callback=callback)
        return self.decode(codes)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, K, T] -> audio [B, C, T * hop]; stereo codes interleave left and right codebooks.

        Up to `CHUNK_FRAMES` frames (30 s) are decoded at once; longer pieces in overlapping chunks
        (inference/chunked.py), so that memory depends on the chunk, not the piece.
        """
        if self.audio_channels == 1:
            return decode_in_chunks(self.codec, codes)
        left, right = decode_in_chunks(self.codec, codes[:, 0::2]), decode_in_chunks(self.codec, codes[:, 1::2])
        return torch.cat([left, right], dim=1)  # [B, 2, N]

    def _num_frames(self, duration: float) -> int:
        """T = duration * frame_rate frames (audiocraft truncates with int(); the 1e-6 guards float error)."""
        if not (isinstance(duration, int | float) and math.isfinite(duration) and duration > 0):
            raise ValueError(f"duration must be a positive number of seconds, got {duration}")
        return max(1, math.floor(duration * self.frame_rate + 1e-6))

    def _window_frames(self) -> int:
        return math.floor(self.max_duration * self.frame_rate + 1e-6)

    def plan(self, prompt_frames: int, num_frames: int) -> list[Window]:
        """The windows that generate `num_frames` frames after a prompt of `prompt_frames` (one if it fits)."""
        stride = math.floor(self.extend_stride * self.frame_rate + 1e-6)
        return plan_windows(prompt_frames, num_frames, self._window_frames(), stride)

    def _generate(self, descriptions: list[str | None], prompt: torch.Tensor, num_frames: int, *,
                  sampling: SamplingParams, seed: int | None, progress: bool,
                  callback: Callable[[int, int], None] | None,
                  chroma: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        plan = self.plan(prompt.shape[-1], num_frames)
        if plan[0].start > 0:  # a prompt of a window or more: the first window reads only its end
            warnings.warn(f"the audio prompt ({prompt.shape[-1] / self.frame_rate:.1f} s) is longer than one window "
                          f"of this model ({self.max_duration:g} s): continuing from its last "
                          f"{plan[0].prompt / self.frame_rate:g} s", stacklevel=3)
        total = plan_steps(plan, max(self.lm.config.delays))
        generator = None if seed is None else torch.Generator(self.device).manual_seed(seed)
        cond = self._condition(descriptions, with_null=sampling.guided, chroma=chroma)
        bar = tqdm(total=total, desc="generating", unit="step", disable=not progress)
        done = 0

        def on_step() -> None:
            nonlocal done
            done += 1
            bar.update(1)
            if callback is not None:
                callback(done, total)

        try:
            return generate_long(self.lm, cond, prompt, plan, sampling=sampling, generator=generator,
                                 on_step=on_step, cuda_graph=self.cuda_graph)
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
        frames = self.lm.config.chroma_length

        def tiled(c: torch.Tensor) -> torch.Tensor:  # [F, 12] -> [235, 12]: a short melody repeats, as in transformers
            return c.repeat(-(-frames // c.shape[0]), 1)[:frames].to(param.dtype)

        null = tiled(self._null_chroma())  # [235, 12]
        melody = torch.stack([null if c is None else tiled(c) for c in chroma or [None] * len(descriptions)])
        cond = self.lm.melody_condition(melody, text)  # [B, 235 + L, D]
        if not with_null:
            return cond
        nulls = null[None].expand(len(descriptions), -1, -1)  # [B, 235, 12]
        return torch.cat([cond, self.lm.melody_condition(nulls, torch.zeros_like(text))])  # [2B, 235 + L, D]

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

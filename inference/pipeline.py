"""MusicGen: text (and optionally an audio prompt) -> codec tokens -> audio.

    descriptions --T5--> text states --LM proj--> cond [B, L, D] (+ B null rows for CFG)
    cond (+ prompt codes) --LM over the delay pattern, window by window--> codes [B, K, T]
    codes --EnCodec decoder, in overlapping chunks for long pieces--> audio [B, C, T * hop]

The token loop lives in `inference/generation.py` and hands out each frame as it completes: `generate*` gather
them and decode, `generate_stream` decodes them as they come (`inference/streaming.py`). This class wires the
parts and checks the inputs; the LM's condition is built in `inference/conditions.py` (text, melody, CFG's null
rows), an audio prompt's codes in `inference/audio_prompt.py`. Speed is applied to the one LM at load time
(`inference/speed.py`: int8, the CPU default, or reduced precision) and in the loop (`step_transform`, e.g. the
one-step pass recorded once per window in a CUDA graph and replayed).
"""

import math
import os
import warnings
from collections.abc import Callable, Iterator

import torch
from tqdm.auto import tqdm

from encodec import EncodecModel
from inference.audio_prompt import prompt_codes
from inference.checks import (
    check_descriptions,
    check_device,
    check_duration,
    check_sample_rate,
    check_sampling,
    check_seed,
)
from inference.chunked import decode_in_chunks
from inference.conditions import lm_condition, melody_chroma
from inference.generation import Window, cuda_graph_step, piece_frames, plan_steps, plan_windows
from inference.loading import load_musicgen_parts
from inference.lora import MergeAtLoad
from inference.speed import default_quantize, load_transform
from inference.streaming import stream_audio
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
        self.step_transform = cuda_graph_step if cuda_graph else None  # wraps the decoding loop's one-step pass
        codec_codebooks = codec.num_codebooks * lm.config.audio_channels
        if lm.config.num_codebooks != codec_codebooks:
            raise ValueError(f"the LM predicts {lm.config.num_codebooks} codebooks, the codec gives "
                             f"{codec.num_codebooks} per channel x {lm.config.audio_channels} channels")

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike = "facebook/musicgen-small",
                        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                        quantize: str | None = "auto", cuda_graph: bool = False,
                        lora: str | os.PathLike | None = None, lora_scale: float = 1.0) -> "MusicGen":
        """Load a published MusicGen (Hub repo id, short name like "small", or a local folder of either layout).

        Args:
            device: default CUDA when available, else CPU.
            dtype: the dtype of the LM's matrix products (`inference.speed`); default float16 on CUDA (as
                audiocraft), bfloat16 with int8 weights, else float32. The residual stream, norms and heads of
                the LM, T5 and the codec always run in float32.
            quantize: "auto" (the default): "int8" on a CPU when no dtype is given, the fastest CPU path
                measured against the quality bar (`inference.speed.default_quantize`), else None. None: no quantization
                (exact float32 on a CPU). "int8": the LM's transformer weights as int8 with per-channel scales
                (a quarter of float32's bytes; on CPU 1.6x (Xeon with AMX) to 4.5x (AMD EPYC) faster decoding
                than float32).
            cuda_graph: record each window's one-step pass in a CUDA graph and replay it (CUDA only).
            lora: a LoRA adapter folder (PEFT's format, `inference.lora`) merged into the LM's float weights as
                they load, before any cast or quantization; lora_scale multiplies its change.
        """
        device = check_device(device) if device is not None else default_device()
        if dtype not in (None, torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be None, torch.float32, torch.float16 or torch.bfloat16, got {dtype!r}")
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
        transform = load_transform(device, dtype, quantize)
        if lora is not None:
            transform = MergeAtLoad(lora, lora_scale, transform, base=str(source)).transform()
        parts = load_musicgen_parts(source, device, torch.float32, transform)
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
            use_sampling, top_k, top_p, temperature: see `lm.sampling.sample_next_token`; greedy decoding is
                use_sampling=False (a temperature must be above 0). Every argument is checked as the command line
                checks it (`inference/checks.py`): a bad one is a one-line ValueError naming it.
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
        descriptions = check_descriptions(descriptions)
        sampling = SamplingParams(**check_sampling(use_sampling, top_k, top_p, temperature, cfg_coef))
        return self._generate(descriptions, self._no_prompt(len(descriptions)), self._num_frames(duration),
                              sampling=sampling, seed=seed, progress=progress, callback=callback)

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
        descriptions = check_descriptions(descriptions)
        num_frames = self._num_frames(duration)
        chroma = self._melodies(descriptions, melody_wavs, melody_sample_rate, num_frames)
        prompt = self._no_prompt(len(descriptions))
        sampling = SamplingParams(**check_sampling(use_sampling, top_k, top_p, temperature, cfg_coef))
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
        num_frames = self._num_frames(duration)
        sampling = SamplingParams(**check_sampling(use_sampling, top_k, top_p, temperature, cfg_coef))
        prompt, descriptions = self._audio_prompt(prompt_wav, prompt_sample_rate, descriptions, num_frames)
        codes = self._generate(descriptions, prompt, num_frames, sampling=sampling, seed=seed, progress=progress,
                               callback=callback)
        return self.decode(codes)

    def generate_stream(self, descriptions: list[str | None] | str, duration: float = 10.0, seed: int | None = None,
                        chunk_seconds: float = 1.0, first_chunk_seconds: float | None = 0.25,
                        use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                        temperature: float = 1.0, cfg_coef: float = 3.0, progress: bool = False,
                        callback: Callable[[int, int], None] | None = None, prompt_wav: torch.Tensor | None = None,
                        prompt_sample_rate: int | None = None, melody_wavs: torch.Tensor | list | None = None,
                        melody_sample_rate: int | None = None) -> Iterator[torch.Tensor]:
        """Generate as `generate` (or `generate_continuation` with `prompt_wav`, `generate_with_chroma` with
        `melody_wavs`), yielding the audio while it is made: chunks [B, C, n] at `sample_rate`.

        Each chunk comes as soon as the tokens it needs exist (inference/streaming.py: the codec's decoder is fed
        in order, its LSTM state carried, so nothing is decoded twice). Put end to end, the chunks are the audio
        the matching `generate*` call returns with the same arguments (up to float rounding), before loudness
        normalisation. With an audio prompt the first chunk is the prompt's own reconstruction, at once.

        Args:
            chunk_seconds: audio per chunk (the last one is what is left); smaller chunks come sooner.
            first_chunk_seconds: the first chunk's audio (at most `chunk_seconds`; None: `chunk_seconds`). A
                quarter second by default, so that the first audio comes after about 23 decoding steps instead
                of 61 (the chunk, the 8 frames the decoder holds back, the delay pattern's 3 steps).
            Other arguments as `generate`, `generate_continuation` and `generate_with_chroma`.
        """
        for name, seconds in (("chunk_seconds", chunk_seconds), ("first_chunk_seconds", first_chunk_seconds)):
            given = name == "chunk_seconds" or seconds is not None
            if given and not (isinstance(seconds, int | float) and 0 < seconds < math.inf):
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds}")
        if prompt_wav is not None and melody_wavs is not None:
            raise ValueError("give an audio prompt or a melody, not both")
        descriptions = check_descriptions(descriptions)
        num_frames = self._num_frames(duration)
        chroma = None
        if prompt_wav is not None:
            prompt, descriptions = self._audio_prompt(prompt_wav, prompt_sample_rate, descriptions, num_frames)
        else:
            prompt = self._no_prompt(len(descriptions))
            if melody_wavs is not None:
                chroma = self._melodies(descriptions, melody_wavs, melody_sample_rate, num_frames)
        sampling = SamplingParams(**check_sampling(use_sampling, top_k, top_p, temperature, cfg_coef))
        frames = self._frames(descriptions, prompt, num_frames, sampling=sampling, seed=seed, progress=progress,
                              callback=callback, chroma=chroma)
        chunk_frames = max(1, round(chunk_seconds * self.frame_rate))
        first = chunk_frames if first_chunk_seconds is None else max(1, round(first_chunk_seconds * self.frame_rate))
        with torch.no_grad():
            yield from stream_audio(self.codec, self.audio_channels, prompt, frames, chunk_frames,
                                    min(first, chunk_frames))

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
        return max(1, math.floor(check_duration(duration) * self.frame_rate + 1e-6))

    def _window_frames(self) -> int:
        return math.floor(self.max_duration * self.frame_rate + 1e-6)

    def plan(self, prompt_frames: int, num_frames: int) -> list[Window]:
        """The windows that generate `num_frames` frames after a prompt of `prompt_frames` (one if it fits)."""
        stride = math.floor(self.extend_stride * self.frame_rate + 1e-6)
        return plan_windows(prompt_frames, num_frames, self._window_frames(), stride)

    def _no_prompt(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.lm.config.num_codebooks, 0, dtype=torch.long, device=self.device)  # [B, K, 0]

    def _audio_prompt(self, prompt_wav: torch.Tensor, prompt_sample_rate: int | None,
                      descriptions: list[str | None] | str | None,
                      num_frames: int) -> tuple[torch.Tensor, list[str | None]]:
        """The prompt's codes [B, K, T_p] on the LM's device, and one description per prompt (`prompt_codes`)."""
        prompt, descriptions = prompt_codes(self.codec, self.audio_channels, prompt_wav, prompt_sample_rate,
                                            descriptions, num_frames)
        return prompt.to(self.device), descriptions

    def _melodies(self, descriptions: list[str | None], melody_wavs: torch.Tensor | list,
                  melody_sample_rate: int | None, num_frames: int) -> list[torch.Tensor | None]:
        """One chroma [F, 12] (or None) per description, after checking that the model can follow them."""
        if self.lm.config.num_chroma is None:
            raise ValueError("this model is not a melody model: it cannot follow a melody")
        check_sample_rate(melody_sample_rate, "melody_sample_rate")
        if isinstance(melody_wavs, torch.Tensor):
            melody_wavs = list(melody_wavs[None] if melody_wavs.dim() == 2 else melody_wavs)
        if len(melody_wavs) != len(descriptions):
            raise ValueError(f"got {len(melody_wavs)} melodies for {len(descriptions)} descriptions")
        if num_frames > self.max_duration * self.frame_rate + 1e-6:
            raise ValueError(f"melody conditioning covers one window: duration must be <= {self.max_duration} s")
        return [melody_chroma(wav, melody_sample_rate, self.sample_rate, self.lm.config.num_chroma, self.device)
                for wav in melody_wavs]

    def _generate(self, descriptions: list[str | None], prompt: torch.Tensor, num_frames: int, *,
                  sampling: SamplingParams, seed: int | None, progress: bool,
                  callback: Callable[[int, int], None] | None,
                  chroma: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Codes [B, K, T]: the prompt, then the frames `_frames` makes."""
        frames = self._frames(descriptions, prompt, num_frames, sampling=sampling, seed=seed, progress=progress,
                              callback=callback, chroma=chroma)
        return torch.cat([prompt, torch.stack(list(frames), dim=-1)], dim=-1)  # [B, K, T]

    def _frames(self, descriptions: list[str | None], prompt: torch.Tensor, num_frames: int, *,
                sampling: SamplingParams, seed: int | None, progress: bool,
                callback: Callable[[int, int], None] | None,
                chroma: list[torch.Tensor | None] | None = None) -> Iterator[torch.Tensor]:
        """The new frames [B, K] after `prompt` [B, K, T_prompt], up to `num_frames`, window after window."""
        seed = check_seed(seed)
        plan = self.plan(prompt.shape[-1], num_frames)
        if plan[0].start > 0:  # a prompt of a window or more: the first window reads only its end
            warnings.warn(f"the audio prompt ({prompt.shape[-1] / self.frame_rate:.1f} s) is longer than one window "
                          f"of this model ({self.max_duration:g} s): continuing from its last "
                          f"{plan[0].prompt / self.frame_rate:g} s", stacklevel=4)
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
            yield from piece_frames(self.lm, cond, prompt, plan, sampling=sampling, generator=generator,
                                    on_step=on_step, step_transform=self.step_transform)
        finally:
            bar.close()

    def _condition(self, descriptions: list[str | None], with_null: bool,
                   chroma: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """The LM's condition [B(x2), ...] (inference/conditions.py)."""
        return lm_condition(self.lm, self.text, descriptions, with_null, chroma)

"""The command line's inputs, checked before any model loads: prompts, numbers, sampling, device, audio files.

Each mistake is one `CliError` line naming the option (generate.py prints it as `error: ...`), so that a typo
costs neither a download nor a generation.
"""

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lm.sampling import SamplingParams

MAX_DURATION = 3600.0  # seconds; longer requests are almost certainly typos
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit; we keep to the signed range that every API accepts
MELODY_WINDOW = 30.0  # seconds a melody model follows in one window (the published models'), unless its config says


class CliError(Exception):
    """A mistake in the command line or its inputs, reported as one line without a traceback."""


def read_prompts(positional: list[str], prompts_file: Path | None) -> list[str]:
    prompts = list(positional)
    for i, prompt in enumerate(prompts, 1):
        if bad := undecodable_byte(prompt):
            raise CliError(f"PROMPT {i} is not valid UTF-8 (byte {bad}): check the terminal's encoding")
    if prompts_file is not None:
        try:
            data = prompts_file.read_bytes()
        except OSError as err:
            raise CliError(f"cannot read --prompts-file {prompts_file}: {err.strerror or err}") from None
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise CliError(f"--prompts-file {prompts_file}: line {line} is not valid UTF-8 (byte "
                           f"0x{data[err.start]:02x}); save the file as UTF-8") from None
        prompts += [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise CliError('give at least one prompt (or "" for unconditional generation), or --prompts-file')
    return [p.strip() for p in prompts]


def undecodable_byte(text: str) -> str | None:
    """The first byte that was not valid UTF-8 in a command-line argument (Python keeps it as a lone
    surrogate, U+DC80..U+DCFF), as "0xff"; None when the text is valid."""
    for char in text:
        if 0xDC80 <= ord(char) <= 0xDCFF:
            return f"0x{ord(char) - 0xDC00:02x}"
        if 0xD800 <= ord(char) <= 0xDFFF:
            return f"U+{ord(char):04X}"
    return None


def check_numbers(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.duration) and 0 < args.duration <= MAX_DURATION):
        raise CliError(f"--duration must be a number of seconds in (0, {MAX_DURATION:g}], got {args.duration}")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise CliError(f"--seed must be in [0, 2**63 - 1], got {args.seed}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise CliError(f"--temperature must be a positive number, got {args.temperature}")
    if not (math.isfinite(args.cfg) and args.cfg >= 0):
        raise CliError(f"--cfg must be a number >= 0 (1 turns guidance off), got {args.cfg}")
    if not (math.isfinite(args.lufs) and -70 <= args.lufs <= 0):
        raise CliError(f"--lufs must be between -70 and 0, got {args.lufs}")


def sampling_settings(args: argparse.Namespace) -> "SamplingParams":
    """The one sampling settings object of the run, checked once."""
    from lm.sampling import SamplingParams

    try:
        return SamplingParams(use_sampling=not args.greedy, top_k=args.top_k, top_p=args.top_p,
                              temperature=args.temperature, cfg_coef=args.cfg)
    except ValueError as err:  # "top_k must be >= 0, got -1": the field comes first
        flags = {"top_k": "--top-k", "top_p": "--top-p", "temperature": "--temperature", "cfg_coef": "--cfg"}
        raise CliError(f"{flags.get(str(err).split()[0], 'sampling')}: {err}") from None


def resolve_device(device: str, dtype: str, quantize: str) -> tuple[str, str, str]:
    """(device, dtype, quantize) with every "auto" resolved; --quantize auto is MusicGen.from_pretrained's default:
    int8 on a CPU when --dtype is auto (inference.speed.default_quantize), else none."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: no CUDA device is available here (use --device cpu)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if quantize == "auto":
        from inference.speed import default_quantize

        quantize = default_quantize(device, None if dtype == "auto" else getattr(torch, dtype)) or "none"
    if dtype == "auto":
        dtype = "float16" if device == "cuda" else "bfloat16" if quantize == "int8" else "float32"
    if quantize == "int8" and dtype == "float32":
        raise CliError("--quantize int8 computes in bfloat16 or float16: drop --dtype float32")
    return device, dtype, quantize


def read_prompt_audio(path: Path, duration: float):
    """The (wav [C, N], rate) to continue; its length is checked from the file's header before decoding it."""
    from inference.audio import audio_seconds, read_audio

    try:
        seconds = audio_seconds(path)
        if seconds >= duration:
            raise CliError(f"--prompt-audio {path} lasts {seconds:.2f} s: --duration ({duration:g} s) counts the "
                           "prompt, so it must be longer")
        return read_audio(path)
    except ValueError as err:  # AudioFileError: missing, unreadable, NaN samples
        raise CliError(f"--prompt-audio: {err}") from None


def read_melody(path: Path, model: str, duration: float) -> tuple:
    """The melody file as (wav [C, N], rate), after checking that the model can follow it for `duration`."""
    from inference.audio import read_audio
    from inference.loading import is_melody_model, resolve_source

    if not is_melody_model(model):
        raise CliError(f"--melody needs a melody model (--model melody, melody-large, stereo-melody, ...); "
                       f"{model} is not one")
    window = MELODY_WINDOW
    config_file = Path(resolve_source(model)) / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        window = float(config.get("max_duration", window)) if isinstance(config, dict) else window
    if duration > window:
        raise CliError(f"--melody: a melody model follows a melody for one window of {window:g} s; --duration "
                       f"{duration:g} s is longer")
    try:
        return read_audio(path, max_seconds=MAX_DURATION)  # the header is read first: no 2-hour decode
    except ValueError as err:
        raise CliError(f"--melody: {err}") from None

"""The command line's inputs, checked before any model loads: prompts, numbers, sampling, device, audio files.

Each mistake is one `CliError` line naming the option (generate.py prints it as `error: ...`), so that a typo
costs neither a download nor a generation. The rules shared with the Python API live in `inference/checks.py`.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lm.sampling import SamplingParams

from inference.checks import (
    MAX_DURATION,
    check_duration,
    check_number,
    check_sampling,
    check_seed,
    undecodable_char,
)

MAX_PROMPTS_FILE = 16 * 2**20  # bytes of --prompts-file: 100,000 prompts of 160 characters
MELODY_WINDOW = 30.0  # seconds a melody model follows in one window (the published models'), unless its config says


class CliError(Exception):
    """A mistake in the command line or its inputs, reported as one line without a traceback."""


MAX_MESSAGE = 400  # characters of an error message shown


def fail(message: str, code: int = 1) -> int:
    """Report an error as one line on stderr (long ones, like lists of mismatched tensors, cut short)."""
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]} ... ({len(message) - MAX_MESSAGE} more characters)"
    print(f"error: {message}", file=sys.stderr)
    return code


def read_prompts(positional: list[str], prompts_file: Path | None) -> list[str]:
    prompts = list(positional)
    for i, prompt in enumerate(prompts, 1):
        if bad := undecodable_char(prompt):
            raise CliError(f"PROMPT {i} is not valid UTF-8 ({bad}): check the terminal's encoding")
    if prompts_file is not None:
        try:
            with open(prompts_file, "rb") as f:
                data = f.read(MAX_PROMPTS_FILE + 1)  # /dev/zero, or a recording given by mistake, ends here
        except OSError as err:
            raise CliError(f"cannot read --prompts-file {prompts_file}: {err.strerror or err}") from None
        if len(data) > MAX_PROMPTS_FILE:
            raise CliError(f"--prompts-file {prompts_file} is larger than {MAX_PROMPTS_FILE // 2**20} MB: not a "
                           "file of prompts (one per line)")
        if b"\0" in data:
            line = data.count(b"\n", 0, data.index(b"\0")) + 1
            raise CliError(f"--prompts-file {prompts_file}: line {line} holds a NUL byte: not a text file")
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


SAMPLING_FLAGS = {"top_k": "--top-k", "top_p": "--top-p", "temperature": "--temperature", "cfg_coef": "--cfg"}


def check_numbers(args: argparse.Namespace) -> None:
    """The numbers of the command line, by the rules of the Python API (inference/checks.py), before torch loads."""
    try:
        check_duration(args.duration, "--duration")
        check_seed(args.seed, "--seed")
        check_sampling(not args.greedy, args.top_k, args.top_p, args.temperature, args.cfg, SAMPLING_FLAGS)
        check_number(args.lufs, "--lufs", low=-70, high=0)
    except ValueError as err:
        raise CliError(str(err)) from None


def sampling_settings(args: argparse.Namespace) -> "SamplingParams":
    """The one sampling settings object of the run, checked once."""
    from lm.sampling import SamplingParams

    try:
        return SamplingParams(**check_sampling(not args.greedy, args.top_k, args.top_p, args.temperature, args.cfg,
                                               SAMPLING_FLAGS))
    except ValueError as err:
        raise CliError(str(err)) from None


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
    from audio.clip import audio_seconds, read_audio

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
    from audio.clip import read_audio
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

"""The web app's requests, checked by the command line's rules (frontend/cli_inputs.py) before any work.

A request from the page or from the API (`gradio_client`) carries the same values as a command line: a prompt,
numbers, and optional audio files. They go through the CLI's own checks, so both front ends accept and refuse the
same things; only the name in the message changes (`--top-k` on the command line, `top-k` on the page). Uploads
get two more checks, from the file's size and header, before a sample is decoded: the page takes files from
anyone who can reach it.
"""

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from frontend.cli_inputs import (
    CliError,
    check_numbers,
    read_melody,
    read_prompt_audio,
    read_prompts,
    sampling_settings,
)

if TYPE_CHECKING:
    import torch

    from lm.sampling import SamplingParams

MAX_PROMPT_CHARS = 2000  # a description longer than this is pasted by mistake (T5 reads 512 tokens at most)
MAX_UPLOAD_BYTES = 50 * 2**20  # 50 MB: five minutes of 44.1 kHz stereo 16-bit WAV
MAX_UPLOAD_SECONDS = 300.0  # an audio prompt or a melody longer than five minutes is refused from its header
# The CLI's flags as the page names them, in the messages of its checks.
FIELD_NAMES = {"--duration": "duration", "--seed": "seed", "--top-k": "top-k", "--top-p": "top-p",
               "--temperature": "temperature", "--cfg": "CFG", "--prompt-audio": "the audio prompt",
               "--melody": "the melody", "PROMPT 1": "the prompt", "--model": "the model"}


class RequestError(ValueError):
    """A request the app refuses, with the one line that the page shows."""


@dataclass(frozen=True)
class Request:
    """One generation request, checked: what the pipeline is given, and what the sidecar records."""

    prompt: str
    duration: float
    seed: int | None  # None: the session draws one
    sampling: "SamplingParams"
    prompt_audio: "tuple[torch.Tensor, int] | None" = None  # (wav [C, N], rate) to continue
    melody: "tuple[torch.Tensor, int] | None" = None  # (wav [C, N], rate) to follow
    prompt_audio_name: str | None = None  # the uploaded file's name (never its server path)
    melody_name: str | None = None


def check_request(prompt: str | None, duration: float | None, seed: str | float | None, top_k: float, top_p: float,
                  temperature: float, cfg: float, *, model: str, max_duration: float,
                  prompt_audio: str | None = None, melody: str | None = None) -> Request:
    """Check every value of a request by the CLI's rules and read its uploads; RequestError (one line) if any
    is wrong. `model` is the source that runs (melody models only take a melody); `max_duration` the app's
    limit (the CLI's is an hour)."""
    prompt = "" if prompt is None else prompt
    if not isinstance(prompt, str):
        raise RequestError(f"the prompt must be text, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"the prompt is {len(prompt)} characters long, more than the limit of {MAX_PROMPT_CHARS}")
    for name, value in (("duration", duration), ("top-p", top_p), ("temperature", temperature), ("CFG", cfg)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(f"{name} must be a number, got {value!r}")
    if duration > max_duration:
        raise RequestError(f"duration must be at most {max_duration:g} s in this app, got {duration:g}")
    args = argparse.Namespace(duration=duration, seed=parse_seed(seed), top_k=whole_number(top_k, "top-k"),
                              top_p=top_p, temperature=temperature, cfg=cfg, greedy=False, lufs=-14.0)
    if melody and prompt_audio:
        raise RequestError("give a melody or an audio prompt, not both")
    try:
        (text,) = read_prompts([prompt], None)
        check_numbers(args)
        sampling = sampling_settings(args)
        continued = read_prompt_audio(checked_upload(prompt_audio, "the audio prompt"), args.duration) \
            if prompt_audio else None
        followed = read_melody(checked_upload(melody, "the melody"), model, args.duration) if melody else None
    except (CliError, ValueError, TypeError) as err:
        raise RequestError(page_message(str(err), [prompt_audio, melody])) from None
    return Request(text, float(args.duration), args.seed, sampling, continued, followed,
                   Path(prompt_audio).name if prompt_audio else None, Path(melody).name if melody else None)


def parse_seed(seed: str | float | None) -> int | None:
    """The seed field: empty (None: a random seed) or a whole number, typed as text or sent as a number."""
    if isinstance(seed, str):
        text = seed.strip()
        if not text:
            return None
        try:
            seed = int(text)
        except ValueError:
            try:
                seed = float(text)
            except ValueError:
                raise RequestError(f"seed must be a whole number (or empty for a random one), got {text[:40]!r}") \
                    from None
    return whole_number(seed, "seed")


def whole_number(value: float | None, name: str) -> int | None:
    """A number the page sends as a float (gr.Number, gr.Slider) as an int; RequestError if it has a fraction."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if not isinstance(value, float) or not value.is_integer():
        raise RequestError(f"{name} must be a whole number, got {value}")
    return int(value)


def checked_upload(path: str, what: str) -> Path:
    """An uploaded audio file (`what`: "the melody", ...), refused from its size and header (too large, too long,
    not audio) before it is decoded."""
    from audio.clip import audio_seconds

    path = Path(path)
    size = os.path.getsize(path) if path.is_file() else 0
    if size > MAX_UPLOAD_BYTES:
        raise RequestError(f"{what} {path.name} is {size / 2**20:.1f} MB, more than the limit of "
                           f"{MAX_UPLOAD_BYTES / 2**20:g} MB")
    try:
        seconds = audio_seconds(path)
    except ValueError as err:  # AudioFileError: missing, not audio
        raise RequestError(f"{what}: {err}") from None
    if seconds > MAX_UPLOAD_SECONDS:
        raise RequestError(f"{what} {path.name} lasts {seconds:.1f} s, longer than the limit of "
                           f"{MAX_UPLOAD_SECONDS:g} s")
    return path


def page_message(message: str, uploads: list[str | None]) -> str:
    """A check's message as the page shows it: the page's field names, and uploads by their names, not the
    server's temporary paths (the page capitalises the first letter)."""
    for upload in uploads:
        if upload:
            message = message.replace(str(upload), Path(upload).name)
    pattern = "|".join(re.escape(flag) for flag in sorted(FIELD_NAMES, key=len, reverse=True))
    return re.sub(pattern, lambda match: FIELD_NAMES[match.group(0)], message)

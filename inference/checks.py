"""The rules a generation request obeys, one place for both front doors: the Python API (`MusicGen.generate*`)
and the command line (generate.py, through `inference/cli_inputs.py`).

Each check raises a one-line `ValueError` naming the argument as the caller knows it (`duration` in Python,
`--duration` on the command line) and returns the value as the model uses it. Nothing here imports torch, so
that the command line can check its arguments before the heavy imports (except `check_device`, which has to ask
torch what the machine has).
"""

import math
from numbers import Integral, Real

MAX_DURATION = 3600.0  # seconds; longer requests are almost certainly typos
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit; we keep to the signed range that every API accepts
MAX_SAMPLE_RATE = 1_000_000  # Hz; audio files announce rates up to 768 kHz


def check_number(value, name: str, *, low: float, high: float = math.inf, low_open: bool = False,
                 integer: bool = False) -> float:
    """`value` as a number in [low, high] (or (low, high] when `low_open`), an integer when `integer`.
    Booleans, strings and NaN are refused."""
    kind = Integral if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind) or math.isnan(value):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        left = "(" if low_open else "["
        right = "]" if high < math.inf else ")"
        bound = ("2**63 - 1" if high == MAX_SEED else f"{high:g}") if high < math.inf else "inf"
        raise ValueError(f"{name} must be in {left}{low:g}, {bound}{right}, got {value!r}")
    return int(value) if integer else float(value)


def check_duration(duration, name: str = "duration") -> float:
    return check_number(duration, f"{name} (seconds)", low=0, low_open=True, high=MAX_DURATION)


def check_seed(seed, name: str = "seed") -> int | None:
    return None if seed is None else int(check_number(seed, name, low=0, high=MAX_SEED, integer=True))


def check_sample_rate(rate, name: str) -> int:
    return int(check_number(rate, f"{name} (Hz)", low=0, low_open=True, high=MAX_SAMPLE_RATE, integer=True))


SAMPLING_NAMES = {"top_k": "top_k", "top_p": "top_p", "temperature": "temperature", "cfg_coef": "cfg_coef"}


def check_sampling(use_sampling, top_k, top_p, temperature, cfg_coef, names: dict[str, str] = SAMPLING_NAMES) -> dict:
    """The sampling settings (`lm.sampling.SamplingParams`' fields) as keywords, checked. Greedy decoding is
    `use_sampling=False` (`--greedy`); a temperature must be above 0."""
    if not isinstance(use_sampling, bool):
        raise ValueError(f"use_sampling must be True or False, got {use_sampling!r}")
    return dict(use_sampling=use_sampling,
                top_k=int(check_number(top_k, names["top_k"], low=0, integer=True)),
                top_p=check_number(top_p, names["top_p"], low=0, high=1),
                temperature=check_number(temperature, names["temperature"], low=0, low_open=True, high=1e6),
                cfg_coef=check_number(cfg_coef, names["cfg_coef"], low=0, high=1e6))


def check_descriptions(descriptions, batch: int | None = None) -> list[str | None]:
    """One text (or None: no text) per sample, as a list; a single string is one description."""
    if isinstance(descriptions, str):
        descriptions = [descriptions]
    if not isinstance(descriptions, list | tuple):
        raise ValueError(f"descriptions must be a string or a list of strings (None for no text), got "
                         f"{type(descriptions).__name__}")
    for i, text in enumerate(descriptions):
        if isinstance(text, bytes):
            raise ValueError(f"descriptions[{i}] is bytes ({text[:40]!r}): decode it to a string first")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"descriptions[{i}] must be a string or None, got {type(text).__name__} {text!r}")
        if text is not None and (bad := undecodable_char(text)):
            raise ValueError(f"descriptions[{i}] holds {bad}, which is not text (a byte that was not UTF-8)")
    if not descriptions:
        raise ValueError("give at least one description (None or '' for unconditional generation)")
    if batch is not None and len(descriptions) != batch:
        raise ValueError(f"got {len(descriptions)} descriptions for {batch} audio prompts")
    return list(descriptions)


def undecodable_char(text: str) -> str | None:
    """The first character of `text` that stands for a byte that was not valid UTF-8 (Python keeps such bytes
    of file names and command lines as lone surrogates, U+DC80..U+DCFF), as "byte 0xff"; any other lone
    surrogate as "U+D800"; None when the text is valid."""
    for char in text:
        if 0xDC80 <= ord(char) <= 0xDCFF:
            return f"byte 0x{ord(char) - 0xDC00:02x}"
        if 0xD800 <= ord(char) <= 0xDFFF:
            return f"U+{ord(char):04X}"
    return None


def check_device(device, name: str = "device"):
    """A torch.device that this machine has: "cpu", "cuda", "cuda:N" (or a torch.device)."""
    import torch

    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be 'cpu', 'cuda' or 'cuda:N', got {str(device)!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {str(device)!r}: no CUDA device is available here (use 'cpu')")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    return device

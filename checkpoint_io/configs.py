"""Config fields checked before anything is built: types, ranges, and the parameter bytes against memory."""

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from checkpoint_io.errors import CheckpointError


def section(config: Mapping, name: str, origin: str) -> dict:
    """`config[name]`, which must be a JSON object."""
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{origin}: the config is a {type(config).__name__}, not an object")
    if name not in config:
        raise CheckpointError(f"{origin}: the config has no {name!r} section")
    value = config[name]
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{origin}: the config's {name!r} section is a {type(value).__name__}, not an object")
    return dict(value)


def int_field(config: Mapping, name: str, origin: str, low: int, high: int, default: int | None = None) -> int:
    """`config[name]` (or `default` when absent), an integer in [low, high]."""
    if name not in config and default is not None:
        return default
    if name not in config:
        raise CheckpointError(f"{origin}: the config has no {name!r}")
    value = config[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{origin}: {name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise CheckpointError(f"{origin}: {name} = {value} is outside the supported range [{low}, {high}]")
    return value


def float_field(config: Mapping, name: str, origin: str, low: float, high: float,
                default: float | None = None) -> float:
    """`config[name]` (or `default` when absent), a finite number in [low, high]."""
    if name not in config and default is not None:
        return default
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CheckpointError(f"{origin}: {name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise CheckpointError(f"{origin}: {name} = {value} is outside the supported range [{low}, {high}]")
    return float(value)


def available_memory() -> int:
    """Bytes of memory this process may still use (MemAvailable on Linux, else physical memory)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def meta_size(build: Callable[[], nn.Module]) -> int:
    """How many values (parameters and buffers) the module `build()` holds, built on the meta device (for free)."""
    with torch.device("meta"):
        return sum(t.numel() for t in build().state_dict().values())


def check_size(num_params: int, what: str, origin: str, bytes_per_param: int = 4) -> None:
    """Refuse a model whose parameters would not fit in the memory left. Call it before reading any tensor."""
    needed, free = num_params * bytes_per_param, available_memory()
    if needed > free:
        raise CheckpointError(f"{origin}: its config describes a {what} of {num_params / 1e9:.2f} G parameters "
                              f"({needed / 2**30:.1f} GiB), more than the {free / 2**30:.1f} GiB of memory available")

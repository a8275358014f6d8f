"""Finding, reading and strictly loading checkpoint files: local paths or Hugging Face Hub repos.

Shared by the codec loader (`encodec/loading.py`) and the MusicGen loaders (`lm/loading.py`,
`inference/loading.py`). Nothing here knows about model architectures. Every reader is safe: safetensors, or
`torch.load(weights_only=True)`, which refuses pickles that would run code.

Errors are one type, `CheckpointError`, whose message names the culprit (file, field or tensor).
`ModelNotFoundError` is the one case a caller may want to handle differently: the model is not here at all
(not a local path, not in the cache, and the Hub cannot provide it).
"""

import functools
import json
import math
import os
import re
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing file, unknown format, bad config, or tensors that do not fit."""


class ModelNotFoundError(CheckpointError):
    """The checkpoint is not here: no such local path, not cached, and the Hub cannot provide it."""


# ---------------------------------------------------------------------------------------------------------
# The Hub


def looks_like_repo_id(source: str) -> bool:
    return bool(REPO_ID.match(source)) and not Path(source).exists()


def hub_reachable() -> bool:
    """Whether the Hugging Face Hub can be reached: False in offline mode (HF_HUB_OFFLINE), or when no TCP
    connection opens within 3 s to the Hub, or to the proxy that the environment routes it through.

    Without this check an unreachable Hub (or a dead proxy) costs ~25 s of retries per file before the cache
    is used. A proxy that accepts connections is trusted to reach the Hub.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urllib.parse.urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = _proxy_for(url.scheme, host)
    if proxy is not None:
        host, port = proxy
    return _can_connect(host, port)


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """(host, port) of the proxy the environment (HTTPS_PROXY, ALL_PROXY, NO_PROXY, ...) sets for `host`."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parsed = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
    default_port = 443 if parsed.scheme == "https" else 1080 if parsed.scheme.startswith("socks") else 80
    return parsed.hostname or "", parsed.port or default_port


@functools.cache  # once per process
def _can_connect(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_file(repo_id: str, filename: str, required: bool = True) -> Path | None:
    """Download one file of a Hub repo into the standard Hugging Face cache (or find it there).

    Returns None when the file is not available and `required` is False. When the Hub cannot be reached
    only the cache is consulted.
    Raises:
        ModelNotFoundError: a required file that is neither cached nor downloadable, or no such repo.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=not hub_reachable()))
    except LocalEntryNotFoundError:  # offline and not cached (a subclass of EntryNotFoundError: test it first)
        if not required:
            return None
        raise ModelNotFoundError(
            f"cannot download {filename!r} of {repo_id!r}: the Hub is unreachable and the file is not cached. "
            f"Download it once with network access (e.g. `hf download {repo_id}`) or pass a local folder"
        ) from None
    except EntryNotFoundError:
        if required:
            raise ModelNotFoundError(f"the Hub repo {repo_id!r} has no file {filename!r}") from None
        return None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"{repo_id!r} is neither a local path nor a Hugging Face Hub repo") from None


def file_getter(source: str | os.PathLike) -> Callable[[str], Path | None]:
    """A `name -> Path | None` function over a local folder or a Hub repo id."""
    if Path(source).is_dir():
        folder = Path(source)
        return lambda name: folder / name if (folder / name).is_file() else None
    return lambda name: hub_file(str(source), name, required=False)


# ---------------------------------------------------------------------------------------------------------
# Files


def read_json(path: Path) -> dict:
    """A JSON file that must hold an object (a config), as a dict."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} holds a JSON {type(content).__name__}, not an object")
    return content


def torch_load(path: Path) -> dict:
    """`torch.load` that only accepts tensors and plain containers (never arbitrary pickled objects)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except Exception as err:  # corrupt file, or a pickle that would need code to load
        raise CheckpointError(f"cannot read {path} as a torch checkpoint (weights only): {err}") from None


def _read_safetensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read {path} as safetensors: {err}") from None


def read_hf_weights(get_file: Callable[[str], Path | None], prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a transformers-layout checkpoint whose names start with `prefix` (prefix removed).

    Args:
        get_file: `name -> Path | None`, finding a file of the folder or repo (None when absent).
        prefix: e.g. "audio_encoder." to read only the codec of a MusicGen checkpoint.
    Reads `model.safetensors`, or the shards listed in `model.safetensors.index.json`, or else
    `pytorch_model.bin`. Only the shards that hold wanted tensors are opened (or downloaded).
    """
    if (single := get_file("model.safetensors")) is not None:
        return _read_safetensors(single, prefix)
    if (index := get_file("model.safetensors.index.json")) is not None:
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} has no 'weight_map' object")
        shards = sorted({str(f) for k, f in weight_map.items() if k.startswith(prefix)})
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            if Path(shard).name != shard or (path := get_file(shard)) is None:
                raise CheckpointError(f"{index} names the shard {shard!r}, which is not in the checkpoint")
            state.update(_read_safetensors(path, prefix))
        return state
    if (legacy := get_file("pytorch_model.bin")) is not None:
        return {k[len(prefix):]: v for k, v in torch_load(legacy).items() if k.startswith(prefix)}
    raise CheckpointError("no weights found: expected model.safetensors, model.safetensors.index.json "
                          "or pytorch_model.bin")


def _resolve_interpolations(node, root: dict):
    if isinstance(node, dict):
        return {k: _resolve_interpolations(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_interpolations(v, root) for v in node]
    if isinstance(node, str) and (match := re.fullmatch(r"\$\{([\w.]+)\}", node)):
        value = root
        for part in match.group(1).split("."):
            value = value[part]
        return _resolve_interpolations(value, root)
    return node


def read_xp_cfg(xp_cfg: str | dict) -> dict:
    """An audiocraft experiment config (the `xp.cfg` YAML stored in its exported checkpoints) as a dict.

    Exports keep OmegaConf interpolations such as `channels: ${channels}` unresolved; they are resolved here.
    """
    import yaml

    try:
        root = yaml.safe_load(xp_cfg) if isinstance(xp_cfg, str) else xp_cfg
    except yaml.YAMLError as err:
        raise CheckpointError(f"the checkpoint's xp.cfg is not valid YAML: {err}") from None
    if not isinstance(root, dict):
        raise CheckpointError("the checkpoint's xp.cfg is not a YAML mapping")
    try:
        return _resolve_interpolations(root, root)
    except (KeyError, TypeError, RecursionError) as err:
        raise CheckpointError(f"the checkpoint's xp.cfg has an unresolvable interpolation: {err}") from None


# ---------------------------------------------------------------------------------------------------------
# Configs: every number checked before anything is built


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


# ---------------------------------------------------------------------------------------------------------
# Tensors


def summarise(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def rename_with_table(state: Mapping[str, torch.Tensor], table: Mapping[str, str | tuple[str, ...]], origin: str,
                      ignored: Callable[[str], bool] = lambda name: False) -> dict[str, torch.Tensor]:
    """Rename a checkpoint's tensors through `table`, strictly.

    Args:
        state: {checkpoint name: tensor}.
        table: {checkpoint name: our name}, or a tuple of our names for a packed tensor that is split into
            equal row blocks (audiocraft's `in_proj_weight` -> q, k, v).
        origin: names the checkpoint in errors.
        ignored: checkpoint names that belong to no model here (another loader's tensors, recomputed tables).
    Raises:
        CheckpointError: naming every table entry missing from `state` and every unexpected tensor.
    """
    missing = [name for name in table if name not in state]
    unexpected = [name for name in state if name not in table and not ignored(name)]
    if missing or unexpected:
        raise CheckpointError(f"{origin} does not fit the model its config describes: "
                              f"missing: [{summarise(missing)}]; unexpected: [{summarise(unexpected)}]")
    out = {}
    for theirs, ours in table.items():
        if isinstance(ours, tuple):
            tensor = state[theirs]
            if tensor.dim() == 0 or tensor.shape[0] % len(ours):
                raise CheckpointError(f"{origin}: {theirs} of shape {list(tensor.shape)} does not split into "
                                      f"{len(ours)} row blocks")
            out |= dict(zip(ours, tensor.chunk(len(ours), dim=0), strict=True))
        else:
            out[ours] = state[theirs]
    return out


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], origin: str, assign: bool = False) -> None:
    """Load `state` (our names) into `model`: every key present, none extra, every shape and kind equal, and
    every value finite. The one loader of the project; each failure is one `CheckpointError` naming the tensor.

    Args:
        assign: take the tensors themselves as parameters (for a model built on the meta device).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{origin} does not match the model built from its config: "
                              f"missing keys: [{summarise(missing)}]; unexpected keys: [{summarise(unexpected)}]")
    wrong = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(v.shape)}"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{origin} has tensors of the wrong shape: {summarise(wrong, 5)}")
    for name, tensor in state.items():
        if expected[name].is_floating_point() and not tensor.is_floating_point():
            raise CheckpointError(f"{origin}: tensor {name} has dtype {tensor.dtype}, expected floating point")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{origin}: tensor {name} holds NaN or infinite values")
    model.load_state_dict(dict(state), strict=True, assign=assign)

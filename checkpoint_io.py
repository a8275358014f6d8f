"""Finding, reading and strictly loading checkpoint files: local paths or Hugging Face Hub repos.

Shared by the codec loader (`encodec/loading.py`) and the MusicGen loaders (`lm/loading.py`,
`inference/loading.py`). Nothing here knows about model architectures. Every reader is safe: safetensors (a
JSON header and raw bytes, parsed here), or `torch.load(weights_only=True)`, which refuses pickles that would run
code. Large checkpoints are read tensor by tensor (`LazyTensors`), with plain file reads rather than memory maps,
so that a loader that converts each tensor (to bfloat16, int8) never holds the float32 model.

Errors are one type, `CheckpointError`, whose message names the culprit (file, field or tensor).
`ModelNotFoundError` is the one case a caller may want to handle differently: the model is not here at all
(not a local path, not in the cache, and the Hub cannot provide it).
"""

import ctypes
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


def torch_load(path: Path, lazy: bool = False) -> dict:
    """`torch.load` that only accepts tensors and plain containers (never arbitrary pickled objects).

    Tensors come memory-mapped, or with `lazy` each dict of tensors (a state dict) as `LazyTensors` read with
    plain file reads (`_lazy_torch_tensors`); other tensors then stay specs (meta tensors).
    """
    try:
        if not lazy:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        content = torch.load(path, map_location="meta", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except Exception as err:  # corrupt file, or a pickle that would need code to load
        raise CheckpointError(f"cannot read {path} as a torch checkpoint (weights only): {err}") from None
    if not isinstance(content, dict):
        return content
    tensors = [t for value in content.values() if _is_state_dict(value) for t in value.values()]
    if not all(hasattr(t.untyped_storage(), "_checkpoint_offset") for t in tensors):
        return torch_load(path)  # a torch that does not say where its tensors lie: memory-mapped instead
    return {key: _lazy_torch_tensors(path, value) if _is_state_dict(value) else value for key, value in content.items()}


class LazyTensors(Mapping[str, torch.Tensor]):
    """{name: tensor} whose tensors are read only when looked up, one fresh copy per look-up.

    `specs[name]` is a meta tensor with the tensor's shape and dtype, known without reading it. A loader that
    looks tensors up one at a time and converts each (`load_strict`) never holds more than one as read.
    """

    def __init__(self, specs: Mapping[str, torch.Tensor], read: Callable[[str], torch.Tensor]) -> None:
        self.specs, self._read = dict(specs), read

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.specs:
            raise KeyError(name)
        return self._read(name)

    def __contains__(self, name) -> bool:  # Mapping's would read the tensor
        return name in self.specs

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)


def spec(state: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    """The tensor `name` of `state`, or where `state` is lazy only its spec (a meta tensor: shape and dtype)."""
    return state.specs[name] if isinstance(state, LazyTensors) else state[name]


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _lazy_torch_tensors(path: Path, specs: dict[str, torch.Tensor]) -> LazyTensors:
    """The tensors of a torch file, loaded on the meta device, read on demand from where torch recorded their
    storage's bytes in the file (`_checkpoint_offset`: torch's zip records are stored uncompressed)."""

    def read(name: str) -> torch.Tensor:
        meta = specs[name]
        storage = meta.untyped_storage()
        data = _read_bytes(path, storage._checkpoint_offset, storage.nbytes(), name).view(meta.dtype)
        tensor = data.as_strided(meta.shape, meta.stride(), meta.storage_offset())
        return tensor if tensor.numel() == data.numel() and tensor.is_contiguous() else tensor.clone()

    return LazyTensors(specs, read)


def _read_bytes(path: Path, offset: int, nbytes: int, name: str) -> torch.Tensor:
    """`nbytes` bytes of the file at `offset`, read into fresh memory (uint8 [nbytes])."""
    data = torch.empty(nbytes, dtype=torch.uint8)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            if f.readinto(data.numpy()) != nbytes:
                raise OSError("the file ended early")
    except OSError as err:
        raise CheckpointError(f"cannot read tensor {name} of {path}: {err}") from None
    return data


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


def _safetensors_header(path: Path) -> tuple[int, dict[str, tuple[torch.dtype, list[int], int, int]]]:
    """The layout of a safetensors file: an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets: [begin, end]}} (offsets counted from the end of the header), then the data.

    Returns:
        (where the data starts, {name: (dtype, shape, begin, end)}), every entry checked against the file size.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if not 2 <= length <= size - 8:
            raise ValueError(f"header length {length} does not fit a file of {size} bytes")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    entries = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (begin, end) = SAFETENSORS_DTYPES[entry["dtype"]], entry["shape"], entry["data_offsets"]
        if not 0 <= begin <= end <= size - 8 - length or end - begin != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"tensor {name}: data_offsets {[begin, end]} do not fit its shape and the file")
        entries[name] = (dtype, list(shape), begin, end)
    return 8 + length, entries


def _read_safetensors(path: Path, prefix: str) -> LazyTensors:
    """The tensors of one safetensors file whose names start with `prefix` (prefix removed), read on demand.

    Each look-up reads that tensor's bytes with plain file reads into fresh memory: nothing is memory-mapped, so
    a tensor converted and dropped leaves no resident copy behind (mapped pages would stay counted).
    """
    try:
        start, entries = _safetensors_header(path)
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read {path} as safetensors: {err!r}") from None
    entries = {k[len(prefix):]: v for k, v in entries.items() if k.startswith(prefix)}

    def read(name: str) -> torch.Tensor:
        dtype, shape, begin, end = entries[name]
        return _read_bytes(path, start + begin, end - begin, name).view(dtype).view(shape)

    specs = {name: torch.empty(shape, dtype=dtype, device="meta") for name, (dtype, shape, _, _) in entries.items()}
    return LazyTensors(specs, read)


def read_hf_weights(get_file: Callable[[str], Path | None], prefix: str = "") -> Mapping[str, torch.Tensor]:
    """The tensors of a transformers-layout checkpoint whose names start with `prefix` (prefix removed).

    Args:
        get_file: `name -> Path | None`, finding a file of the folder or repo (None when absent).
        prefix: e.g. "audio_encoder." to read only the codec of a MusicGen checkpoint.
    Reads `model.safetensors`, or the shards listed in `model.safetensors.index.json`, or else
    `pytorch_model.bin`. Only the shards that hold wanted tensors are opened (or downloaded). safetensors
    come as `LazyTensors`: each tensor is read when looked up.
    """
    if (single := get_file("model.safetensors")) is not None:
        return _read_safetensors(single, prefix)
    if (index := get_file("model.safetensors.index.json")) is not None:
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} has no 'weight_map' object")
        shards = []
        for shard in sorted({str(f) for k, f in weight_map.items() if k.startswith(prefix)}):
            if Path(shard).name != shard or (path := get_file(shard)) is None:
                raise CheckpointError(f"{index} names the shard {shard!r}, which is not in the checkpoint")
            shards.append(_read_safetensors(path, prefix))
        owner = {name: shard for shard in shards for name in shard}
        return LazyTensors({name: shard.specs[name] for name, shard in owner.items()},
                           lambda name: owner[name][name])
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
                      ignored: Callable[[str], bool] = lambda name: False) -> Mapping[str, torch.Tensor]:
    """Rename a checkpoint's tensors through `table`, strictly.

    Args:
        state: {checkpoint name: tensor}, or `LazyTensors`.
        table: {checkpoint name: our name}, or a tuple of our names for a packed tensor that is split into
            equal row blocks (audiocraft's `in_proj_weight` -> q, k, v).
        origin: names the checkpoint in errors.
        ignored: checkpoint names that belong to no model here (another loader's tensors, recomputed tables).
    Returns:
        {our name: tensor}: the tensors themselves (views of the packed ones), or for `LazyTensors` state
        `LazyTensors` that read a tensor when its new name is looked up (a row block as a copy of its own).
    Raises:
        CheckpointError: naming every table entry missing from `state` and every unexpected tensor.
    """
    missing = [name for name in table if name not in state]
    unexpected = [name for name in state if name not in table and not ignored(name)]
    if missing or unexpected:
        raise CheckpointError(f"{origin} does not fit the model its config describes: "
                              f"missing: [{summarise(missing)}]; unexpected: [{summarise(unexpected)}]")
    sources = {}  # our name -> (checkpoint name, row block, number of blocks)
    for theirs, ours in table.items():
        if isinstance(ours, tuple):
            shape = spec(state, theirs).shape
            if len(shape) == 0 or shape[0] % len(ours):
                raise CheckpointError(f"{origin}: {theirs} of shape {list(shape)} does not split into "
                                      f"{len(ours)} row blocks")
            sources |= {name: (theirs, i, len(ours)) for i, name in enumerate(ours)}
        else:
            sources[ours] = (theirs, 0, 1)

    def renamed(tensor: torch.Tensor, block: int, blocks: int) -> torch.Tensor:
        return tensor if blocks == 1 else tensor.chunk(blocks, dim=0)[block]

    if isinstance(state, LazyTensors):
        specs = {ours: renamed(state.specs[theirs], i, n) for ours, (theirs, i, n) in sources.items()}
        return LazyTensors(specs, lambda ours: _read_block(state, *sources[ours]))
    return {ours: renamed(state[theirs], i, n) for ours, (theirs, i, n) in sources.items()}


def _read_block(state: LazyTensors, name: str, block: int, blocks: int) -> torch.Tensor:
    tensor = state[name]
    return tensor if blocks == 1 else tensor.chunk(blocks, dim=0)[block].clone()  # not a view: frees the rest


# A loader's conversion of one checked tensor: (the module that holds it, its name there, the tensor) -> the
# entries of that module's state it becomes, e.g. a float `weight` -> an int8 `weight` and its `scale`.
Converter = Callable[[nn.Module, str, torch.Tensor], dict[str, torch.Tensor]]


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], origin: str, assign: bool = False,
                convert: Converter | None = None) -> None:
    """Load `state` (our names) into `model`: every key present, none extra, every shape and kind equal, and
    every value finite. The one loader of the project; each failure is one `CheckpointError` naming the tensor.

    Names and shapes are checked first (from specs for `LazyTensors`, without reading); then the tensors are
    looked up, checked, converted and loaded one at a time, so lazy ones are never all in memory at once (a NaN
    found then leaves `model` partly loaded: build it anew, as the loaders do on the meta device).

    Args:
        assign: take the tensors themselves as parameters (for a model built on the meta device).
        convert: how each checked tensor goes into the module that holds it (default: as it is). For a model
            transformed while empty (`inference.speed`): cast, or quantized into a weight and a scale.
    """
    expected = model.state_dict()
    floats = {k for k, v in expected.items() if v.is_floating_point()}  # names that must be floating point
    derived = set()  # entries that a conversion adds beside the one it loads (an int8 weight's scale)
    if convert is not None:  # what the conversion makes of a float tensor, on the meta device (for free)
        for name in state:
            if name in expected:
                module, local = _owner(model, name)
                prefix = name[:len(name) - len(local)]
                made = convert(module, local, torch.empty(expected[name].shape, device="meta"))
                derived |= {prefix + k for k in made} - {name}
                if made[local].dtype == expected[name].dtype:  # the module takes a float tensor here (an int8 weight)
                    floats.add(name)
    missing = [k for k in expected if k not in state and k not in derived]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{origin} does not match the model built from its config: "
                              f"missing keys: [{summarise(missing)}]; unexpected keys: [{summarise(unexpected)}]")
    wrong = [f"{k}: checkpoint {list(spec(state, k).shape)} vs model {list(v.shape)}"
             for k, v in expected.items() if k in state and spec(state, k).shape != v.shape]
    if wrong:
        raise CheckpointError(f"{origin} has tensors of the wrong shape: {summarise(wrong, 5)}")
    for name in state:
        if name in floats and not spec(state, name).is_floating_point():
            raise CheckpointError(f"{origin}: tensor {name} has dtype {spec(state, name).dtype}, expected "
                                  "floating point")
    for name in state:
        tensor = state[name]  # read now, where `state` is lazy
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{origin}: tensor {name} holds NaN or infinite values")
        module, local = _owner(model, name)
        entries = {local: tensor} if convert is None else convert(module, local, tensor)
        module.load_state_dict(entries, strict=False, assign=assign)
        del tensor, entries  # the float tensor is freed before the next one is read
        _return_freed_memory()


def _return_freed_memory() -> None:
    """Give the pages of freed memory back to the system (glibc's `malloc_trim`; elsewhere nothing).

    glibc keeps freed blocks of up to 32 MiB in its heap rather than unmapping them, and converted tensors
    allocated between them keep the heap from shrinking: loading musicgen-small in bfloat16 tensor by tensor
    peaked 370 MiB above its final size without this.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module that holds the state entry `name`, and the entry's name inside it."""
    path, _, local = name.rpartition(".")
    return model.get_submodule(path), local

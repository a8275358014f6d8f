"""Reading checkpoint files safely: JSON, torch files (weights only), safetensors and audiocraft configs.

Large checkpoints are read tensor by tensor (`LazyTensors`), with plain file reads rather than memory maps, so
that a loader that converts each tensor (to bfloat16, int8) never holds the float32 model.
"""

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from checkpoint_io.errors import CheckpointError


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
        raise CheckpointError(f"{path} is not loaded: {why_not_loaded(err)}") from None
    if not isinstance(content, dict):
        return content
    tensors = [t for value in content.values() if _is_state_dict(value) for t in value.values()]
    if not all(hasattr(t.untyped_storage(), "_checkpoint_offset") for t in tensors):
        return torch_load(path)  # a torch that does not say where its tensors lie: memory-mapped instead
    return {key: _lazy_torch_tensors(path, value) if _is_state_dict(value) else value for key, value in content.items()}


def why_not_loaded(err: Exception) -> str:
    """One line of ours for what `torch.load(weights_only=True)` refused (torch's own explanation is a page)."""
    message = str(err)
    if "Weights only load failed" in message:
        names = re.search(r"GLOBAL ([\w.]+)", message)
        named = f" ({names.group(1)})" if names else ""
        return (f"it holds a pickled object{named} that only running code could rebuild, and checkpoints are read "
                "as data only: tensors and plain values (torch.load weights_only=True)")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return f"not a torch checkpoint ({type(err).__name__}: {lines[0] if lines else 'unreadable'})"


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

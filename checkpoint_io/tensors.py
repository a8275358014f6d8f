"""Renaming a checkpoint's tensors through a table and loading them strictly, one tensor at a time."""

import ctypes
from collections.abc import Callable, Mapping

import torch
from torch import nn

from checkpoint_io.errors import CheckpointError
from checkpoint_io.files import LazyTensors, spec


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

"""Writing and reading training checkpoints: atomically, and never running code from a file.

Lightning's own `TorchCheckpointIO` writes through an fsspec transaction, which stages the file in the
system temporary folder and then *moves* it; when that folder is on another file system the move is a copy,
and an interrupted copy leaves a truncated checkpoint under the final name. `AtomicCheckpointIO` writes a
temporary file next to the target, syncs it to disk and renames it (`os.replace`, atomic on POSIX), so a
checkpoint is either the old complete file or the new complete file.

Reading always uses `torch.load(weights_only=True)`: the checkpoints this program writes hold only tensors
and plain containers (Lightning's loop and callback states, our settings as plain values), so resuming does
not need the unpickler that can run code, even for Lightning's own files.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from checkpoint_io.files import why_not_loaded

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: write to a temporary name, fsync, `os.replace`; load with weights_only=True."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
                        ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Callable | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # weights_only is forced on, whatever the caller asks.
        return read_checkpoint(path, map_location)


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint written by `train.py`, read without running code. Raises ValueError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, or a pickle that needs code: not ours either way
        raise ValueError(f"{path} is not a checkpoint of this program: {why_not_loaded(err)}") from None
    if not isinstance(checkpoint, dict) or "settings" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a training checkpoint of this program (no saved settings)")
    return checkpoint


def resume_path(resume: str, out: str | os.PathLike) -> Path:
    """The checkpoint `--resume` names: "last" is OUT/checkpoints/last.ckpt, anything else a path."""
    return Path(out) / "checkpoints" / LAST if resume == "last" else Path(resume)


def settings_for_run(given: dict, default_out: str, resolve):
    """Resolve a training command's settings: defaults < the resumed checkpoint's settings < the given flags.

    Args:
        given: the flags present on the command line; with "resume", the checkpoint it names is read.
        default_out: the command's default output folder (where "--resume" with no value looks).
        resolve: `(given, saved) -> settings` of the command.
    Returns:
        the resolved settings.
    """
    saved = None
    if "resume" in given:
        path = resume_path(given["resume"], given.get("out", default_out))
        saved = read_checkpoint(path)["settings"]
        given = {**given, "resume": str(path)}
    return resolve(given, saved)

"""Finding, reading and strictly loading checkpoint files: local paths or Hugging Face Hub repos.

Shared by the codec loader (`encodec/loading.py`) and the MusicGen loaders (`lm/loading.py`,
`inference/loading.py`). Nothing here knows about model architectures. One concept per file: `hub.py` finds
files, `files.py` reads them, `configs.py` checks config fields, `tensors.py` renames and loads tensors,
`errors.py` holds the one error type. Every reader is safe: safetensors (a
JSON header and raw bytes, parsed here), or `torch.load(weights_only=True)`, which refuses pickles that would run
code. Large checkpoints are read tensor by tensor (`LazyTensors`), with plain file reads rather than memory maps,
so that a loader that converts each tensor (to bfloat16, int8) never holds the float32 model.

Errors are one type, `CheckpointError`, whose message names the culprit (file, field or tensor).
`ModelNotFoundError` is the one case a caller may want to handle differently: the model is not here at all
(not a local path, not in the cache, and the Hub cannot provide it).
"""

from checkpoint_io.configs import available_memory, check_size, float_field, int_field, meta_size, section
from checkpoint_io.errors import CheckpointError, ModelNotFoundError
from checkpoint_io.files import LazyTensors, read_hf_weights, read_json, read_xp_cfg, spec, torch_load
from checkpoint_io.hub import file_getter, hub_file, hub_reachable, looks_like_repo_id
from checkpoint_io.tensors import Converter, load_strict, rename_with_table, summarise

__all__ = [
    "CheckpointError",
    "Converter",
    "LazyTensors",
    "ModelNotFoundError",
    "available_memory",
    "check_size",
    "file_getter",
    "float_field",
    "hub_file",
    "hub_reachable",
    "int_field",
    "load_strict",
    "looks_like_repo_id",
    "meta_size",
    "read_hf_weights",
    "read_json",
    "read_xp_cfg",
    "rename_with_table",
    "section",
    "spec",
    "summarise",
    "torch_load",
]

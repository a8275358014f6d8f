"""Load MusicGen LM weights into `MusicGenLM` through one explicit renaming table per checkpoint format.

Three layouts are accepted, each mapped by a table {checkpoint name: our name} built from the config
(`hf_key_table`, `audiocraft_key_table`) and loaded strictly by `checkpoint_io` (every name and shape
checked, every value finite; one `CheckpointError` naming the culprit):
- `MusicgenForConditionalGeneration` (the Hub's `model.safetensors`): LM keys under `decoder.`, the text
  projection as `enc_to_dec_proj.*`; the `text_encoder.*` and `audio_encoder.*` keys are skipped here
  (the T5 and EnCodec loaders read them).
- `MusicgenForCausalLM`: the same names without the `decoder.` prefix and without `enc_to_dec_proj`
  (build its config with cond_dim=None, as `lm_config_from_hf` does for a bare decoder config).
- audiocraft's `LMModel` (`state_dict.bin`): its own names, with each attention's q, k, v packed in one tensor.

transformers' names come from its conversion of audiocraft's (`convert_musicgen_transformers.py`, see
docs/architecture.md 3.1); audiocraft packs each attention's q, k, v into one `in_proj_weight` [3D, D], which
transformers splits by rows into q/k/v_proj.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from checkpoint_io import CheckpointError, Converter, load_strict, rename_with_table

from .config import LMConfig, lm_config_from_hf
from .model import MusicGenLM

# The earlier name of `CheckpointError` for LM key mismatches, kept importable for existing callers.
StateDictMismatchError = CheckpointError

# Names inside one layer: transformers `model.decoder.layers.{i}.` -> ours `transformer.layers.{i}.`.
_SELF_ATTENTION_TABLE = {
    "self_attn.q_proj.weight": "self_attn.q_proj.weight",
    "self_attn.k_proj.weight": "self_attn.k_proj.weight",
    "self_attn.v_proj.weight": "self_attn.v_proj.weight",
    "self_attn.out_proj.weight": "self_attn.out_proj.weight",
    "self_attn_layer_norm.weight": "self_attn_norm.weight",
    "self_attn_layer_norm.bias": "self_attn_norm.bias",
    "fc1.weight": "linear1.weight",
    "fc2.weight": "linear2.weight",
    "final_layer_norm.weight": "ffn_norm.weight",
    "final_layer_norm.bias": "ffn_norm.bias",
}
_CROSS_ATTENTION_TABLE = {
    "encoder_attn.q_proj.weight": "cross_attn.q_proj.weight",
    "encoder_attn.k_proj.weight": "cross_attn.k_proj.weight",
    "encoder_attn.v_proj.weight": "cross_attn.v_proj.weight",
    "encoder_attn.out_proj.weight": "cross_attn.out_proj.weight",
    "encoder_attn_layer_norm.weight": "cross_attn_norm.weight",
    "encoder_attn_layer_norm.bias": "cross_attn_norm.bias",
}

# Keys of a full MusicGen checkpoint that other loaders own, and the recomputed sinusoid table.
_SKIPPED_PREFIXES = ("text_encoder.", "audio_encoder.")
_SKIPPED_SUFFIX = "embed_positions.weights"


def _owned_by_others(name: str) -> bool:
    return name.startswith(_SKIPPED_PREFIXES) or name.endswith(_SKIPPED_SUFFIX)


def hf_key_table(config: LMConfig, causal_lm: bool = False) -> dict[str, str]:
    """Every transformers state-dict name of the LM, mapped to our name.

    Args:
        config: the LM sizes (K and the number of layers decide the indexed names).
        causal_lm: True for the `MusicgenForCausalLM` layout (no `decoder.` prefix, no enc_to_dec_proj).
    Returns:
        {transformers name: MusicGenLM name}.
    """
    prefix = "" if causal_lm else "decoder."
    table = {}
    for k in range(config.num_codebooks):
        table[f"{prefix}model.decoder.embed_tokens.{k}.weight"] = f"embeddings.{k}.weight"
        table[f"{prefix}lm_heads.{k}.weight"] = f"heads.{k}.weight"
    layer_table = _SELF_ATTENTION_TABLE | (_CROSS_ATTENTION_TABLE if config.cross_attention else {})
    for i in range(config.num_layers):
        for theirs, ours in layer_table.items():
            table[f"{prefix}model.decoder.layers.{i}.{theirs}"] = f"transformer.layers.{i}.{ours}"
    table[f"{prefix}model.decoder.layer_norm.weight"] = "out_norm.weight"
    table[f"{prefix}model.decoder.layer_norm.bias"] = "out_norm.bias"
    if config.cond_dim is not None and not causal_lm:
        table["enc_to_dec_proj.weight"] = "cond_proj.weight"
        table["enc_to_dec_proj.bias"] = "cond_proj.bias"
    if config.num_chroma is not None and not causal_lm:
        table["audio_enc_to_dec_proj.weight"] = "chroma_proj.weight"
        table["audio_enc_to_dec_proj.bias"] = "chroma_proj.bias"
    return table


# Names inside one layer: audiocraft `transformer.layers.{i}.` -> ours `transformer.layers.{i}.`. A tuple is
# a packed tensor: audiocraft's `in_proj_weight` [3D, D] holds the q, k and v projections as row blocks.
_AUDIOCRAFT_SELF_ATTENTION_TABLE = {
    "self_attn.in_proj_weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "self_attn.out_proj.weight": "self_attn.out_proj.weight",
    "norm1.weight": "self_attn_norm.weight",
    "norm1.bias": "self_attn_norm.bias",
    "linear1.weight": "linear1.weight",
    "linear2.weight": "linear2.weight",
    "norm2.weight": "ffn_norm.weight",
    "norm2.bias": "ffn_norm.bias",
}
_AUDIOCRAFT_CROSS_ATTENTION_TABLE = {
    "cross_attention.in_proj_weight": ("cross_attn.q_proj.weight", "cross_attn.k_proj.weight",
                                       "cross_attn.v_proj.weight"),
    "cross_attention.out_proj.weight": "cross_attn.out_proj.weight",
    "norm_cross.weight": "cross_attn_norm.weight",
    "norm_cross.bias": "cross_attn_norm.bias",
}
_AUDIOCRAFT_TEXT_PROJ = "condition_provider.conditioners.description.output_proj."


def audiocraft_key_table(config: LMConfig) -> dict[str, str | tuple[str, str, str]]:
    """Every name of an audiocraft `LMModel` state dict (`state_dict.bin`), mapped to our name (or names).

    Returns:
        {audiocraft name: MusicGenLM name, or (q, k, v) names for a packed attention projection}.
    """
    table: dict[str, str | tuple[str, str, str]] = {}
    for k in range(config.num_codebooks):
        table[f"emb.{k}.weight"] = f"embeddings.{k}.weight"
        table[f"linears.{k}.weight"] = f"heads.{k}.weight"
    layer_table = _AUDIOCRAFT_SELF_ATTENTION_TABLE | (_AUDIOCRAFT_CROSS_ATTENTION_TABLE if config.cross_attention
                                                      else {})
    for i in range(config.num_layers):
        for theirs, ours in layer_table.items():
            prefix = f"transformer.layers.{i}."
            table[prefix + theirs] = tuple(prefix + o for o in ours) if isinstance(ours, tuple) else prefix + ours
    table["out_norm.weight"] = "out_norm.weight"
    table["out_norm.bias"] = "out_norm.bias"
    if config.cond_dim is not None:
        table[_AUDIOCRAFT_TEXT_PROJ + "weight"] = "cond_proj.weight"
        table[_AUDIOCRAFT_TEXT_PROJ + "bias"] = "cond_proj.bias"
    return table


@dataclass(frozen=True)
class LoadTransform:
    """A speed transform of the LM applied while it is empty (meta device, before any tensor is read), and the
    conversion that loads each checkpoint tensor into the module that then holds it (`inference.speed`)."""

    apply: Callable[[MusicGenLM], MusicGenLM]
    convert: Converter


def _is_causal_lm_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    if "decoder.lm_heads.0.weight" in state_dict:
        return False
    if "lm_heads.0.weight" in state_dict:
        return True
    raise CheckpointError("no `decoder.lm_heads.0.weight` or `lm_heads.0.weight`: not a MusicGen checkpoint")


def convert_hf_state_dict(state_dict: Mapping[str, torch.Tensor], config: LMConfig,
                          origin: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Rename a transformers MusicGen state dict to MusicGenLM names.

    Args:
        state_dict: a `MusicgenForConditionalGeneration` or `MusicgenForCausalLM` state dict.
        config: the LM sizes the checkpoint should have.
        origin: names the checkpoint in errors.
    Returns:
        {our name: tensor}, the tensors themselves (not copies).
    Raises:
        CheckpointError: naming every missing and every unexpected key.
    """
    table = hf_key_table(config, causal_lm=_is_causal_lm_layout(state_dict))
    return rename_with_table(state_dict, table, origin, ignored=_owned_by_others)


def convert_audiocraft_state_dict(state_dict: Mapping[str, torch.Tensor], config: LMConfig,
                                  origin: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Rename an audiocraft LM state dict to MusicGenLM names, splitting the packed q/k/v projections.

    Raises:
        CheckpointError: naming every missing and every unexpected key (in audiocraft's names).
    """
    return rename_with_table(state_dict, audiocraft_key_table(config), origin)


def load_hf_state_dict(lm: MusicGenLM, state_dict: Mapping[str, torch.Tensor], origin: str = "the checkpoint") -> None:
    """Copy transformers MusicGen LM weights into `lm` (in place), checking every name, shape and value."""
    load_strict(lm, convert_hf_state_dict(state_dict, lm.config, origin), origin)


def build_lm_from_hf(
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    origin: str = "the checkpoint",
    transform: LoadTransform | None = None,
) -> MusicGenLM:
    """Build a MusicGenLM from a transformers `config.json` dict and its (full or LM-only) state dict.

    The module is created on the meta device, so no random initialisation is paid for, then takes the
    checkpoint tensors as its parameters (it may share their storage) and moves to device/dtype.

    Args:
        config: the checkpoint's config.json as a dict (full MusicgenConfig or a bare decoder config).
        state_dict: tensors loaded from model.safetensors (all shards merged), or `LazyTensors` read one by one.
        device: where the model should live (default: where the tensors are).
        dtype: parameter dtype (default: the checkpoint's).
        origin: names the checkpoint in errors.
        transform: see `build_lm`.
    Returns:
        the LM in eval mode.
    """
    lm_config = lm_config_from_hf(config, origin)
    return build_lm(lm_config, convert_hf_state_dict(state_dict, lm_config, origin), device, dtype, origin,
                    transform)


def build_lm_from_audiocraft(config: LMConfig, state_dict: Mapping[str, torch.Tensor],
                             device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                             origin: str = "the checkpoint", transform: LoadTransform | None = None) -> MusicGenLM:
    """Build a MusicGenLM from an audiocraft LM state dict (see `lm_config_from_audiocraft` for the config)."""
    return build_lm(config, convert_audiocraft_state_dict(state_dict, config, origin), device, dtype, origin,
                    transform)


def build_lm(config: LMConfig, converted: Mapping[str, torch.Tensor], device=None, dtype=None,
             origin: str = "the checkpoint", transform: LoadTransform | None = None) -> MusicGenLM:
    """A MusicGenLM built on the meta device (no random init) that takes `converted` (our names) as its tensors.

    Args:
        transform: applied to the empty LM, so that each tensor is loaded straight into its final form (a weight
            cast or quantized as it is read) and the float32 model never exists; the tensors it does not
            change become float32 (`dtype` must then be None or float32).
    """
    with torch.device("meta"):
        lm = MusicGenLM(config)
    if transform is None:
        load_strict(lm, converted, origin, assign=True)
        return lm.to(device=device, dtype=dtype).eval()
    if dtype not in (None, torch.float32):
        raise ValueError(f"a transformed LM keeps its other tensors in float32, not {dtype}")
    lm = transform.apply(lm)
    load_strict(lm, converted, origin, assign=True, convert=transform.convert)
    return lm.to(device=device).eval()

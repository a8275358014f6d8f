"""Load transformers' MusicGen LM weights into `MusicGenLM` through one explicit renaming table.

Two layouts are accepted:
- `MusicgenForConditionalGeneration` (the Hub's `model.safetensors`): LM keys under `decoder.`, the text
  projection as `enc_to_dec_proj.*`; the `text_encoder.*` and `audio_encoder.*` keys are skipped here
  (the T5 and EnCodec loaders read them).
- `MusicgenForCausalLM`: the same names without the `decoder.` prefix and without `enc_to_dec_proj`
  (build its config with cond_dim=None, as `lm_config_from_hf` does for a bare decoder config).

transformers' names come from its conversion of audiocraft's (`convert_musicgen_transformers.py`, see
docs/architecture.md 3.1); audiocraft packs each attention's q, k, v into one `in_proj_weight` [3D, D], which
transformers splits by rows into q/k/v_proj.
"""

from collections.abc import Mapping
from typing import Any

import torch

from .config import LMConfig, lm_config_from_hf
from .model import MusicGenLM

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


class StateDictMismatchError(ValueError):
    """A checkpoint's keys or shapes do not match the model; the message names every offending key."""


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


def _is_causal_lm_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    if "decoder.lm_heads.0.weight" in state_dict:
        return False
    if "lm_heads.0.weight" in state_dict:
        return True
    raise StateDictMismatchError("no `decoder.lm_heads.0.weight` or `lm_heads.0.weight`: not a MusicGen checkpoint")


def convert_hf_state_dict(state_dict: Mapping[str, torch.Tensor], config: LMConfig) -> dict[str, torch.Tensor]:
    """Rename a transformers MusicGen state dict to MusicGenLM names.

    Args:
        state_dict: a `MusicgenForConditionalGeneration` or `MusicgenForCausalLM` state dict.
        config: the LM sizes the checkpoint should have.
    Returns:
        {our name: tensor}, the tensors themselves (not copies).
    Raises:
        StateDictMismatchError: naming every missing and every unexpected key.
    """
    table = hf_key_table(config, causal_lm=_is_causal_lm_layout(state_dict))
    missing = sorted(name for name in table if name not in state_dict)
    unexpected = sorted(
        name
        for name in state_dict
        if name not in table and not name.startswith(_SKIPPED_PREFIXES) and not name.endswith(_SKIPPED_SUFFIX)
    )
    if missing or unexpected:
        raise StateDictMismatchError(
            f"checkpoint does not fit the LM config; missing: {missing}; unexpected: {unexpected}"
        )
    return {ours: state_dict[theirs] for theirs, ours in table.items()}


def _check_shapes(lm: MusicGenLM, converted: Mapping[str, torch.Tensor]) -> None:
    expected = lm.state_dict()
    if set(expected) != set(converted):  # the table and the module disagree: a bug in this file
        raise StateDictMismatchError(f"table/module mismatch: {sorted(set(expected) ^ set(converted))}")
    wrong = [
        f"{name}: checkpoint {tuple(tensor.shape)} != model {tuple(expected[name].shape)}"
        for name, tensor in converted.items()
        if tensor.shape != expected[name].shape
    ]
    if wrong:
        raise StateDictMismatchError("shape mismatch: " + "; ".join(wrong))


def load_hf_state_dict(lm: MusicGenLM, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copy transformers MusicGen LM weights into `lm` (in place), checking every name and shape."""
    converted = convert_hf_state_dict(state_dict, lm.config)
    _check_shapes(lm, converted)
    lm.load_state_dict(converted, strict=True)


def build_lm_from_hf(
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> MusicGenLM:
    """Build a MusicGenLM from a transformers `config.json` dict and its (full or LM-only) state dict.

    The module is created on the meta device, so no random initialisation is paid for, then takes the
    checkpoint tensors as its parameters (it may share their storage) and moves to device/dtype.

    Args:
        config: the checkpoint's config.json as a dict (full MusicgenConfig or a bare decoder config).
        state_dict: tensors loaded from model.safetensors (all shards merged).
        device: where the model should live (default: where the tensors are).
        dtype: parameter dtype (default: the checkpoint's).
    Returns:
        the LM in eval mode.
    """
    lm_config = lm_config_from_hf(config)
    return _build(lm_config, convert_hf_state_dict(state_dict, lm_config), device, dtype)


def _build(config: LMConfig, converted: Mapping[str, torch.Tensor], device, dtype) -> MusicGenLM:
    """A MusicGenLM built on the meta device (no random init) that takes `converted` (our names) as its tensors."""
    with torch.device("meta"):
        lm = MusicGenLM(config)
    _check_shapes(lm, converted)
    lm.load_state_dict(converted, strict=True, assign=True)
    return lm.to(device=device, dtype=dtype).eval()


# audiocraft `LMModel` names (its exported `state_dict.bin`) -> ours. Attention weights are packed:
# `in_proj_weight` [3D, D] holds the q, k and v projections as consecutive row blocks.
_AUDIOCRAFT_LAYER_TABLE = {
    "norm1": "self_attn_norm",
    "norm_cross": "cross_attn_norm",
    "norm2": "ffn_norm",
    "linear1": "linear1",
    "linear2": "linear2",
    "self_attn.out_proj": "self_attn.out_proj",
    "cross_attention.out_proj": "cross_attn.out_proj",
}
_AUDIOCRAFT_PACKED = {"self_attn.in_proj_weight": "self_attn", "cross_attention.in_proj_weight": "cross_attn"}
_AUDIOCRAFT_TEXT_PROJ = "condition_provider.conditioners.description.output_proj."


def convert_audiocraft_state_dict(state_dict: Mapping[str, torch.Tensor], config: LMConfig) -> dict[str, torch.Tensor]:
    """Rename an audiocraft LM state dict to MusicGenLM names, splitting the packed q/k/v projections.

    Raises:
        StateDictMismatchError: naming every key that maps to nothing, and every model tensor left unset.
    """
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    for name, tensor in state_dict.items():
        ours = _audiocraft_name(name)
        if ours is None:
            unexpected.append(name)
        elif isinstance(ours, tuple):  # packed attention: rows [q; k; v]
            q, k, v = tensor.chunk(3, dim=0)  # [D, D] each
            out |= {f"{ours[0]}.q_proj.weight": q, f"{ours[0]}.k_proj.weight": k, f"{ours[0]}.v_proj.weight": v}
        else:
            out[ours] = tensor
    expected = set(hf_key_table(config).values())
    missing = sorted(expected - set(out))
    unexpected += sorted(set(out) - expected)
    if missing or unexpected:
        raise StateDictMismatchError(f"checkpoint does not fit the LM config; missing: {missing}; "
                                     f"unexpected: {sorted(unexpected)}")
    return out


def _audiocraft_name(name: str) -> str | tuple[str] | None:
    """Our name for one audiocraft key; a 1-tuple (prefix) for a packed q/k/v weight; None if unknown."""
    parts = name.split(".")
    if parts[0] == "emb" and len(parts) == 3:
        return f"embeddings.{parts[1]}.weight"
    if parts[0] == "linears" and len(parts) == 3:
        return f"heads.{parts[1]}.weight"
    if parts[0] == "out_norm":
        return name
    if name.startswith(_AUDIOCRAFT_TEXT_PROJ):
        return "cond_proj." + name[len(_AUDIOCRAFT_TEXT_PROJ):]
    if name.startswith("transformer.layers.") and len(parts) >= 5:
        layer, rest = ".".join(parts[:3]), ".".join(parts[3:])
        if rest in _AUDIOCRAFT_PACKED:
            return (f"{layer}.{_AUDIOCRAFT_PACKED[rest]}",)
        module, _, param = rest.rpartition(".")
        if module in _AUDIOCRAFT_LAYER_TABLE:
            return f"{layer}.{_AUDIOCRAFT_LAYER_TABLE[module]}.{param}"
    return None


def build_lm_from_audiocraft(config: LMConfig, state_dict: Mapping[str, torch.Tensor],
                             device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> MusicGenLM:
    """Build a MusicGenLM from an audiocraft LM state dict (see `lm_config_from_audiocraft` for the config)."""
    return _build(config, convert_audiocraft_state_dict(state_dict, config), device, dtype)

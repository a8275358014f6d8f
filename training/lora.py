"""LoRA fine-tuning of the LM (`train.py lm --init SOURCE --lora-rank R`) with PEFT, and the adapter folder it writes.

PEFT's LoRA layers wrap the chosen linear layers of our `MusicGenLM` in place (`peft.inject_adapter_in_model`):
each keeps its frozen weight as `base_layer` and adds `lora_B(lora_A(dropout(x))) * alpha / r`, B starting at
zero so that training starts from the base model exactly (LoRA paper, Hu et al. 2021, section 4.1). Everything
else (the LM's other weights, the text encoder, the codec) stays frozen: the optimizer and the checkpoints hold
the adapter alone.

The adapter is written in PEFT's folder format under transformers' module names (`inference.lora`), so that
`peft.PeftModel.from_pretrained(MusicgenForConditionalGeneration.from_pretrained(BASE), OUT/adapter)` and
`MusicGen.from_pretrained(BASE, lora=OUT/adapter)` both read it.

Default targets: the attention projections (self- and cross-attention q, k, v, out), as the LoRA paper adapts
attention weights only; at rank 8 on musicgen-small that is 3.1M parameters, 0.75% of the LM's bytes (the FFN
too would make it 1.2%). `--lora-targets` also takes `ffn` (fc1, fc2) and single projections.
"""

import os
import re
import shutil
from pathlib import Path

import peft
import torch
from safetensors.torch import save_file

from inference.lora import ADAPTER_WEIGHTS, HF_LAYERS, PEFT_PREFIX, lora_module_names
from lm.model import MusicGenLM


def target_pattern(local_names: tuple[str, ...], prefix: str) -> str:
    """A regular expression that PEFT matches in full against module names: the layers under `prefix` whose
    layer-local name is one of `local_names`."""
    return re.escape(prefix) + r"\d+\.(" + "|".join(re.escape(n) for n in local_names) + ")"


def add_lora(lm: MusicGenLM, rank: int, alpha: float, dropout: float, targets: tuple[str, ...]) -> MusicGenLM:
    """Freeze `lm` and wrap its target layers in PEFT's LoRA layers, in place; returns lm.

    Raises:
        ValueError: when a target names a layer the LM does not have (cross-attention in a melody model).
    """
    if not lm.config.cross_attention and any(t.startswith("cross_attn") for t in targets):
        raise ValueError("--lora-targets names cross_attn, which this LM does not have (no cross-attention)")
    lm.requires_grad_(False)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                             target_modules=target_pattern(targets, "transformer.layers."))
    return peft.inject_adapter_in_model(config, lm)


def adapter_tensors(lm: MusicGenLM) -> dict[str, torch.Tensor]:
    """The adapter's tensors under PEFT's saved names in transformers' module names:
    {"base_model.model.decoder.model.decoder.layers.0.self_attn.q_proj.lora_A.weight": [r, D_in], ...}."""
    hf_names = lora_module_names(lm.config)
    tensors = {}
    for key, tensor in peft.get_peft_model_state_dict(lm).items():  # "transformer.layers.0.linear1.lora_A.weight"
        module, _, part = key.rpartition(".lora_")
        tensors[f"{PEFT_PREFIX}{hf_names[module]}.lora_{part}"] = tensor.detach().float().cpu().contiguous()
    return tensors


def save_adapter(lm: MusicGenLM, folder: str | os.PathLike, base: str) -> Path:
    """Write the adapter of `lm` (wrapped by `add_lora`) as a PEFT adapter folder, all or nothing.

    Args:
        base: the base model's source, recorded as `base_model_name_or_path`.
    Returns:
        the folder.
    """
    folder = Path(folder)
    config, hf_names = lm.peft_config["default"], lora_module_names(lm.config)
    wrapped = [name for name, module in lm.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)]
    hf_local = sorted({hf_names[name].removeprefix(HF_LAYERS).partition(".")[2] for name in wrapped})  # fc1, ...
    saved = peft.LoraConfig(r=config.r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                            target_modules=target_pattern(tuple(hf_local), HF_LAYERS), base_model_name_or_path=base)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    saved.save_pretrained(tmp)
    save_file(adapter_tensors(lm), tmp / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def adapter_summary(lm: MusicGenLM) -> dict:
    """Sizes for the run's summary: adapter parameters and bytes (float32) against the LM's."""
    adapter = sum(p.numel() for n, p in lm.named_parameters() if "lora_" in n)
    total = sum(p.numel() for n, p in lm.named_parameters() if "lora_" not in n)
    return {"parameters": adapter, "lm_parameters": total, "bytes": 4 * adapter, "lm_bytes": 4 * total,
            "share": adapter / total}

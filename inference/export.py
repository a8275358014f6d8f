"""Write a MusicGen (ours, trained or fine-tuned) as a folder that `MusicGen.from_pretrained` reads.

The layout is transformers' (`config.json` with `text_encoder`, `audio_encoder` and `decoder` sections, one
`model.safetensors`, the tokenizer files), so a model with a T5 text encoder also loads in transformers'
`MusicgenForConditionalGeneration`. One extension: a model trained with the word lookup-table conditioner
(no T5, for small self-trained models) has `"text_encoder": {"model_type": "lookup_table", ...}` and its table
as `text_encoder.embedding.weight`; only this project reads that.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from encodec.loading import config_to_hf
from inference.speed import compute_dtype
from lm.conditioning import LookupTableConditioner
from lm.config import LMConfig
from lm.loading import hf_key_table

MAX_POSITIONS = 2048  # transformers' positional table size; ours are computed for any position


def decoder_config_to_hf(config: LMConfig) -> dict:
    """The `decoder` section of a transformers MusicGen config.json for our LMConfig."""
    return {
        "model_type": "musicgen_melody_decoder" if config.num_chroma else "musicgen_decoder",
        "vocab_size": config.card, "hidden_size": config.dim, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "ffn_dim": config.ffn_dim, "num_codebooks": config.num_codebooks,
        "audio_channels": config.audio_channels, "activation_function": "gelu",
        "max_position_embeddings": MAX_POSITIONS, "pad_token_id": config.card, "bos_token_id": config.card,
        "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "layerdrop": 0.0,
        "scale_embedding": False, "tie_word_embeddings": False,
    }


def _codec_tensors(codec: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The codec's tensors in transformers' names. Folded weight norm is stored back as g = ||w||, v = w
    (which gives w again), so that transformers, whose config says weight_norm, can read the file."""
    state = {}
    for name, tensor in codec.state_dict().items():
        if codec.config.norm == "weight_norm" and name.endswith(".conv.weight"):
            dims = tuple(range(1, tensor.dim()))
            stem = name[: -len(".weight")]
            state[f"{stem}.parametrizations.weight.original0"] = tensor.norm(dim=dims, keepdim=True)
            state[f"{stem}.parametrizations.weight.original1"] = tensor
        else:
            state[name] = tensor
    return state


def _text_section(text: torch.nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
    if isinstance(text, LookupTableConditioner):
        config = {"model_type": "lookup_table", "num_bins": text.num_bins, "d_model": text.dim,
                  "max_words": text.max_words}
        return config, {"embedding.weight": text.embedding.weight}
    state = dict(text.encoder.state_dict())
    state.pop("encoder.embed_tokens.weight", None)  # tied to `shared.weight`; stored once
    return text.encoder.config.to_dict(), state


def save_musicgen(mg, folder: str | os.PathLike) -> Path:
    """Write `mg` (an `inference.MusicGen`) to `folder`; an existing model there is replaced only when complete.

    The files are written into a temporary folder beside `folder`, which is then renamed into place. The LM must
    hold its float weights: one loaded for speed (int8, or cast to a reduced dtype; int8 is the CPU default of
    `from_pretrained`) is refused, since its weights are no longer the model's.
    """
    if compute_dtype(mg.lm) != torch.float32:
        raise ValueError("save_musicgen writes the float32 weights, and this LM was loaded for speed (int8 or a "
                         "reduced dtype): load it with MusicGen.from_pretrained(..., quantize=None)")
    folder = Path(folder)
    text_config, text_state = _text_section(mg.text)
    config = {
        "model_type": "musicgen_melody" if mg.lm.config.num_chroma else "musicgen",
        "architectures": ["MusicgenForConditionalGeneration"], "is_encoder_decoder": True,
        "text_encoder": text_config, "audio_encoder": config_to_hf(mg.codec.config),
        "decoder": decoder_config_to_hf(mg.lm.config), "max_duration": mg.max_duration,
    }
    if mg.lm.config.num_chroma:
        config |= {"num_chroma": mg.lm.config.num_chroma, "chroma_length": mg.lm.config.chroma_length}
    lm_state = mg.lm.state_dict()
    tensors = {theirs: lm_state[ours] for theirs, ours in hf_key_table(mg.lm.config).items()}
    tensors |= {f"audio_encoder.{k}": v for k, v in _codec_tensors(mg.codec).items()}
    tensors |= {f"text_encoder.{k}": v for k, v in text_state.items()}
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(tensors, staging / "model.safetensors", metadata={"format": "pt"})
        if getattr(mg.text, "tokenizer", None) is not None:
            mg.text.tokenizer.save_pretrained(staging)
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        previous = folder.with_name(f".{folder.name}.previous")
        if folder.exists():
            os.replace(folder, previous)  # kept until the new model is in place
        os.replace(staging, folder)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder

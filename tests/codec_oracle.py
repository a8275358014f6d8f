"""Random transformers EnCodec checkpoints, and the same weights renamed into the other published layouts.

transformers leaves codebooks at zero (every code would be 0 and a parity test would prove nothing), so
`random_hf_codec` fills them with vectors spread over the latents' range.
"""

import json
import re
from pathlib import Path

import torch
import transformers
import yaml

from encodec.loading import rename_keys

# Small but complete: every kind of layer of the published models, with few channels.
HF_32KHZ = dict(sampling_rate=32_000, audio_channels=1, num_filters=8, upsampling_ratios=[8, 5, 4, 4],
                target_bandwidths=[2.2], codebook_size=2048, hidden_size=16, num_lstm_layers=2,
                use_causal_conv=False, use_conv_shortcut=False, pad_mode="reflect")
HF_24KHZ = dict(sampling_rate=24_000, audio_channels=1, num_filters=4, upsampling_ratios=[8, 5, 4, 2],
                target_bandwidths=[1.5, 3.0, 6.0], codebook_size=1024, hidden_size=8,
                use_causal_conv=True, use_conv_shortcut=True)


def random_hf_codec(seed: int = 0, **config) -> transformers.EncodecModel:
    torch.manual_seed(seed)
    model = transformers.EncodecModel(transformers.EncodecConfig(**config)).eval()
    with torch.no_grad():
        scale = model.encoder(torch.randn(1, config.get("audio_channels", 1), 4000) * 0.1).std()
        for layer in model.quantizer.layers:
            layer.codebook.embed.copy_(torch.randn_like(layer.codebook.embed) * scale)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            layer.codebook.cluster_size.fill_(1.0)
    return model


def hf_codes_and_audio(model: transformers.EncodecModel, wav: torch.Tensor):
    """transformers' codes [B, K, T] at the highest bandwidth, and their decoding."""
    with torch.no_grad():
        bandwidth = max(model.config.target_bandwidths)
        codes = model.encode(wav, bandwidth=bandwidth).audio_codes[0]  # [B, K, T]
        audio = model.decode(codes[None], [None]).audio_values
    return codes, audio


def legacy_weight_norm_names(state: dict) -> dict:
    """`parametrizations.weight.original0/1` -> `weight_g/weight_v`, as in the 2023 Hub files."""
    renames = [(r"\.parametrizations\.weight\.original0$", ".weight_g"),
               (r"\.parametrizations\.weight\.original1$", ".weight_v")]
    return rename_keys(state, renames)


def to_audiocraft_names(state: dict, num_ratios: int = 4) -> dict:
    """Inverse of the HF conversion: transformers EncodecModel names -> audiocraft/encodec names."""
    # decoder layout for one residual layer: conv, lstm, (elu, convtr, res) x num_ratios, elu, conv
    convtr_indices = {str(3 + 3 * i) for i in range(num_ratios)}
    out = {}
    for key, value in legacy_weight_norm_names(state).items():
        key = re.sub(r"^quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.vq.layers.\1._codebook.", key)
        side, _, rest = key.partition(".layers.")
        if side in ("encoder", "decoder"):
            index, _, rest = rest.partition(".")
            transposed = side == "decoder" and index in convtr_indices
            rest = re.sub(r"^conv\.", "convtr.convtr." if transposed else "conv.conv.", rest)
            rest = re.sub(r"^(block\.\d+|shortcut)\.conv\.", r"\1.conv.conv.", rest)
            key = f"{side}.model.{index}.{rest}"
        out[key] = value
    return out


def audiocraft_xp_cfg(hf_config: dict, n_q: int = 4) -> str:
    """An audiocraft experiment config (as exported in `xp.cfg`) for the same architecture, with the
    unresolved `${...}` interpolations that real exports keep."""
    cfg = {
        "sample_rate": hf_config["sampling_rate"], "channels": hf_config["audio_channels"],
        "compression_model": "encodec",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": "${sample_rate}",
                    "channels": "${channels}", "causal": hf_config["use_causal_conv"], "renormalize": False},
        "seanet": {"dimension": hf_config["hidden_size"], "channels": "${channels}", "causal": "${encodec.causal}",
                   "n_filters": hf_config["num_filters"], "n_residual_layers": 1,
                   "ratios": hf_config["upsampling_ratios"], "activation": "ELU",
                   "activation_params": {"alpha": 1.0}, "norm": "weight_norm", "norm_params": {},
                   "kernel_size": 7, "residual_kernel_size": 3, "last_kernel_size": 7, "dilation_base": 2,
                   "pad_mode": hf_config.get("pad_mode", "reflect"),
                   "true_skip": not hf_config["use_conv_shortcut"], "compress": 2,
                   "lstm": hf_config.get("num_lstm_layers", 2),
                   "disable_norm_outer_blocks": 0,
                   "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
                   "encoder": {}},
        "rvq": {"n_q": n_q, "q_dropout": False, "bins": hf_config["codebook_size"], "decay": 0.99,
                "kmeans_init": True, "kmeans_iters": 50, "threshold_ema_dead_code": 2},
    }
    return yaml.safe_dump(cfg)


def save_audiocraft(model: transformers.EncodecModel, hf_config: dict, path: Path) -> Path:
    state = to_audiocraft_names(model.state_dict(), len(hf_config["upsampling_ratios"]))
    xp_cfg = audiocraft_xp_cfg(hf_config, n_q=len(model.quantizer.layers))
    torch.save({"best_state": state, "xp.cfg": xp_cfg, "version": "1.0", "exported": True}, path)
    return path


def save_musicgen_style(model: transformers.EncodecModel, folder: Path) -> Path:
    """A folder shaped like a MusicGen checkpoint: the codec under `audio_encoder`, weights prefixed."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {f"audio_encoder.{k}": v.contiguous() for k, v in legacy_weight_norm_names(model.state_dict()).items()}
    state["decoder.model.decoder.layer_norm.weight"] = torch.ones(4)  # an LM tensor the codec loader must skip
    save_file(state, folder / "model.safetensors")
    config = {"model_type": "musicgen", "audio_encoder": model.config.to_dict(), "decoder": {}, "text_encoder": {}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder

"""Read every published EnCodec checkpoint format into our `EncodecModel`.

Formats, detected from what `source` is:

| source | layout | config from |
|---|---|---|
| HF repo id (`facebook/encodec_32khz`, `facebook/musicgen-small`) | transformers | its `config.json` |
| folder: `config.json` + `model.safetensors` (or shards, or `pytorch_model.bin`) | transformers | `config.json` |
| `compression_state_dict.bin` (or a folder holding it) | audiocraft | the `xp.cfg` YAML inside |
| the same file in pointer form, `{'pretrained': 'facebook/encodec_32khz'}` | (follows the pointer) | |
| `encodec_24khz-*.th` from the original encodec package | audiocraft names | inferred from tensor shapes |

Key names are mapped through one explicit rename table per format (below) and every tensor's shape is
checked. Our module names are transformers' (`encoder.layers.{i}.conv`, `quantizer.layers.{i}.codebook`),
with torch's current weight-norm names (`conv.parametrizations.weight.original0/1` for g/v). Checkpoints are
read with safetensors or `torch.load(weights_only=True)`: loading never runs code from the file.
"""

import json
import math
import os
import re
from pathlib import Path

import torch

from checkpoint_io import (
    CheckpointError,
    ModelNotFoundError,
    check_size,
    file_getter,
    float_field,
    hub_file,
    int_field,
    load_strict,
    looks_like_repo_id,
    meta_size,
    read_hf_weights,
    read_json,
    read_xp_cfg,
    summarise,
    torch_load,
)
from encodec.config import EncodecConfig, get_preset
from encodec.inference import prepare_codec_for_inference
from encodec.model import EncodecModel

# Weight norm: old `torch.nn.utils.weight_norm` names (2023 Hub files, audiocraft, encodec) -> current ones.
WEIGHT_NORM_RENAMES = [
    (r"\.weight_g$", ".parametrizations.weight.original0"),
    (r"\.weight_v$", ".parametrizations.weight.original1"),
]
# transformers' EncodecModel: our names already, up to weight norm.
HF_RENAMES = WEIGHT_NORM_RENAMES
# audiocraft `CompressionModel` and the original encodec package (SConv1d wraps NormConv1d wraps Conv1d).
AUDIOCRAFT_RENAMES = [
    (r"^(encoder|decoder)\.model\.", r"\1.layers."),
    (r"\.conv\.conv\.", ".conv."),
    (r"\.convtr\.convtr\.", ".conv."),
    (r"\.(conv|convtr)\.norm\.", ".norm."),
    (r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook."),
    *WEIGHT_NORM_RENAMES,
]
# Metadata buffers that some exports carry and that have no tensor to load.
IGNORED_KEYS = re.compile(r"(\.padding_total|\.stride|\.kernel_size)$")


def rename_keys(state: dict[str, torch.Tensor], renames: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Apply each (regex, replacement) of `renames` in order to every key."""
    out = {}
    for key, value in state.items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def build_codec(config: EncodecConfig, state: dict[str, torch.Tensor], origin: str) -> EncodecModel:
    """An EncodecModel of `config` holding `state` (our names), strictly checked (`checkpoint_io.load_strict`).

    The model is built on the meta device (no memory, no random init), then takes the checkpoint's tensors
    (in float32). A checkpoint whose weight norm was already folded (plain `conv.weight`) loads into a
    folded model.
    """
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items() if not IGNORED_KEYS.search(k)}
    with torch.device("meta"):
        model = EncodecModel(config)
    if not any(".parametrizations.weight." in k for k in state):
        model.fold_weight_norm()
    load_strict(model, state, origin, assign=True)
    return model


# ---------------------------------------------------------------------------------------------------------
# Configs


def config_from_hf(cfg: dict, origin: str = "config.json") -> EncodecConfig:
    """Our config from a transformers `EncodecConfig` dict (`config.json`, or MusicGen's `audio_encoder`).

    A missing field takes transformers' default for it (e.g. `use_causal_conv` defaults to True there). Every
    number is checked (type and range) before anything is built; a bad one is a `CheckpointError` naming it.
    """
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{origin}: the codec config is a {type(cfg).__name__}, not an object")
    unsupported = {"normalize": False, "chunk_length_s": None}
    for field, ok in unsupported.items():
        if cfg.get(field, ok) not in (ok, 0, False):
            raise CheckpointError(f"EnCodec checkpoints with {field}={cfg[field]!r} (the 48 kHz model's chunked "
                                  "normalisation) are not supported; MusicGen uses the 32 kHz codec")

    def number(name: str, default: int, low: int = 1, high: int = 65_536) -> int:
        return int_field(cfg, name, origin, low, high, default)

    hidden = number("hidden_size", 128)
    if cfg.get("codebook_dim") not in (None, hidden):
        raise CheckpointError(f"codebook_dim {cfg['codebook_dim']} != hidden_size {hidden} is not supported")
    sample_rate = number("sampling_rate", 24_000, high=1_000_000)
    ratios = _int_list(cfg, "upsampling_ratios", (8, 5, 4, 2), origin)
    bins = number("codebook_size", 1024, low=2, high=2**20)
    bandwidths = cfg.get("target_bandwidths", (1.5, 3.0, 6.0, 12.0, 24.0))
    if not isinstance(bandwidths, list | tuple) or not bandwidths:
        raise CheckpointError(f"{origin}: target_bandwidths must be a non-empty list, got {bandwidths!r}")
    bandwidth = max(float_field({"target_bandwidths": b}, "target_bandwidths", origin, 1e-3, 1e4) for b in bandwidths)
    # transformers' rule: the codebooks that fit the highest bandwidth, at the rounded-up frame rate.
    frame_rate = -(-sample_rate // math.prod(ratios))
    n_q = int(1000 * bandwidth // (frame_rate * (bins - 1).bit_length()))
    if not 1 <= n_q <= 1024:
        raise CheckpointError(f"{origin}: target_bandwidths {bandwidths} give {n_q} codebooks at {frame_rate} Hz "
                              f"and {bins} codes (between 1 and 1024 are supported)")
    try:
        return EncodecConfig(
            sample_rate=sample_rate, channels=number("audio_channels", 1, high=2), dimension=hidden,
            n_filters=number("num_filters", 32), ratios=ratios,
            n_residual_layers=number("num_residual_layers", 1, low=0, high=64),
            kernel_size=number("kernel_size", 7, high=1024), last_kernel_size=number("last_kernel_size", 7, high=1024),
            residual_kernel_size=number("residual_kernel_size", 3, high=1024),
            dilation_base=number("dilation_growth_rate", 2, high=1024), compress=number("compress", 2, high=1024),
            lstm_layers=number("num_lstm_layers", 2, high=64), true_skip=not cfg.get("use_conv_shortcut", True),
            causal=bool(cfg.get("use_causal_conv", True)), pad_mode=cfg.get("pad_mode", "reflect"),
            norm=cfg.get("norm_type", "weight_norm"),
            trim_right_ratio=float_field(cfg, "trim_right_ratio", origin, 0.0, 1.0, 1.0),
            n_q=n_q, bins=bins, q_dropout=len(bandwidths) > 1,
        )
    except ValueError as err:  # pad_mode, norm_type: the config's own checks
        raise CheckpointError(f"{origin}: {err}") from None


def _int_list(cfg: dict, name: str, default: tuple[int, ...], origin: str) -> tuple[int, ...]:
    values = cfg.get(name, default)
    if not isinstance(values, list | tuple) or not 1 <= len(values) <= 16:
        raise CheckpointError(f"{origin}: {name} must be a list of 1 to 16 integers, got {values!r}")
    return tuple(int_field({name: v}, name, origin, 1, 1024) for v in values)


def config_to_hf(config: EncodecConfig) -> dict:
    """The transformers `config.json` of a model, so that `save_encodec` folders load in both projects."""
    return {
        "model_type": "encodec", "architectures": ["EncodecModel"], "sampling_rate": config.sample_rate,
        "audio_channels": config.channels, "hidden_size": config.dimension, "codebook_dim": config.dimension,
        "num_filters": config.n_filters, "upsampling_ratios": list(config.ratios),
        "num_residual_layers": config.n_residual_layers, "kernel_size": config.kernel_size,
        "last_kernel_size": config.last_kernel_size, "residual_kernel_size": config.residual_kernel_size,
        "dilation_growth_rate": config.dilation_base, "compress": config.compress,
        "num_lstm_layers": config.lstm_layers, "use_conv_shortcut": not config.true_skip,
        "use_causal_conv": config.causal, "pad_mode": config.pad_mode, "norm_type": config.norm,
        "trim_right_ratio": config.trim_right_ratio, "codebook_size": config.bins,
        "target_bandwidths": [config.bandwidth], "normalize": False, "chunk_length_s": None, "overlap": None,
    }


def config_from_audiocraft(xp_cfg: str | dict) -> EncodecConfig:
    """Our config from an audiocraft experiment config (the `xp.cfg` YAML in `compression_state_dict.bin`)."""
    root = read_xp_cfg(xp_cfg)
    seanet, rvq = dict(root["seanet"]), root["rvq"]
    encoder_only, decoder_only = seanet.pop("encoder", None) or {}, seanet.pop("decoder", None) or {}
    if encoder_only or decoder_only.get("final_activation") or seanet.get("disable_norm_outer_blocks", 0):
        raise CheckpointError("audiocraft SEANet configs with encoder-only overrides, a final activation or "
                              "disable_norm_outer_blocks are not supported")
    if root.get("encodec", {}).get("renormalize", False):
        raise CheckpointError("audiocraft codecs with renormalize=true are not supported")
    return EncodecConfig(
        sample_rate=root["sample_rate"], channels=seanet.get("channels", root.get("channels", 1)),
        dimension=seanet["dimension"], n_filters=seanet["n_filters"], ratios=tuple(seanet["ratios"]),
        n_residual_layers=seanet["n_residual_layers"], kernel_size=seanet["kernel_size"],
        last_kernel_size=seanet["last_kernel_size"], residual_kernel_size=seanet["residual_kernel_size"],
        dilation_base=seanet["dilation_base"], compress=seanet["compress"], lstm_layers=seanet["lstm"],
        true_skip=seanet["true_skip"], causal=seanet["causal"], pad_mode=seanet["pad_mode"], norm=seanet["norm"],
        trim_right_ratio=decoder_only.get("trim_right_ratio", 1.0), n_q=rvq["n_q"], bins=rvq["bins"],
        q_dropout=rvq.get("q_dropout", False), decay=rvq.get("decay", 0.99),
        kmeans_iters=rvq.get("kmeans_iters", 50), threshold_ema_dead_code=rvq.get("threshold_ema_dead_code", 2),
    )


def config_from_encodec_state(state: dict[str, torch.Tensor]) -> EncodecConfig:
    """Sizes of an original-encodec-package state dict (no config inside), on top of the 24 kHz preset."""
    if "encoder.model.0.conv.norm.weight" in state:
        raise CheckpointError("this is a 48 kHz encodec checkpoint (time group norm, chunked normalisation), "
                              "which is not supported; MusicGen uses the 32 kHz codec")
    first = state["encoder.model.0.conv.conv.weight_v"]  # [n_filters, C, k]
    n_q = len({k.split(".")[3] for k in state if k.startswith("quantizer.vq.layers.")})
    embed = state["quantizer.vq.layers.0._codebook.embed"]  # [V, D]
    return get_preset("encodec-24khz", channels=first.shape[1], n_filters=first.shape[0],
                      dimension=embed.shape[1], n_q=n_q, bins=embed.shape[0])


# ---------------------------------------------------------------------------------------------------------
# Sources


def load_encodec(source: str | os.PathLike, device: torch.device | str | None = None,
                 inference: bool = True) -> EncodecModel:
    """Load a published (or our own exported) EnCodec, in eval mode.

    Args:
        source: a Hugging Face repo id (`facebook/encodec_32khz`, or a MusicGen repo: its codec is read),
            a local folder in transformers or audiocraft layout, or a checkpoint file
            (`compression_state_dict.bin`, an original encodec `.th`).
        device: where to put the model (default CPU).
        inference: fold weight norm and swap in the faster inference modules
            (`encodec.inference.prepare_codec_for_inference`); False keeps the training form.
    Returns:
        The codec, see `EncodecModel` (`encode`, `decode`, `sample_rate`, `frame_rate`, ...).
    """
    model = _load(str(source))
    if inference:
        prepare_codec_for_inference(model)
    return model.to(device).eval()


def _load(source: str) -> EncodecModel:
    path = Path(source)
    if path.is_file():
        return _load_file(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return _load_hf(read_json(path / "config.json"), file_getter(path), str(path))
        if (path / "compression_state_dict.bin").is_file():
            return _load_file(path / "compression_state_dict.bin")
        raise CheckpointError(f"{path} holds no EnCodec checkpoint: expected config.json (transformers layout) "
                              "or compression_state_dict.bin (audiocraft layout)")
    if looks_like_repo_id(source):
        config = read_json(hub_file(source, "config.json"))
        return _load_hf(config, file_getter(source), source)
    raise ModelNotFoundError(f"{source!r} is not an existing file or folder, nor a Hugging Face repo id")


def _load_hf(config: dict, get_file, origin: str) -> EncodecModel:
    """transformers layout: an EncodecModel, or the `audio_encoder` part of a MusicGen checkpoint."""
    model_type = config.get("model_type", "")
    if model_type == "encodec":
        codec_config, prefix = config_from_hf(config, origin), ""
    elif isinstance(model_type, str) and model_type.startswith("musicgen") and "audio_encoder" in config:
        codec_config, prefix = config_from_hf(config["audio_encoder"], origin), "audio_encoder."
    else:
        raise CheckpointError(f"{origin}: config.json is a {model_type or 'untyped'!r} model, not an EnCodec "
                              "or MusicGen checkpoint")
    check_size(codec_size(codec_config), "codec", origin)  # before any tensor is read
    return build_codec(codec_config, rename_keys(read_hf_weights(get_file, prefix), HF_RENAMES), origin)


def codec_size(config: EncodecConfig) -> int:
    """How many values the codec of `config` holds (counted on the meta device)."""
    return meta_size(lambda: EncodecModel(config))


def codec_from_hf(config: dict, state: dict[str, torch.Tensor], origin: str) -> EncodecModel:
    """An EncodecModel from a transformers EnCodec config dict and its tensors (names without prefix)."""
    return build_codec(config_from_hf(config, origin), rename_keys(state, HF_RENAMES), origin)


def _load_file(path: Path) -> EncodecModel:
    """A single torch file: audiocraft's export (full or pointer form), or an original encodec state dict."""
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: a bare .safetensors file has no config; pass the folder that holds it "
                              "with its config.json")
    content = torch_load(path)
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    if "pretrained" in content:  # audiocraft's pointer form: the codec lives in an HF repo
        return _load(str(content["pretrained"]))
    if "best_state" in content and "xp.cfg" in content:
        state = content["best_state"]
        state = state.get("model", state)  # some exports nest the weights once more
        try:
            config = config_from_audiocraft(content["xp.cfg"])
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
            raise CheckpointError(f"{path}: xp.cfg: {err!r}") from None
        check_size(codec_size(config), "codec", str(path))  # the tensors are memory-mapped, not read yet
        return build_codec(config, rename_keys(state, AUDIOCRAFT_RENAMES), str(path))
    if "encoder.model.0.conv.conv.weight_v" in content:  # the original encodec package
        return build_codec(config_from_encodec_state(content), rename_keys(content, AUDIOCRAFT_RENAMES), str(path))
    raise CheckpointError(f"{path}: unknown checkpoint format (top-level keys: {summarise(list(content))})")


def save_encodec(model: EncodecModel, folder: str | os.PathLike) -> Path:
    """Write `model` in transformers layout (config.json + model.safetensors), readable by `load_encodec`.

    Files are written to temporary names and renamed, so an interrupted save leaves no half-written model.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, folder / "model.safetensors.tmp", metadata={"format": "pt"})
    (folder / "config.json.tmp").write_text(json.dumps(config_to_hf(model.config), indent=2))
    os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
    os.replace(folder / "config.json.tmp", folder / "config.json")
    return folder

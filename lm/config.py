"""Configuration of the MusicGen language model, with the published sizes as named presets.

The numbers come from audiocraft's `config/model/lm/model_scale/*.yaml` (dim, layers, heads) and
`musicgen_lm.yaml` (4 codebooks of 2048 codes, delays [0, 1, 2, 3], max period 10000). The stereo models
interleave left/right codebooks, so they have K = 8 and each delay appears twice.

When loading a checkpoint, build the config from the checkpoint's own `config.json` with
`lm_config_from_hf` rather than trusting a preset (the HF conversion script once shipped wrong head counts).
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from checkpoint_io import CheckpointError, int_field, section


@dataclass(frozen=True)
class LMConfig:
    """Sizes and constants of the MusicGen LM (a pre-norm decoder-only transformer over codec tokens).

    Args:
        dim: model width D.
        num_layers: number of transformer layers.
        num_heads: attention heads H; head size is dim // num_heads (64 in every released model).
        ffn_dim: hidden width of the feed-forward block (4 * dim).
        num_codebooks: K, codec codebooks modelled in parallel (4 mono, 8 stereo).
        card: V, codes per codebook (2048). Index `card` is the special token (start / delay padding).
        delays: delay of each codebook in the interleaving pattern, one per codebook.
        cross_attention: whether each layer cross-attends to the conditioning. False for melody models,
            which prepend the conditioning to the token sequence instead.
        cond_dim: width of the text encoder output projected to `dim` (768 for T5-base); None means the
            conditioning already has width `dim` and no projection exists.
        max_period: max period of the sinusoidal positional embedding.
        norm_eps: LayerNorm epsilon (PyTorch's default 1e-5, as audiocraft and transformers use).
        audio_channels: 1 for mono, 2 for stereo (codebooks interleaved [q0_L, q0_R, q1_L, ...]).
        num_chroma: chroma bins of the melody condition (12), None for text-only models.
        chroma_length: chroma frames prepended by melody models (235 = 30 s at hop 4096 and 32 kHz).
    """

    dim: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    ffn_dim: int = 4096
    num_codebooks: int = 4
    card: int = 2048
    delays: tuple[int, ...] = (0, 1, 2, 3)
    cross_attention: bool = True
    cond_dim: int | None = 768
    max_period: float = 10_000.0
    norm_eps: float = 1e-5
    audio_channels: int = 1
    num_chroma: int | None = None
    chroma_length: int = 235

    def __post_init__(self) -> None:
        if self.dim % self.num_heads != 0:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if len(self.delays) != self.num_codebooks:
            raise ValueError(f"{len(self.delays)} delays given for {self.num_codebooks} codebooks")
        if min(self.delays, default=0) < 0:
            raise ValueError(f"delays must be >= 0, got {self.delays}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def special_token(self) -> int:
        """Token id used for the initial step and the delay padding (= card, row `card` of each embedding)."""
        return self.card


def stereo_delays(num_codebooks: int) -> tuple[int, ...]:
    """Delays of the interleaved stereo pattern: each mono delay twice, (0, 0, 1, 1, 2, 2, 3, 3) for K=8."""
    return tuple(k // 2 for k in range(num_codebooks))


def _mono(dim: int, num_layers: int, num_heads: int) -> LMConfig:
    return LMConfig(dim=dim, num_layers=num_layers, num_heads=num_heads, ffn_dim=4 * dim)


def _stereo(config: LMConfig) -> LMConfig:
    return replace(config, num_codebooks=8, delays=stereo_delays(8), audio_channels=2)


_SMALL = _mono(1024, 24, 16)
_MEDIUM = _mono(1536, 48, 24)
_LARGE = _mono(2048, 48, 32)

LM_PRESETS: dict[str, LMConfig] = {
    "musicgen-small": _SMALL,
    "musicgen-medium": _MEDIUM,
    "musicgen-large": _LARGE,
    "musicgen-stereo-small": _stereo(_SMALL),
    "musicgen-stereo-medium": _stereo(_MEDIUM),
    "musicgen-stereo-large": _stereo(_LARGE),
}


def lm_preset(name: str) -> LMConfig:
    """Return the published config called `name` (a key of LM_PRESETS; a `facebook/` prefix is allowed)."""
    key = name.removeprefix("facebook/")
    if key not in LM_PRESETS:
        raise KeyError(f"unknown LM preset {name!r}; known: {sorted(LM_PRESETS)}")
    return LM_PRESETS[key]


def lm_config_from_hf(config: Mapping[str, Any], origin: str = "config.json") -> LMConfig:
    """Build an LMConfig from a transformers MusicGen `config.json` (as a dict).

    Args:
        config: either the whole `MusicgenConfig` dict (with "decoder" and "text_encoder" sections) or a
            bare `MusicgenDecoderConfig` dict. With a bare decoder dict there is no text projection
            (cond_dim None), as in `MusicgenForCausalLM`.
        origin: names the checkpoint in errors.
    Returns:
        the LMConfig with every size read from the checkpoint's own config.
    Raises:
        CheckpointError: naming the field that is missing, of the wrong type or out of range.
    """
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{origin}: the config is a {type(config).__name__}, not an object")
    melody = is_melody_config(config)
    if "decoder" in config or "text_encoder" in config or "audio_encoder" in config:
        decoder = section(config, "decoder", origin)
    else:
        decoder = dict(config)
    if decoder.get("activation_function", "gelu") != "gelu":
        raise CheckpointError(f"{origin}: unsupported activation {decoder['activation_function']!r}; MusicGen "
                              "uses gelu")

    def number(name: str, high: int, where: Mapping[str, Any] = decoder, default: int | None = None) -> int:
        return int_field(where, name, f"{origin} (decoder)" if where is decoder else origin, 1, high, default)

    # transformers computes `embed_scale` from `scale_embedding` but never applies it, so we ignore it.
    num_codebooks = number("num_codebooks", 64)
    audio_channels = number("audio_channels", 2, default=1)
    delays = stereo_delays(num_codebooks) if audio_channels == 2 else tuple(range(num_codebooks))
    dim = number("hidden_size", 65_536)
    num_heads = number("num_attention_heads", 1024)
    if dim % num_heads:
        raise CheckpointError(f"{origin} (decoder): hidden_size {dim} is not divisible by num_attention_heads "
                              f"{num_heads}")
    return LMConfig(
        dim=dim,
        num_layers=number("num_hidden_layers", 1024),
        num_heads=num_heads,
        ffn_dim=number("ffn_dim", 2**20),
        num_codebooks=num_codebooks,
        card=number("vocab_size", 2**20),
        delays=delays,
        cross_attention=not melody,  # melody models prepend [chroma, text] to the sequence instead
        cond_dim=_text_projection_dim(config, decoder, dim, origin),
        audio_channels=audio_channels,
        num_chroma=number("num_chroma", 1024, config, 12) if melody else None,
        chroma_length=number("chroma_length", 100_000, config, 235),
    )


def is_melody_config(config: Mapping[str, Any]) -> bool:
    """Whether a transformers MusicGen config (a `config.json` dict) describes a melody (chroma) model."""
    return isinstance(config, Mapping) and config.get("model_type") == "musicgen_melody"


def _text_projection_dim(config: Mapping[str, Any], decoder: Mapping[str, Any], dim: int, origin: str) -> int | None:
    """Input width of `enc_to_dec_proj`, or None when transformers builds no projection.

    transformers creates the projection only when the text encoder width differs from the decoder width
    and `cross_attention_hidden_size` is unset; every released MusicGen has T5-base (768) != dim.
    """
    if "text_encoder" not in config or decoder.get("cross_attention_hidden_size") is not None:
        return None
    text = section(config, "text_encoder", origin)
    field = "d_model" if "d_model" in text else "hidden_size"
    text_dim = int_field(text, field, f"{origin} (text_encoder)", 1, 65_536)
    return text_dim if text_dim != dim else None


def lm_config_from_audiocraft(cfg: Mapping[str, Any], cond_dim: int | None) -> LMConfig:
    """Build an LMConfig from an audiocraft experiment config (`xp.cfg` of `state_dict.bin`, as a dict).

    Args:
        cfg: the resolved xp.cfg (`checkpoint_io.read_xp_cfg`).
        cond_dim: the text encoder width (read off the checkpoint's `output_proj` weight), or None.
    Raises:
        ValueError: for settings no released MusicGen uses (post-norm, biases, other patterns, ...).
    """
    lm = cfg["transformer_lm"]
    pattern = cfg.get("codebooks_pattern", {})
    expected = {"norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False, "activation": "gelu",
                "positional_embedding": "sin", "layer_scale": None, "norm": "layer_norm", "kv_repeat": 1,
                "qk_layer_norm": False}
    unsupported = {k: lm.get(k, v) for k, v in expected.items() if lm.get(k, v) != v}
    if pattern.get("modeling", "delay") != "delay":
        unsupported["codebooks_pattern.modeling"] = pattern["modeling"]
    if cfg.get("fuser", {}).get("prepend"):
        unsupported["fuser.prepend"] = cfg["fuser"]["prepend"]  # melody models: not supported yet
    if unsupported:
        raise ValueError(f"unsupported audiocraft LM settings: {unsupported}")
    num_codebooks = int(lm["n_q"])
    delays = tuple(int(d) for d in pattern.get("delay", {}).get("delays", range(num_codebooks)))
    dim = int(lm["dim"])
    return LMConfig(
        dim=dim,
        num_layers=int(lm["num_layers"]),
        num_heads=int(lm["num_heads"]),
        ffn_dim=int(dim * lm.get("hidden_scale", 4)),
        num_codebooks=num_codebooks,
        card=int(lm["card"]),
        delays=delays,
        cross_attention=bool(cfg.get("fuser", {}).get("cross", [])),
        cond_dim=cond_dim,
        max_period=float(lm.get("max_period", 10_000.0)),
        audio_channels=int(cfg.get("channels", 1)),
    )

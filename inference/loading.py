"""MusicGen checkpoints (transformers layout) -> our LM, our codec, and the T5 text conditioner.

A transformers MusicGen checkpoint is one `config.json` with three sections and one set of tensors
(`model.safetensors`, possibly sharded) holding three models under three prefixes:

| section | tensors | becomes |
|---|---|---|
| `text_encoder` (T5Config) | `text_encoder.*` | `T5Conditioner` (transformers' T5 encoder + tokenizer) |
| `audio_encoder` (EncodecConfig) | `audio_encoder.*` | our `EncodecModel` (`encodec.loading.codec_from_hf`) |
| `decoder` (MusicgenDecoderConfig) | `decoder.*`, `enc_to_dec_proj.*` | our `MusicGenLM` (`build_lm_from_hf`) |

Sizes are read from the checkpoint's own config, never from a preset.

The audiocraft layout (`state_dict.bin` + `compression_state_dict.bin`, in the same Hub repos or a local
folder) is read too: the LM is rebuilt from the `xp.cfg` YAML stored in `state_dict.bin`, the codec comes from
`compression_state_dict.bin` (`load_encodec`), and T5 from the repo that `xp.cfg` names (`t5-base`).
"""

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from checkpoint_io import (
    CheckpointError,
    ModelNotFoundError,
    check_size,
    file_getter,
    float_field,
    hub_file,
    hub_reachable,
    int_field,
    load_strict,
    looks_like_repo_id,
    meta_size,
    read_hf_weights,
    read_json,
    read_xp_cfg,
    section,
    spec,
    torch_load,
)
from encodec import EncodecModel
from encodec.inference import prepare_codec_for_inference
from encodec.loading import codec_from_hf, codec_size, config_from_hf, load_encodec
from lm.conditioning import LookupTableConditioner, T5Conditioner
from lm.config import is_melody_config, lm_config_from_audiocraft, lm_config_from_hf
from lm.loading import LoadTransform, build_lm_from_audiocraft, build_lm_from_hf
from lm.model import MusicGenLM

_AUDIOCRAFT_TEXT_PROJ = "condition_provider.conditioners.description.output_proj.weight"
DEMO_FOLDER = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"  # the small bundled model

WINDOW_SECONDS = (0.1, 3600.0)  # the range of a model's window (max_duration) that generation supports
OFFLINE_HINT = 'The bundled demo model runs offline: --model demo (in Python: MusicGen.from_pretrained("demo"))'
# Short names accepted for the published models, and "demo" for the bundled one.
SHORT_NAMES = {
    **{name: f"facebook/musicgen-{name}"
       for name in ("small", "medium", "large", "melody", "melody-large", "stereo-small", "stereo-medium",
                    "stereo-large", "stereo-melody", "stereo-melody-large")},
    "demo": str(DEMO_FOLDER),
}


@dataclass
class MusicGenParts:
    lm: MusicGenLM
    codec: EncodecModel
    text: torch.nn.Module  # T5Conditioner or LookupTableConditioner
    max_duration: float = 30.0  # seconds the model was trained on (audiocraft `dataset.segment_duration`)


def resolve_source(source: str | os.PathLike) -> str:
    """A short model name (`small`, `demo`) becomes its Hub repo id or folder; anything else is unchanged."""
    return SHORT_NAMES.get(str(source), str(source))


def load_musicgen_parts(source: str | os.PathLike, device: torch.device, lm_dtype: torch.dtype,
                        lm_transform: LoadTransform | None = None) -> MusicGenParts:
    """Read a MusicGen checkpoint (local folder, file or Hub repo id, either layout) into our modules.

    The LM is cast to `lm_dtype`, or built in the final form of `lm_transform` (a speed transform applied while
    it is empty, then each tensor converted as it is read: `lm.loading.build_lm`); T5 and the codec stay in
    float32 (as audiocraft does on GPU).
    Raises:
        ModelNotFoundError: the model is not here at all (no such folder, not cached and not downloadable).
        CheckpointError: it is here but cannot be loaded (a missing part such as T5, a bad config or tensor);
            the message names the cause.
    """
    name, source = str(source), resolve_source(source)
    path = Path(source)
    if path.is_file() and path.name == "state_dict.bin":
        return _load_audiocraft(path, path.parent / "compression_state_dict.bin", device, lm_dtype, lm_transform)
    if path.is_dir():
        if (path / "config.json").is_file():
            return _load_transformers(source, read_json(path / "config.json"), device, lm_dtype, lm_transform)
        if (path / "state_dict.bin").is_file():
            return _load_audiocraft(path / "state_dict.bin", path / "compression_state_dict.bin", device, lm_dtype,
                                    lm_transform)
        raise CheckpointError(f"{source} holds no MusicGen checkpoint (no config.json, no state_dict.bin)")
    if name == "demo":
        raise ModelNotFoundError(f"the bundled demo model is missing from {source} (rebuild it with "
                                 "`python -m training.demo`)")
    if looks_like_repo_id(source):
        if (config := hub_file(source, "config.json", required=False)) is not None:
            return _partly_here(source, lambda: _load_transformers(source, read_json(config), device, lm_dtype,
                                                                            lm_transform))
        try:
            lm_file = hub_file(source, "state_dict.bin")  # ModelNotFoundError: neither layout is here
        except ModelNotFoundError as err:
            raise ModelNotFoundError(f"{err}. {OFFLINE_HINT}") from None
        return _partly_here(source, lambda: _load_audiocraft(lm_file, hub_file(source, "compression_state_dict.bin"),
                                                             device, lm_dtype, lm_transform))
    raise ModelNotFoundError(f"{source!r} is not an existing folder, a Hugging Face repo id, or a known model "
                             f"name ({', '.join(SHORT_NAMES)})")


def _partly_here(source: str, load):
    """Run `load` for a Hub model of which a first file was found: a file missing now is not a missing model."""
    try:
        return load()
    except ModelNotFoundError as err:
        raise CheckpointError(f"{source} is only partly available: {err}") from None


def is_melody_model(source: str | os.PathLike) -> bool:
    """Whether `source` (as `load_musicgen_parts` takes it) is a melody (chroma-conditioned) model.

    Reads only the checkpoint's config: `config.json` (transformers layout: model_type "musicgen_melody") or
    the `xp.cfg` inside `state_dict.bin` (audiocraft layout: a `self_wav` condition prepended). A Hub model
    that is not available offline is judged by its name.
    """
    source = resolve_source(source)
    path = Path(source)
    folder = path.parent if path.is_file() else path
    if (folder / "config.json").is_file():
        return is_melody_config(read_json(folder / "config.json"))
    lm_file = folder / "state_dict.bin"
    if not lm_file.is_file() and looks_like_repo_id(source):
        if (config := hub_file(source, "config.json", required=False)) is not None:
            return is_melody_config(read_json(config))
        lm_file = hub_file(source, "state_dict.bin", required=False)
        if lm_file is None:
            return "melody" in source.lower()
    if lm_file is None or not lm_file.is_file():
        return False
    package = torch_load(lm_file)
    cfg = read_xp_cfg(package.get("xp.cfg", {})) if isinstance(package, dict) else {}
    return "self_wav" in (cfg.get("fuser", {}) or {}).get("prepend", [])


def _load_transformers(source: str, config: dict, device: torch.device, lm_dtype: torch.dtype,
                       lm_transform: LoadTransform | None) -> MusicGenParts:
    model_type = config.get("model_type")
    if model_type not in ("musicgen", "musicgen_melody"):
        raise CheckpointError(f"{source}: a {model_type!r} checkpoint; expected a MusicGen one (model_type "
                              "'musicgen' or 'musicgen_melody')")
    # Every number of the three configs is checked, and the model's size against the memory available, before
    # any tensor is read.
    origin = f"{source}/config.json"
    audio_config, text_config = section(config, "audio_encoder", origin), section(config, "text_encoder", origin)
    codec_config = config_from_hf(audio_config, f"{origin} (audio_encoder)")
    lm_config = lm_config_from_hf(config, origin)
    max_duration = float_field(config, "max_duration", origin, *WINDOW_SECONDS, default=30.0)  # inference/export.py
    build_text = _text_builder(text_config, f"{source} (text_encoder)")
    size = codec_size(codec_config) + meta_size(lambda: MusicGenLM(lm_config)) + meta_size(build_text)
    check_size(size, "MusicGen model", origin)
    state = read_hf_weights(file_getter(source))
    codec = codec_from_hf(audio_config, _strip(state, "audio_encoder."), f"{source} (audio_encoder)")
    text = _text_from_hf(text_config, build_text, _strip(state, "text_encoder."), source)
    lm = build_lm_from_hf(config, state, device=device, dtype=lm_dtype, origin=f"{source} (decoder)",
                          transform=lm_transform)
    return MusicGenParts(lm, prepare_codec_for_inference(codec).to(device), text.to(device), max_duration)


def _text_builder(config: dict, origin: str) -> Callable[[], torch.nn.Module]:
    """A function that builds the text encoder a checkpoint's `text_encoder` config describes, its numbers checked.

    T5 (published models) or the word lookup table (small models trained here, see inference/export.py).
    """
    from transformers import T5Config, T5EncoderModel

    if config.get("model_type") == "lookup_table":
        num_bins = int_field(config, "num_bins", origin, 1, 2**24)
        dim = int_field(config, "d_model", origin, 1, 65_536)
        max_words = int_field(config, "max_words", origin, 1, 100_000, default=32)
        return lambda: LookupTableConditioner(num_bins, dim, max_words)
    for field, high in (("vocab_size", 2**20), ("d_model", 65_536), ("d_kv", 65_536), ("d_ff", 2**20),
                        ("num_layers", 1024), ("num_heads", 1024)):
        if field in config:
            int_field(config, field, origin, 1, high)
    try:
        t5_config = T5Config.from_dict(config)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{origin}: not a T5 config: {err}") from None
    return lambda: T5EncoderModel(t5_config)


def _text_from_hf(config: dict, build: Callable[[], torch.nn.Module], state: dict[str, torch.Tensor],
                  source: str) -> torch.nn.Module:
    """The text conditioner: `build()` (on the meta device) holding the checkpoint's `text_encoder.*` tensors."""
    origin = f"{source} (text_encoder)"
    with torch.device("meta"):
        model = build()
    if isinstance(model, LookupTableConditioner):
        load_strict(model, {k: v.float() for k, v in state.items()}, origin, assign=True)
        return model.eval()
    state = dict(state)
    state.setdefault("encoder.embed_tokens.weight", state.get("shared.weight"))  # tied to `shared`
    state.setdefault("shared.weight", state.get("encoder.embed_tokens.weight"))
    state = {k: v.float() for k, v in state.items() if v is not None}
    load_strict(model, state, origin, assign=True)
    model.encoder.embed_tokens.weight = model.shared.weight
    return T5Conditioner(model.float().eval(), load_tokenizer(source, config))


def _load_audiocraft(lm_file: Path, codec_file: Path, device: torch.device, lm_dtype: torch.dtype,
                     lm_transform: LoadTransform | None) -> MusicGenParts:
    """audiocraft's exported files: {'best_state': LM state dict, 'xp.cfg': YAML} and the codec's file."""
    package = torch_load(lm_file, lazy=True)  # the LM's tensors read one by one as they are loaded
    if not isinstance(package, dict) or "best_state" not in package or "xp.cfg" not in package:
        raise CheckpointError(f"{lm_file} is not an audiocraft LM export (expected 'best_state' and 'xp.cfg')")
    cfg, state = read_xp_cfg(package["xp.cfg"]), package["best_state"]
    text_proj = spec(state, _AUDIOCRAFT_TEXT_PROJ) if _AUDIOCRAFT_TEXT_PROJ in state else None  # [D, D_text]
    try:
        config = lm_config_from_audiocraft(cfg, None if text_proj is None else text_proj.shape[1])
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as err:
        raise CheckpointError(f"{lm_file}: xp.cfg: {err!r}") from None
    check_size(meta_size(lambda: MusicGenLM(config)), "language model", str(lm_file))  # no tensor read yet
    dataset = cfg.get("dataset") if isinstance(cfg.get("dataset"), dict) else {}
    max_duration = 30.0 if dataset.get("segment_duration") is None else \
        float_field(dataset, "segment_duration", f"{lm_file}: xp.cfg dataset", *WINDOW_SECONDS)
    lm = build_lm_from_audiocraft(config, state, device=device, dtype=lm_dtype, origin=str(lm_file),
                                  transform=lm_transform)
    t5_name = cfg.get("conditioners", {}).get("description", {}).get("t5", {}).get("name")
    if t5_name is None:
        raise CheckpointError(f"{lm_file}: xp.cfg names no T5 text encoder (conditioners.description.t5.name)")
    text = T5Conditioner(t5_from_pretrained(t5_name), load_tokenizer(t5_name))
    codec = load_encodec(codec_file, device=device)
    return MusicGenParts(lm, codec, text.to(device), max_duration)


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix` (prefix removed), read now: only these are looked up in a lazy `state`."""
    return {k[len(prefix):]: state[k] for k in state if k.startswith(prefix)}


def t5_from_pretrained(name: str) -> torch.nn.Module:
    """The T5 encoder an audiocraft config names (e.g. "t5-base"), from the Hub cache or a local folder."""
    from transformers import T5EncoderModel

    try:
        offline = not Path(name).is_dir() and not hub_reachable()
        return T5EncoderModel.from_pretrained(name, local_files_only=offline).float().eval()
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load the T5 text encoder {name!r}: {err}") from None


def load_tokenizer(source: str, text_config: dict | None = None):
    """The tokenizer stored with the checkpoint (T5's sentencepiece for the published models).

    Args:
        text_config: the checkpoint's `text_encoder` config section. Given, it tells transformers the tokenizer's
            model type, so that the MusicGen `config.json` is not read (whose decoder section makes transformers
            warn about token ids beyond its vocabulary).
    """
    from transformers import AutoTokenizer, T5Config

    try:
        offline = not Path(source).is_dir() and not hub_reachable()
        config = T5Config.from_dict(text_config) if text_config is not None else None
        return AutoTokenizer.from_pretrained(source, local_files_only=offline, config=config)
    except (OSError, ValueError, ImportError) as err:
        hint = ""
        if importlib.util.find_spec("sentencepiece") is None:
            hint = " (T5's sentencepiece tokenizer needs `pip install sentencepiece protobuf`, see requirements.txt)"
        raise CheckpointError(f"cannot load the tokenizer of {source}: {err}{hint}") from None

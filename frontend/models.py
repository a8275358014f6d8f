"""Which model a run uses and what it records: shared by the command line (generate.py) and the web app (app.py).

`load_model` resolves `--model` (a short name, a repo id, a folder, or "demo") and falls back to the bundled demo
model, saying so, when the default model can be neither downloaded nor found in the cache. `Settings` is what a
run resolved, recorded in every clip's sidecar (`flat_settings`). Nothing here imports torch at import time.
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from frontend.cli_inputs import CliError

if TYPE_CHECKING:
    from lm.sampling import SamplingParams

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "facebook/musicgen-small"
DEMO_FOLDER = ROOT / "checkpoints" / "demo"  # the small bundled model (`--model demo`, offline fallback)


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one run (recorded in every sidecar)."""

    model: str
    device: str
    dtype: str
    quantize: str
    cuda_graph: bool
    threads: str
    duration: float
    seed: int
    seed_was_random: bool
    sampling: "SamplingParams"
    normalize: str
    target_lufs: float
    peak_db: float
    prompt_audio: str | None
    melody: str | None = None
    denoise: float = 0.0  # the spectral gate's strength (audio/denoise.py); 0: off
    lora: str | None = None  # a LoRA adapter folder merged into the LM (inference/lora.py)
    lora_scale: float = 1.0


def flat_settings(settings: Settings) -> dict:
    """The settings as the sidecar records them: one level, the sampling fields beside the others."""
    record = asdict(settings)
    record.update(record.pop("sampling"))
    return record


def default_model_absent() -> bool:
    """Whether the default model can be neither found in the cache nor downloaded (asked before the settings
    are printed, so that they name the model that will run)."""
    from huggingface_hub import try_to_load_from_cache

    from checkpoint_io import hub_reachable

    cached = any(isinstance(try_to_load_from_cache(DEFAULT_MODEL, name), str)
                 for name in ("config.json", "state_dict.bin"))
    return not cached and not hub_reachable()


def load_model(model: str | None, device: str, dtype: str, quantize: str, cuda_graph: bool, lora: str | None = None,
               lora_scale: float = 1.0):
    """(MusicGen, the source it was loaded from). Without --model, the default model; when that can be neither
    downloaded nor found in the cache, the bundled demo model, said in one line."""
    import torch

    from checkpoint_io import ModelNotFoundError
    from inference import MusicGen
    from inference.loading import resolve_source

    def load(source: str):
        options = dict(dtype=getattr(torch, dtype), quantize=None if quantize == "none" else quantize, lora=lora,
                       lora_scale=lora_scale)
        return MusicGen.from_pretrained(source, device=device, cuda_graph=cuda_graph, **options), source

    source = model or DEFAULT_MODEL
    if source == "demo":
        if not (DEMO_FOLDER / "config.json").is_file():
            raise CliError(f"the bundled demo model is missing from {DEMO_FOLDER} (rebuild it with "
                           "`python -m training.demo`); or use --model small (downloads facebook/musicgen-small)")
        source = str(DEMO_FOLDER)
    source = resolve_source(source)  # `--model small` records facebook/musicgen-small, as the default does
    try:
        return load(source)
    except (ValueError, OSError, KeyError) as err:
        if model is None and isinstance(err, ModelNotFoundError):  # absent, not broken: say why otherwise
            if (DEMO_FOLDER / "config.json").is_file():
                print(f"offline: {DEFAULT_MODEL} cannot be downloaded and is not cached, so this run uses the "
                      f"bundled demo model ({DEMO_FOLDER}), a toy trained on synthetic music")
                return load(str(DEMO_FOLDER))
            raise CliError(f"cannot get the default model {DEFAULT_MODEL} (no network, not cached) and the bundled "
                           f"demo model is missing from {DEMO_FOLDER}. Download the weights once with `hf download "
                           f"{DEFAULT_MODEL}` on a machine with network access, or pass --model FOLDER") from None
        detail = str(err) if not isinstance(err, KeyError) else f"its config.json lacks the section {err}"
        raise CliError(f"cannot load the model {source}: {detail}") from None

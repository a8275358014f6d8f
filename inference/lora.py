"""LoRA adapters of the MusicGen LM: PEFT's adapter folder, named as transformers' modules, merged into the weights
as the LM loads.

LoRA (Hu et al. 2021, section 4.1) adapts a frozen linear weight W [D_out, D_in] by a low-rank product,
W' = W + scaling * B A with A [r, D_in], B [D_out, r] and scaling = lora_alpha / r (lora_alpha / sqrt(r) with
rsLoRA). Merged once at load, the adapted model costs nothing more per decoding step, and the merged float
weights then go through the same speed transforms (bfloat16, int8) as any checkpoint's (`inference.speed`).

The adapter folder is the one `peft` writes and reads (`train.py lm --lora-rank` writes it too):
    adapter_config.json          peft_type "LORA", r, lora_alpha, target_modules, use_rslora, ...
    adapter_model.safetensors    base_model.model.<module>.lora_A.weight [r, D_in], .lora_B.weight [D_out, r]
with <module> a name of transformers' `MusicgenForConditionalGeneration` (decoder.model.decoder.layers.0.fc1),
so that `peft.PeftModel.from_pretrained(MusicgenForConditionalGeneration.from_pretrained(BASE), FOLDER)` reads
it as well. An adapter whose names, shapes or rank do not fit the base is refused in one line naming the first
mismatch, before any weight of the base is read.
"""

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from checkpoint_io import CheckpointError, read_json
from lm.config import LMConfig
from lm.loading import LoadTransform, hf_key_table
from lm.model import MusicGenLM

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # PeftModel's prefix of the wrapped model's names
HF_LAYERS = "decoder.model.decoder.layers."  # transformers' names of the LM's layers (`hf_key_table`)
ADAPTER_KEY = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight")
UNSUPPORTED = {"use_dora": "DoRA", "fan_in_fan_out": "fan_in_fan_out", "rank_pattern": "rank_pattern",
               "alpha_pattern": "alpha_pattern", "modules_to_save": "modules_to_save", "lora_bias": "lora_bias"}


def lora_module_names(config: LMConfig) -> dict[str, str]:
    """{our module name: transformers' module name} of every linear layer of the LM an adapter may change
    (attention and FFN projections, heads, text and chroma projections), from the loader's renaming table."""
    with torch.device("meta"):
        lm = MusicGenLM(config)
    linears = {name for name, module in lm.named_modules() if isinstance(module, nn.Linear)}
    table = {}
    for theirs, ours in hf_key_table(config).items():
        module = ours.removesuffix(".weight")
        if ours.endswith(".weight") and module in linears:
            table[module] = theirs.removesuffix(".weight")
    return table


@dataclass(frozen=True)
class LowRank:
    """One adapted linear layer: A [r, D_in], B [D_out, r] and the factor of their product."""

    A: torch.Tensor
    B: torch.Tensor
    scaling: float

    def delta(self) -> torch.Tensor:
        """scaling * B A, [D_out, D_in] in float32."""
        return (self.B.float() @ self.A.float()) * self.scaling


@dataclass(frozen=True)
class LoraAdapter:
    """An adapter read and checked against a base LM: {our weight name: its low-rank change}."""

    folder: str
    rank: int
    layers: dict[str, LowRank]

    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for low in self.layers.values() for t in (low.A, low.B))


def read_adapter(folder: str | Path, config: LMConfig, base: str = "the base model", scale: float = 1.0
                 ) -> LoraAdapter:
    """Read a PEFT LoRA adapter folder and check it against the LM sizes `config` of `base`.

    Args:
        folder: the adapter folder (adapter_config.json, adapter_model.safetensors).
        config: the base LM's sizes (its layers, widths and codebooks decide the names and shapes that fit).
        base: names the base model in errors.
        scale: multiplies every change (1.0: as trained; 0: the base model).
    Raises:
        CheckpointError: one line naming the mismatch (not an adapter, not LoRA, an option not supported, a layer
            the base lacks, a shape or rank that differs, a value that is not finite).
    """
    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).is_file() or not (folder / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(f"{folder} is not a LoRA adapter folder (it needs {ADAPTER_CONFIG} and "
                              f"{ADAPTER_WEIGHTS})")
    if not math.isfinite(scale):
        raise CheckpointError(f"the LoRA scale must be a finite number, got {scale}")
    settings = read_json(folder / ADAPTER_CONFIG)
    rank, alpha = _check_settings(settings, folder)
    scaling = scale * alpha / (math.sqrt(rank) if settings.get("use_rslora") else rank)
    try:
        tensors = load_file(folder / ADAPTER_WEIGHTS)
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"cannot read {folder / ADAPTER_WEIGHTS}: {err}") from None
    ours = {theirs: name for name, theirs in lora_module_names(config).items()}
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in MusicGenLM(config).state_dict().items()}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = ADAPTER_KEY.fullmatch(key)
        if match is None:
            raise CheckpointError(f"adapter {folder}: tensor {key} is not a LoRA weight of a linear layer "
                                  "(lora_A / lora_B)")
        module = match["module"]
        if module not in ours:
            raise CheckpointError(f"adapter {folder} changes {module}, which {base} does not have "
                                  f"({config.num_layers} layers, {config.num_codebooks} codebooks"
                                  f"{', no cross-attention' if not config.cross_attention else ''})")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"adapter {folder}: {key} holds NaN or infinite values")
        parts.setdefault(module, {})[match["part"]] = tensor
    layers = {}
    for module, pair in parts.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"adapter {folder}: {module} has lora_{next(iter(pair))} but no "
                                  f"lora_{'B' if 'A' in pair else 'A'}")
        weight = f"{ours[module]}.weight"
        d_out, d_in = shapes[weight]
        A, B = pair["A"], pair["B"]
        if A.dim() != 2 or B.dim() != 2 or A.shape[1] != d_in or B.shape[0] != d_out or A.shape[0] != B.shape[1]:
            raise CheckpointError(f"adapter {folder}: {module} has lora_A {list(A.shape)} and lora_B "
                                  f"{list(B.shape)}, which do not fit its weight [{d_out}, {d_in}] in {base}")
        if A.shape[0] != rank:
            raise CheckpointError(f"adapter {folder}: {module} has rank {A.shape[0]}, its {ADAPTER_CONFIG} says "
                                  f"r = {rank}")
        layers[weight] = LowRank(A, B, scaling)
    if not layers:
        raise CheckpointError(f"adapter {folder} holds no LoRA weights")
    return LoraAdapter(str(folder), rank, layers)


def _check_settings(settings: dict, folder: Path) -> tuple[int, float]:
    """(r, lora_alpha) of an adapter_config.json, once it is known to describe a plain LoRA adapter."""
    if settings.get("peft_type") != "LORA":
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: peft_type {settings.get('peft_type')!r}; only LoRA "
                              "adapters (\"LORA\") can be merged")
    for field, what in UNSUPPORTED.items():
        if settings.get(field):
            raise CheckpointError(f"{folder / ADAPTER_CONFIG}: {what} ({field}) is not supported")
    rank, alpha = settings.get("r"), settings.get("lora_alpha")
    if not isinstance(rank, int) or rank < 1 or not isinstance(alpha, int | float) or not math.isfinite(alpha):
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: r must be a positive integer and lora_alpha a number, "
                              f"got r={rank!r}, lora_alpha={alpha!r}")
    return rank, float(alpha)


class MergeAtLoad:
    """The loader's transform of the empty LM with an adapter merged in: each adapted weight becomes W + scaling
    * B A in float32 as it is read, then goes on as any float weight (cast, quantized: `inner`).

    Args:
        folder: the adapter folder.
        scale: multiplies the adapter's change.
        inner: the speed transform (None: float32, nothing to transform).
        base: names the base model in errors.
    """

    def __init__(self, folder: str | Path, scale: float, inner: LoadTransform | None, base: str):
        self.folder, self.scale, self.inner, self.base = folder, scale, inner, base
        self.adapter: LoraAdapter | None = None
        self.owners: dict[nn.Module, str] = {}

    def transform(self) -> LoadTransform:
        return LoadTransform(self.apply, self.convert)

    def apply(self, lm: MusicGenLM) -> MusicGenLM:
        self.adapter = read_adapter(self.folder, lm.config, self.base, self.scale)  # checked before any weight
        lm = self.inner.apply(lm) if self.inner is not None else lm
        self.owners = {module: name for name, module in lm.named_modules()}
        return lm

    def convert(self, module: nn.Module, name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        low = self.adapter.layers.get(f"{self.owners[module]}.{name}".lstrip("."))
        if low is not None and tensor.device.type != "meta":  # (the loader first converts meta specs: no values)
            tensor = tensor.float() + low.delta().to(tensor.device)  # W + scaling * B A
        if self.inner is not None:
            return self.inner.convert(module, name, tensor)
        return {name: tensor.to(torch.float32, copy=True)}

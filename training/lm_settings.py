"""Settings of a language-model training run (`train.py lm`): one frozen dataclass and its command line.

They resolve as every run's do (training/run_settings.py): the defaults below < the settings saved in the
checkpoint named by `--resume` < the flags given on the command line.

Defaults follow audiocraft's MusicGen solver (`config/solver/musicgen/default.yaml`) where it has one: AdamW,
lr 1e-4, betas (0.9, 0.95), weight decay 0.1 (on every parameter), eps 1e-8, gradient norm clipped to 1.0;
a linear warmup then a cosine decay to 0 (`musicgen_base_32khz.yaml`: cosine, lr_min_ratio 0); condition
dropout 0.3 and word dropout 0.3 (`text2music.yaml`). Sizes and segments are
smaller than the published ones (dim 1024+, 30 s segments, batch 128+) so that a first run fits anywhere;
the default LM is audiocraft's "base" scale (dim 512, 8 layers, 8 heads).
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

from training.run_settings import RunSettings, add_run_arguments, argument_adder, parse_floats, resolve_fields

TEXT_CONDITIONERS = ("lut", "t5")
# Every number's range: the model's as the checkpoint loader (lm/config.py) checks a config's, the rest's where
# training can run at all (AdamW needs betas below 1).
RANGES = {"dim": (1, 65_536), "layers": (1, 1024), "heads": (1, 1024), "ffn_dim": (1, 2**20), "lut_bins": (1, 2**24),
          "segment_seconds": (1e-3, 3600), "sample_seconds": (1e-3, 3600), "lr": (0, 10), "betas": (0, 0.999999),
          "weight_decay": (0, 1e3), "grad_clip": (0, 1e6)}
ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
LORA_TARGET_GROUPS = {  # --lora-targets words -> our layer-local module names (see training/lora.py)
    "self_attn": tuple(f"self_attn.{p}" for p in ATTENTION),
    "cross_attn": tuple(f"cross_attn.{p}" for p in ATTENTION),
    "ffn": ("linear1", "linear2"),
}
MODEL_FLAGS = ("dim", "layers", "heads", "ffn_dim", "text", "lut_bins", "t5")  # defined by --init when given
LORA_FLAGS = ("lora_rank", "lora_alpha", "lora_targets")  # what a LoRA run's adapter is (fixed on --resume)


@dataclass(frozen=True)
class LMTrainSettings(RunSettings):
    """Everything that defines an LM training run; saved inside every checkpoint it writes."""

    # data
    data: str | None = None  # folder of captioned audio (sidecar .txt / .json per file), searched recursively
    manifest: str | None = None  # or a JSONL manifest: {"path": ..., "caption": ...} per line
    valid_data: str | None = None  # a validation folder or .jsonl manifest; default: hold out part of the data
    valid_fraction: float = 0.1
    valid_examples: int = 32  # fixed validation windows
    cache: str | None = None  # token cache folder; default OUT/tokens
    codec: str | None = None  # codec: repo id, folder, checkpoint file, or a `train.py codec` run / checkpoint
    segment_seconds: float = 10.0
    batch_size: int = 16
    num_workers: int = 2
    # model: a new LM, or one fine-tuned from a published / exported MusicGen
    init: str | None = None
    dim: int = 512
    layers: int = 8
    heads: int = 8
    ffn_dim: int | None = None  # default 4 * dim
    text: str = "lut"
    lut_bins: int = 4096
    t5: str = "t5-base"
    # LoRA fine-tuning of --init's LM (training/lora.py): rank 0 fine-tunes every weight instead
    lora_rank: int = 0
    lora_alpha: float | None = None  # default: the rank (scaling alpha / r = 1)
    lora_dropout: float = 0.0
    lora_targets: str = "self_attn,cross_attn"
    # objective
    cfg_dropout: float = 0.3
    word_dropout: float = 0.3
    sentence_dropout: float = 0.0  # captions that read as several sentences: see training/lm_module.py
    # optimisation
    max_steps: int = 10_000
    lr: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_steps: int = 500
    grad_clip: float = 1.0
    # run
    out: str = "runs/lm"
    sample_every: int = 1000  # 0: never
    sample_seconds: float | None = None  # default: segment_seconds
    num_samples: int = 2
    early_stop: int = 0  # stop after this many validations without a lower loss (0: never)

    @property
    def lora_targets_parsed(self) -> tuple[str, ...]:
        return parse_lora_targets(self.lora_targets)

    @property
    def cache_folder(self) -> Path:
        return Path(self.cache) if self.cache else Path(self.out) / "tokens"

    @property
    def sample_duration(self) -> float:
        return self.sample_seconds if self.sample_seconds is not None else self.segment_seconds

    def check(self) -> None:
        """Raise ValueError on settings that cannot train."""
        if bool(self.data) == bool(self.manifest):
            raise ValueError("give one of --data (a folder of captioned audio) or --manifest (a JSONL file)")
        for source in (self.data, self.manifest, self.valid_data):
            if source and not Path(source).exists():
                raise ValueError(f"not found: {source}")
        if not self.codec and not self.init:
            raise ValueError("--codec is required (the codec whose tokens the LM models), unless --init gives one")
        if self.text not in TEXT_CONDITIONERS:
            raise ValueError(f"--text must be one of {TEXT_CONDITIONERS}, got {self.text!r}")
        self.check_ranges(RANGES)
        if self.dim % self.heads != 0:
            raise ValueError(f"--dim {self.dim} is not divisible by --heads {self.heads}")
        for name in ("cfg_dropout", "word_dropout", "sentence_dropout", "valid_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1]")
        if self.segment_seconds <= 0:
            raise ValueError("--segment-seconds must be > 0")
        if not 0 < self.sample_duration <= self.segment_seconds:
            raise ValueError("--sample-seconds must be in (0, --segment-seconds]: samples are generated in one window")
        if self.lora_rank and not self.init:
            raise ValueError("--lora-rank needs --init: the model whose LM the adapter changes")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise ValueError("--lora-alpha must be > 0")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError("--lora-dropout must be in [0, 1)")
        self.lora_targets_parsed  # noqa: B018 (raises on an unknown target)
        self.check_betas()
        self.check_at_least(1, ("batch_size", "max_steps", "valid_examples", "dim", "layers", "heads", "lut_bins",
                                "num_samples"))
        self.check_at_least(0, ("warmup_steps", "sample_every", "num_workers", "lora_rank", "early_stop"))
        self.check_run()


def add_lm_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train.py lm` flags (parsed defaults absent, so that flags given can be told from defaults)."""
    add = argument_adder(LMTrainSettings())
    data = parser.add_argument_group("data")
    add(data, "--data", "folder of audio (wav, flac, ogg; recursive) with a caption per file: a sidecar .txt, "
        'or .json with "caption" or "description"', metavar="DIR")
    add(data, "--manifest", 'instead of --data: a JSONL file, one {"path": ..., "caption": ...} per line '
        "(paths relative to the manifest, inside its folder, or absolute)", metavar="FILE")
    add(data, "--valid-data", "validation folder or .jsonl manifest (default: hold out --valid-fraction)",
        metavar="DIR|FILE")
    add(data, "--valid-fraction", "share of the files held out for validation without --valid-data", type=float)
    add(data, "--valid-examples", "number of fixed validation windows", type=int)
    add(data, "--cache", "token cache folder, reused across runs (default: OUT/tokens)", metavar="DIR")
    add(data, "--codec", "the codec: Hub repo id, folder, checkpoint file, or a `train.py codec` output folder or "
        "checkpoint; with --init, omit it (the model's codec is used)", metavar="SOURCE")
    add(data, "--segment-seconds", "length of each training window (published: 30)", type=float)
    add(data, "--batch-size", "windows per batch and per device", type=int)
    add(data, "--num-workers", "data loader processes per device", type=int)
    model = parser.add_argument_group("model (a new LM, or --init to fine-tune one)")
    add(model, "--init", "fine-tune this MusicGen (facebook/musicgen-small, a folder, an OUT/export): its LM, "
        "codec and text encoder are used", metavar="SOURCE")
    add(model, "--dim", "LM width D", type=int)
    add(model, "--layers", "transformer layers", type=int)
    add(model, "--heads", "attention heads", type=int)
    add(model, "--ffn-dim", "feed-forward width (default: 4 * dim)", type=int)
    add(model, "--text", "text conditioner: lut (learned word table, no download) or t5 (frozen T5 encoder)",
        choices=TEXT_CONDITIONERS)
    add(model, "--lut-bins", "rows of the word table (words are hashed into them)", type=int)
    add(model, "--t5", "T5 model with --text t5 (Hub name or folder)", metavar="NAME")
    lora = parser.add_argument_group("LoRA fine-tuning (with --init): small adapters, the model stays frozen")
    add(lora, "--lora-rank", "train a LoRA adapter of this rank r on --init's LM instead of every weight; written to "
        "OUT/adapter (PEFT's format; generate.py --lora OUT/adapter). 0: full fine-tuning", type=int, metavar="R")
    add(lora, "--lora-alpha", "LoRA alpha: the change B A is scaled by alpha / r (default: r)", type=float)
    add(lora, "--lora-dropout", "dropout on the adapter's input", type=float)
    add(lora, "--lora-targets", "the layers adapted: comma-separated self_attn, cross_attn, ffn, or single "
        "projections (self_attn.q_proj, cross_attn.v_proj, linear1, ...)", metavar="LIST")
    objective = parser.add_argument_group("objective")
    add(objective, "--cfg-dropout", "probability of dropping the descriptions of a whole batch (classifier-free "
        "guidance)", type=float)
    add(objective, "--word-dropout", "probability of dropping each word of a description", type=float)
    add(objective, "--sentence-dropout", "probability of dropping each sentence of a description but the first "
        "(short prompts like the first sentence alone become familiar to the LM)", type=float)
    optim = parser.add_argument_group("optimisation")
    add(optim, "--max-steps", "training steps", type=int)
    add(optim, "--lr", "AdamW peak learning rate", type=float)
    add(optim, "--betas", "AdamW betas", type=parse_floats)
    add(optim, "--weight-decay", "AdamW weight decay", type=float)
    add(optim, "--warmup-steps", "linear warmup steps, then a cosine decay to 0 at --max-steps", type=int)
    add(optim, "--grad-clip", "clip the gradient norm to this (0: no clipping)", type=float)
    run = parser.add_argument_group("run")
    add(run, "--out", "output folder: checkpoints/, tensorboard/, tokens/, export/, loss_curve.png", metavar="DIR")
    add(run, "--sample-every", "generate audio from validation captions every N steps, to TensorBoard (0: never)",
        type=int)
    add(run, "--sample-seconds", "length of those samples (default: --segment-seconds)", type=float)
    add(run, "--num-samples", "how many samples each time", type=int)
    add(run, "--early-stop", "stop after N validations without a lower validation loss, and export the weights "
        "of the lowest (0: never stop early; export the last step's)", type=int,
        metavar="N")
    add_run_arguments(run, add)


def parse_lora_targets(text: str) -> tuple[str, ...]:
    """`--lora-targets`: comma-separated groups (self_attn, cross_attn, ffn) or single projections
    (self_attn.q_proj, cross_attn.v_proj, linear1, ...) -> our layer-local module names, in a fixed order.

    Raises:
        ValueError: naming an unknown target.
    """
    known = [name for group in LORA_TARGET_GROUPS.values() for name in group]
    chosen = set()
    for word in filter(None, (w.strip() for w in text.split(","))):
        if word not in LORA_TARGET_GROUPS and word not in known:
            raise ValueError(f"--lora-targets: unknown target {word!r}; choose among "
                             f"{', '.join(LORA_TARGET_GROUPS)} or single projections ({', '.join(known)})")
        chosen |= set(LORA_TARGET_GROUPS.get(word, (word,)))
    if not chosen:
        raise ValueError("--lora-targets names no layer")
    return tuple(name for name in known if name in chosen)


def resolve_lm_settings(given: dict, saved: dict | None = None) -> LMTrainSettings:
    """Defaults < `saved` (a checkpoint's settings) < `given` (flags from the command line).

    Raises:
        ValueError: when --init is combined with flags that shape a new model.
    """
    settings = resolve_fields(LMTrainSettings(), given, saved)
    if settings.init and (conflict := [f"--{k.replace('_', '-')}" for k in MODEL_FLAGS if k in given]):
        raise ValueError(f"--init takes the model from {settings.init}; drop {', '.join(conflict)}")
    if saved is not None:  # what the checkpoint's weights were made for cannot change on the way
        defaults = LMTrainSettings()
        for name in ("init", *MODEL_FLAGS, *LORA_FLAGS):
            was, now = saved.get(name, getattr(defaults, name)), getattr(settings, name)
            if name in given and now != was:
                raise ValueError(f"--{name.replace('_', '-')} {now}: the run being resumed was trained with "
                                 f"{name} {was}, which shapes its weights; resume without the flag, or start a new "
                                 "run in another --out")
    return settings

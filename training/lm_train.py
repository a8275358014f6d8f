"""`python train.py lm`: train (or fine-tune) the MusicGen language model on captioned audio with Lightning.

Output folder layout (besides settings.json, checkpoints/ and tensorboard/, see training/run.py; TensorBoard
holds the losses, per-codebook losses and accuracies, the lr and generated audio examples):
    OUT/tokens/                    the token cache (unless --cache puts it elsewhere): reused by later runs
    OUT/export/                    the final model: MusicGen.from_pretrained(OUT/export), generate.py --model
    OUT/adapter/                   instead, with --lora-rank: the LoRA adapter (PEFT's folder; training/lora.py):
                                   MusicGen.from_pretrained(INIT, lora=OUT/adapter), generate.py --lora
    OUT/loss_curve.png             training and validation losses, validation accuracies, against the step
    OUT/summary.json               losses first and last, steps, files used, skipped and encoded
"""

import json
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping

from encodec import EncodecConfig, EncodecModel, load_encodec
from encodec.inference import prepare_codec_for_inference
from inference import MusicGen
from inference.export import save_musicgen
from inference.loading import load_tokenizer, t5_from_pretrained
from inference.lora import ADAPTER_WEIGHTS
from lm.conditioning import LookupTableConditioner, T5Conditioner
from lm.config import LMConfig
from lm.model import MusicGenLM
from training import run as runs
from training.checkpoints import read_checkpoint
from training.lm_data import LMDataModule
from training.lm_module import LMTrainingModule, init_lm_weights
from training.lm_settings import LMTrainSettings, resolve_lm_settings
from training.lm_tokens import CacheStats, codec_fingerprint
from training.lora import adapter_summary, add_lora, save_adapter
from training.plots import plot_lm_curves
from training.run import Run


def load_codec(source: str) -> EncodecModel:
    """The codec `--codec` names: anything `load_encodec` reads (repo id, folder, file), the output folder of a
    `train.py codec` run (its export/), or one of that run's checkpoints (`.ckpt`)."""
    path = Path(source)
    if path.is_dir() and (path / "export" / "config.json").is_file():
        path = path / "export"
    if path.is_file() and path.suffix == ".ckpt":
        checkpoint = read_checkpoint(path)
        if "codec_config" not in checkpoint:
            raise ValueError(f"{path} is not a `train.py codec` checkpoint (no codec_config)")
        codec = EncodecModel(EncodecConfig(**checkpoint["codec_config"]))
        codec.load_state_dict({k[len("codec."):]: v for k, v in checkpoint["state_dict"].items()
                               if k.startswith("codec.")})
        return prepare_codec_for_inference(codec)  # encoding only: weight norm folded, the fast convolutions
    return load_encodec(path if path.exists() else source)


def build_model(settings: LMTrainSettings) -> tuple[MusicGenLM, torch.nn.Module, EncodecModel]:
    """(LM, text conditioner, codec): loaded from `--init`, or a new LM sized by the settings for `--codec`."""
    if settings.init:
        mg = MusicGen.from_pretrained(settings.init, device="cpu", dtype=torch.float32)
        if mg.lm.config.num_chroma is not None:
            raise ValueError(f"{settings.init} is a melody model: fine-tuning it (fully or with LoRA) is not "
                             "supported, the captioned training data has no melodies to condition it on")
        if settings.codec and codec_fingerprint(load_codec(settings.codec)) != codec_fingerprint(mg.codec):
            raise ValueError(f"--codec {settings.codec} is not the codec of --init {settings.init}: omit --codec")
        if settings.lora_rank:  # only the adapter trains: the text encoder (a word table too) stays as it is
            mg.text.requires_grad_(False)
            add_lora(mg.lm, settings.lora_rank, settings.lora_alpha or settings.lora_rank, settings.lora_dropout,
                     settings.lora_targets_parsed)
        return mg.lm, mg.text, mg.codec
    codec = load_codec(settings.codec)
    if settings.text == "lut":  # words -> vectors of the LM's width: no projection needed
        text = LookupTableConditioner(settings.lut_bins, settings.dim)
    else:
        text = T5Conditioner(t5_from_pretrained(settings.t5), load_tokenizer(settings.t5))
    K = codec.num_codebooks
    config = LMConfig(dim=settings.dim, num_layers=settings.layers, num_heads=settings.heads,
                      ffn_dim=settings.ffn_dim or 4 * settings.dim, num_codebooks=K, card=codec.cardinality,
                      delays=tuple(range(K)), cond_dim=None if settings.text == "lut" else text.dim)
    lm = MusicGenLM(config)
    init_lm_weights(lm)
    return lm, text, codec


def prepare_run(settings: LMTrainSettings) -> Run:
    """The LM's training module and its data, built and checked (raises ValueError or OSError on what cannot
    train)."""
    settings.check()
    L.seed_everything(settings.seed, workers=True, verbose=False)
    lm, text, codec = build_model(settings)
    data = LMDataModule(settings, codec)
    module = LMTrainingModule(settings, lm, text, codec, data.sample_captions(settings.num_samples))
    trained = sum(p.numel() for p in module.parameters() if p.requires_grad)
    description = (f"LM config: {lm.config}\nLM parameters: {sum(p.numel() for p in lm.parameters()) / 1e6:.2f}M, "
                   f"trained: {trained / 1e6:.3f}M; "
                   f"files: {len(data.train_files)} train, {len(data.valid_files)} valid, {len(data.skipped)} "
                   f"skipped, {data.uncaptioned} without a caption")
    return Run(module, data, description)


class BestWeights(Callback):
    """With --early-stop: a copy of the trained weights (every weight, or the adapter) at the lowest validation loss,
    put back when training ends, so that the export is the best validated model rather than the last. The copy
    travels in the checkpoints (Lightning keeps a callback's `state_dict`), so a resumed run keeps it."""

    def __init__(self) -> None:
        self.step, self.loss, self.weights = -1, float("inf"), {}

    def on_validation_end(self, trainer: L.Trainer, module: LMTrainingModule) -> None:
        valid = module.history["valid"]
        if trainer.sanity_checking or not valid or not valid[-1]["loss"] < self.loss:
            return
        self.step, self.loss = valid[-1]["step"], valid[-1]["loss"]
        self.weights = {name: p.detach().to("cpu", copy=True) for name, p in module.named_parameters()
                        if p.requires_grad}

    def restore(self, module: LMTrainingModule) -> bool:
        """Put the best weights back into `module`; False when there are none (no validation ran)."""
        if not self.weights:
            return False
        parameters = dict(module.named_parameters())
        with torch.no_grad():
            for name, weight in self.weights.items():
                parameters[name].copy_(weight)
        return True

    def state_dict(self) -> dict:
        return {"step": self.step, "loss": self.loss, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.loss, self.weights = state["step"], state["loss"], state["weights"]


def build_trainer(settings: LMTrainSettings, callbacks: Sequence[Callback] = ()) -> L.Trainer:
    if settings.early_stop:  # validations without a lower loss; a stopped run ends as a finished one
        callbacks = [*callbacks, EarlyStopping("valid/loss", patience=settings.early_stop,
                                               check_on_train_epoch_end=False), BestWeights()]
    return runs.build_trainer(settings, "step{step:07.0f}", callbacks, gradient_clip_val=settings.grad_clip or None)


def train_lm(settings: LMTrainSettings, run: Run | None = None, callbacks: Sequence[Callback] = ()) -> dict:
    """Train (or resume training) the LM as `settings` say.

    Args:
        settings: the resolved settings (`settings.resume` names the checkpoint to continue from).
        run: the parts, when already built by `prepare_run`.
        callbacks: extra Lightning callbacks (the tests use one to watch the run).
    Returns:
        the run summary written to OUT/summary.json.
    """
    run = run or prepare_run(settings)
    module, data, out = run.module, run.data, Path(settings.out)
    trainer = build_trainer(settings, callbacks)
    runs.fit(settings, trainer, run)
    summary = make_summary(module, data, trainer.global_step)
    best = next((c for c in trainer.callbacks if isinstance(c, BestWeights)), None)
    if best is not None and best.restore(module):  # --early-stop: export the lowest validation loss's weights
        summary["best"] = {"step": best.step, "loss": best.loss}
    if trainer.is_global_zero:
        if settings.lora_rank:
            save_adapter(module.lm, out / "adapter", settings.init)
            summary["adapter"] = {**adapter_summary(module.lm),
                                  "file_bytes": (out / "adapter" / ADAPTER_WEIGHTS).stat().st_size}
        else:
            save_musicgen(module.musicgen(), out / "export")
        plot_lm_curves(module.history, out / "loss_curve.png", title=f"LM training: {out.name}")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def make_summary(module: LMTrainingModule, data: LMDataModule, steps: int) -> dict:
    train, valid = module.history["train"], module.history["valid"]

    def first_last(entries: list[dict]) -> dict:
        return {"first": entries[0]["loss"], "first_step": entries[0]["step"], "last": entries[-1]["loss"],
                "last_step": entries[-1]["step"]} if entries else {}

    stats = data.cache_stats or CacheStats()  # (processes that did not encode report nothing)
    return {
        "steps": steps, "train_loss": first_last(train), "valid_loss": first_last(valid), "valid": valid,
        "files": {"train": len(data.train_files), "valid": len(data.valid_files), "uncaptioned": data.uncaptioned,
                  "skipped": data.skipped, "too_short": data.too_short},
        "tokens": {"cache": str(data.cache.folder), "encoded": stats.encoded, "reused": stats.reused,
                   "failed": stats.failed},
    }


def summary_lines(settings: LMTrainSettings, summary: dict) -> list[str]:
    """What `train.py lm` prints at the end: losses first and last, tokens encoded and reused, files left out."""
    lines = []
    train, valid = summary["train_loss"], summary["valid_loss"]
    if valid:
        lines.append(f"validation loss: {valid['first']:.3f} at step {valid['first_step']} -> {valid['last']:.3f} at "
                     f"step {valid['last_step']}")
    if train:
        lines.append(f"training loss: {train['first']:.3f} at step {train['first_step']} -> {train['last']:.3f} at "
                     f"step {train['last_step']}")
    tokens = summary["tokens"]
    lines.append(f"tokens: {tokens['encoded']} files encoded, {tokens['reused']} reused from {tokens['cache']}; "
                 f"skipped {len(summary['files']['skipped'])} files, {len(summary['files']['too_short'])} too short")
    if "best" in summary:
        lines.append(f"exported: the weights of step {summary['best']['step']}, the lowest validation loss "
                     f"({summary['best']['loss']:.3f}); the last step's are in checkpoints/last.ckpt")
    if "adapter" in summary:
        adapter = summary["adapter"]
        lines.append(f"adapter: {Path(settings.out) / 'adapter'} ({adapter['file_bytes'] / 1e6:.2f} MB, "
                     f"{100 * adapter['share']:.2f}% of the LM's parameters); use it with generate.py --model "
                     f"{settings.init} --lora {Path(settings.out) / 'adapter'}")
    else:
        lines.append(f"export: {Path(settings.out) / 'export'}")
    return lines


def main(given: dict) -> None:
    """The `train.py lm` command (see `training.run.main`).

    Args:
        given: the flags present on the command line (see `training.lm_settings.add_lm_arguments`).
    """
    runs.main("train.py lm", given, LMTrainSettings.out, resolve_lm_settings, prepare_run, train_lm, summary_lines)

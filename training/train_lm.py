"""`python train.py lm`: train (or fine-tune) the MusicGen language model on captioned audio with Lightning.

Output folder layout:
    OUT/settings.json              the resolved settings (also inside every checkpoint)
    OUT/tokens/                    the token cache (unless --cache puts it elsewhere): reused by later runs
    OUT/checkpoints/last.ckpt      the latest state (written every --save-every steps and at the end)
    OUT/checkpoints/stepNNNNNNN.ckpt   periodic checkpoints, the newest --keep-checkpoints kept
    OUT/tensorboard/               losses, per-codebook losses and accuracies, lr, generated audio examples
    OUT/export/                    the final model: MusicGen.from_pretrained(OUT/export), generate.py --model
    OUT/loss_curve.png             training and validation losses, validation accuracies, against the step
    OUT/summary.json               losses first and last, steps, files used, skipped and encoded
"""

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from encodec import EncodecConfig, EncodecModel, load_encodec
from inference import MusicGen
from inference.export import save_musicgen
from inference.loading import load_tokenizer, t5_from_pretrained
from lm.conditioning import LookupTableConditioner, T5Conditioner
from lm.config import LMConfig
from lm.model import MusicGenLM
from training.checkpoints import LAST, AtomicCheckpointIO, read_checkpoint, resume_path, settings_for_run
from training.lm import LMTrainingModule, init_lm_weights
from training.lm_data import LMDataModule
from training.lm_settings import LMTrainSettings, resolve_lm_settings
from training.lm_tokens import CacheStats, codec_fingerprint
from training.plots import plot_lm_curves
from training.train_codec import SaveLastAtEnd, SeedPerProcess, report


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
        return codec.fold_weight_norm().eval()
    return load_encodec(path if path.exists() else source)


def build_model(settings: LMTrainSettings) -> tuple[MusicGenLM, torch.nn.Module, EncodecModel]:
    """(LM, text conditioner, codec): loaded from `--init`, or a new LM sized by the settings for `--codec`."""
    if settings.init:
        mg = MusicGen.from_pretrained(settings.init, device="cpu", dtype=torch.float32)
        if mg.lm.config.num_chroma is not None:
            raise ValueError(f"{settings.init} is a melody model: fine-tuning with chroma is not supported yet")
        if settings.codec and codec_fingerprint(load_codec(settings.codec)) != codec_fingerprint(mg.codec):
            raise ValueError(f"--codec {settings.codec} is not the codec of --init {settings.init}: omit --codec")
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


@dataclass
class Run:
    """The parts of a run, built before training starts (so that setting errors surface first)."""

    module: LMTrainingModule
    data: LMDataModule


def prepare_run(settings: LMTrainSettings) -> Run:
    settings.check()
    L.seed_everything(settings.seed, workers=True, verbose=False)
    lm, text, codec = build_model(settings)
    data = LMDataModule(settings, codec)
    return Run(LMTrainingModule(settings, lm, text, codec, data.sample_captions(settings.num_samples)), data)


def build_trainer(settings: LMTrainSettings, callbacks: Sequence[Callback] = ()) -> L.Trainer:
    out = Path(settings.out)
    periodic = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="step{step:07.0f}", auto_insert_metric_name=False, monitor="step",
        mode="max", save_top_k=settings.keep_checkpoints, save_last=True, every_n_train_steps=settings.save_every,
        enable_version_counter=False,  # last.ckpt is always overwritten (by SaveLastAtEnd too), never last-v1.ckpt
    )
    devices = int(settings.devices) if settings.devices.lstrip("-").isdigit() else settings.devices
    return L.Trainer(
        accelerator=settings.accelerator, devices=devices, num_nodes=settings.num_nodes, strategy=settings.strategy,
        precision=settings.precision, max_steps=settings.max_steps, val_check_interval=settings.valid_every,
        check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=settings.log_every,
        gradient_clip_val=settings.grad_clip or None, gradient_clip_algorithm="norm",
        logger=TensorBoardLogger(out, name="tensorboard", version=""),
        callbacks=[*callbacks, SeedPerProcess(settings.seed), SaveLastAtEnd(out / "checkpoints" / LAST), periodic],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=settings.progress_bar, enable_model_summary=False, default_root_dir=out,
    )


def train_lm(settings: LMTrainSettings, callbacks: Sequence[Callback] = (), run: Run | None = None) -> dict:
    """Train (or resume training) the LM as `settings` say.

    Args:
        settings: the resolved settings (`settings.resume` names the checkpoint to continue from).
        callbacks: extra Lightning callbacks (the tests use one to watch the run).
        run: the parts, when already built by `prepare_run`.
    Returns:
        the run summary written to OUT/summary.json.
    """
    run = run or prepare_run(settings)
    module, data = run.module, run.data
    out = Path(settings.out)
    trainer = build_trainer(settings, callbacks)
    ckpt_path = resume_path(settings.resume, out) if settings.resume else None
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        (out / "settings.json").write_text(json.dumps(settings.to_dict(), indent=2))
    with warnings.catch_warnings():
        # An endless random-window dataset has nothing to resume mid-epoch; Lightning's warning says so.
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch.*")
        if ckpt_path is None:
            trainer.validate(module, datamodule=data, verbose=False)  # the "before" loss, at step 0
        else:  # a resumed run writes into its own checkpoint folder, as it should
            warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    trainer.validate(module, datamodule=data, verbose=False)  # the "after" loss, at the final step
    summary = make_summary(module, data, trainer.global_step)
    if trainer.is_global_zero:
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


def main(given: dict) -> None:
    """The `train.py lm` command: resolve the settings, print them, train, print the summary.

    Args:
        given: the flags present on the command line (see `training.lm_settings.add_lm_arguments`).
    """
    try:
        settings = settings_for_run(given, LMTrainSettings.out, resolve_lm_settings)
        settings.check()
        report(f"train.py lm, resolved settings:\n{json.dumps(settings.to_dict(), indent=2)}")
        run = prepare_run(settings)
    except (ValueError, OSError) as err:
        raise SystemExit(f"train.py lm: error: {err}") from None
    lm = run.module.lm
    report(f"LM config: {lm.config}\nLM parameters: {sum(p.numel() for p in lm.parameters()) / 1e6:.2f}M; "
           f"files: {len(run.data.train_files)} train, {len(run.data.valid_files)} valid, "
           f"{len(run.data.skipped)} skipped, {run.data.uncaptioned} without a caption")
    summary = train_lm(settings, run=run)
    train, valid = summary["train_loss"], summary["valid_loss"]
    if valid:
        report(f"validation loss: {valid['first']:.3f} at step {valid['first_step']} -> {valid['last']:.3f} at "
               f"step {valid['last_step']}")
    if train:
        report(f"training loss: {train['first']:.3f} at step {train['first_step']} -> {train['last']:.3f} at "
               f"step {train['last_step']}")
    tokens = summary["tokens"]
    report(f"tokens: {tokens['encoded']} files encoded, {tokens['reused']} reused from {tokens['cache']}; "
           f"skipped {len(summary['files']['skipped'])} files, {len(summary['files']['too_short'])} too short; "
           f"export: {Path(settings.out) / 'export'}")

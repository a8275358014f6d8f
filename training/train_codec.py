"""`python train.py codec`: train an EnCodec model on a folder of audio with Lightning.

Output folder layout:
    OUT/settings.json              the resolved settings (also inside every checkpoint)
    OUT/checkpoints/last.ckpt      the latest state (written every --save-every steps and at the end)
    OUT/checkpoints/stepNNNNNNN.ckpt   periodic checkpoints, the newest --keep-checkpoints kept
    OUT/tensorboard/               losses, validation metrics, audio examples, spectrograms
    OUT/export/                    the final codec (config.json + model.safetensors): load_encodec(OUT/export)
    OUT/loss_curve.png             training losses and validation metrics against the step
    OUT/summary.json               validation metrics before and after, steps, skipped files
"""

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from encodec import save_encodec
from training.checkpoints import LAST, AtomicCheckpointIO, resume_path, settings_for_run
from training.codec import OPTIMIZER_STEPS_PER_BATCH, CodecTrainingModule
from training.data import AudioSegmentDataset, scan_audio_files, split_files
from training.plots import plot_training_curves
from training.settings import CodecTrainSettings, resolve_settings

BATCHES_PER_EPOCH = 1000  # the training set is endless random segments; an "epoch" is just a count


class SaveLastAtEnd(Callback):
    """Write OUT/checkpoints/last.ckpt when training ends, so `--resume` continues from the final step.

    (ModelCheckpoint writes last.ckpt only along with its periodic checkpoints.)
    """

    def __init__(self, path: Path):
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: optimizers, loops, callbacks


class SeedPerProcess(Callback):
    """Reseed torch's RNG when training starts, differently in every process and at every resume point.

    The training set draws its segments from torch's RNG, which `seed_everything` seeds identically in every
    process: without this, all DDP processes would read the same segments (with `num_workers=0`; Lightning
    seeds loader workers per rank itself), and a resumed run would replay the segments of the run's start.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed + 1_000_003 * trainer.global_rank + trainer.global_step)


def build_loaders(settings: CodecTrainSettings) -> tuple[DataLoader, DataLoader, list[str]]:
    """Training and validation loaders, and the paths of the skipped (unreadable) files."""
    config = settings.codec_config()
    scan = scan_audio_files(settings.data)
    if settings.valid_data:
        valid_scan = scan_audio_files(settings.valid_data)
        train_files, valid_files = scan.readable, valid_scan.readable
        skipped = sorted(set(scan.skipped + valid_scan.skipped))  # the two folders may be the same one
    else:
        train_files, valid_files = split_files(scan.readable, settings.valid_fraction, settings.seed)
        skipped = scan.skipped
    if not train_files or not valid_files:
        raise ValueError(f"no readable audio files under {settings.data} (skipped {len(skipped)})")
    segment = dict(sample_rate=config.sample_rate, channels=config.channels, segment_seconds=settings.segment_seconds)
    train = AudioSegmentDataset(train_files, num_examples=settings.batch_size * BATCHES_PER_EPOCH, **segment)
    valid = AudioSegmentDataset(valid_files, num_examples=settings.valid_examples, random_offsets=False, **segment)
    workers = dict(num_workers=settings.num_workers, persistent_workers=settings.num_workers > 0)
    return (DataLoader(train, batch_size=settings.batch_size, drop_last=True, **workers),
            DataLoader(valid, batch_size=settings.batch_size, **workers), skipped)


def resolve_strategy(settings: CodecTrainSettings) -> str:
    """Lightning's strategy name for the run.

    The discriminator's backward reaches no codec parameter and the codec's reaches no discriminator
    parameter, so DDP must look for unused parameters in each backward: "ddp" (and "auto" on several
    devices, which Lightning would turn into "ddp") becomes "ddp_find_unused_parameters_true".
    """
    several = settings.devices not in ("1", "0") or settings.num_nodes > 1
    if settings.strategy == "ddp" or (settings.strategy == "auto" and several):
        return "ddp_find_unused_parameters_true"
    return settings.strategy


def build_trainer(settings: CodecTrainSettings, callbacks: Sequence[Callback] = ()) -> L.Trainer:
    out = Path(settings.out)
    steps = OPTIMIZER_STEPS_PER_BATCH  # Lightning's global_step counts both optimizers' steps
    periodic = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="step{codec_step:07.0f}", auto_insert_metric_name=False,
        monitor="step", mode="max", save_top_k=settings.keep_checkpoints, save_last=True,
        every_n_train_steps=settings.save_every * steps,
        enable_version_counter=False,  # SaveLastAtEnd rewrites last.ckpt; no "last-v1.ckpt" beside it
    )
    devices = int(settings.devices) if settings.devices.lstrip("-").isdigit() else settings.devices
    return L.Trainer(
        accelerator=settings.accelerator, devices=devices, num_nodes=settings.num_nodes,
        strategy=resolve_strategy(settings), precision=settings.precision,
        max_steps=settings.max_steps * steps, val_check_interval=settings.valid_every,
        check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=settings.log_every,
        logger=TensorBoardLogger(out, name="tensorboard", version=""),
        callbacks=[*callbacks, SeedPerProcess(settings.seed), SaveLastAtEnd(out / "checkpoints" / LAST), periodic],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=settings.progress_bar, enable_model_summary=False, default_root_dir=out,
    )


def train_codec(settings: CodecTrainSettings, callbacks: Sequence[Callback] = ()) -> dict:
    """Train (or resume training) a codec as `settings` say.

    Args:
        settings: the resolved settings (`settings.resume` names the checkpoint to continue from).
        callbacks: extra Lightning callbacks (the tests use one to watch the run).
    Returns:
        the run summary written to OUT/summary.json.
    """
    settings.check()
    L.seed_everything(settings.seed, workers=True, verbose=False)
    out = Path(settings.out)
    train_loader, valid_loader, skipped = build_loaders(settings)
    module = CodecTrainingModule(settings)
    trainer = build_trainer(settings, callbacks)
    ckpt_path = resume_path(settings.resume, out) if settings.resume else None
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        (out / "settings.json").write_text(json.dumps(settings.to_dict(), indent=2))
    with warnings.catch_warnings():
        # An endless random-segment dataset has nothing to resume mid-epoch; Lightning's warning says so.
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch.*")
        # We do want the state after the step's updates in the checkpoint, which is what Lightning warns about.
        warnings.filterwarnings("ignore", message=".*no pre-optimization state was saved.*")
        if ckpt_path is None:
            trainer.validate(module, valid_loader, verbose=False)  # the "before" metrics, at step 0
        else:  # a resumed run writes into its own checkpoint folder, as it should
            warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        trainer.fit(module, train_loader, valid_loader, ckpt_path=ckpt_path, weights_only=True)
    trainer.validate(module, valid_loader, verbose=False)  # the "after" metrics, at the final step
    summary = {"steps": module.codec_step, "skipped_files": skipped, "valid": module.history["valid"]}
    if trainer.is_global_zero:
        save_encodec(module.codec, out / "export")
        plot_training_curves(module.history, out / "loss_curve.png", title=f"codec training: {out.name}")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(given: dict) -> None:
    """The `train.py codec` command: resolve the settings, print them, train, print the summary.

    Args:
        given: the flags present on the command line (see `training.settings.add_codec_arguments`).
    """
    try:
        settings = settings_for_run(given, CodecTrainSettings.out, resolve_settings)
        settings.check()
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"train.py codec: error: {err}") from None
    report(f"train.py codec, resolved settings:\n{json.dumps(settings.to_dict(), indent=2)}")
    report(f"codec config: {settings.codec_config()}")
    summary = train_codec(settings)
    valid = summary["valid"]
    if valid:
        first, last = valid[0], valid[-1]
        report(f"validation SI-SNR: {first['si_snr']:.2f} dB at step {first['step']} -> {last['si_snr']:.2f} dB "
               f"at step {last['step']}; mel distance {first['mel']:.3f} -> {last['mel']:.3f}")
    report(f"skipped {len(summary['skipped_files'])} unreadable files; export: {Path(settings.out) / 'export'}")


@rank_zero_only
def report(message: str) -> None:
    """Print once, from the first process of a multi-process run."""
    print(message, flush=True)

"""`python train.py codec`: train an EnCodec model on a folder of audio with Lightning.

Output folder layout (besides settings.json, checkpoints/ and tensorboard/, see training/run.py):
    OUT/export/                    the final codec (config.json + model.safetensors): load_encodec(OUT/export)
    OUT/loss_curve.png             training losses and validation metrics against the step
    OUT/summary.json               validation metrics before and after, steps, skipped files
"""

import json
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from encodec import save_encodec
from training import run as runs
from training.codec_data import CodecDataModule
from training.codec_module import OPTIMIZER_STEPS_PER_BATCH, CodecTrainingModule
from training.codec_settings import CodecTrainSettings, resolve_settings
from training.plots import plot_training_curves
from training.run import Run


def prepare_run(settings: CodecTrainSettings) -> Run:
    """The codec's training module and its data, built and checked (raises DataError on data that cannot train)."""
    settings.check()
    L.seed_everything(settings.seed, workers=True, verbose=False)
    data = CodecDataModule(settings)
    description = (f"codec config: {settings.codec_config()}\nfiles: {len(data.train_files)} train, "
                   f"{len(data.valid_files)} valid, {len(data.skipped)} skipped")
    return Run(CodecTrainingModule(settings), data, description)


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
    # Lightning's global_step counts both optimizers' steps; the checkpoints are named by the codec's steps.
    return runs.build_trainer(settings, "step{codec_step:07.0f}", callbacks, steps_per_batch=OPTIMIZER_STEPS_PER_BATCH,
                              strategy=resolve_strategy(settings))


def train_codec(settings: CodecTrainSettings, run: Run | None = None, callbacks: Sequence[Callback] = ()) -> dict:
    """Train (or resume training) a codec as `settings` say.

    Args:
        settings: the resolved settings (`settings.resume` names the checkpoint to continue from).
        run: the parts, when already built by `prepare_run`.
        callbacks: extra Lightning callbacks (the tests use one to watch the run).
    Returns:
        the run summary written to OUT/summary.json.
    """
    run = run or prepare_run(settings)
    module, out = run.module, Path(settings.out)
    trainer = build_trainer(settings, callbacks)
    runs.fit(settings, trainer, run)
    summary = {"steps": module.codec_step, "skipped_files": run.data.skipped, "valid": module.history["valid"]}
    if trainer.is_global_zero:
        save_encodec(module.codec, out / "export")
        plot_training_curves(module.history, out / "loss_curve.png", title=f"codec training: {out.name}")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def summary_lines(settings: CodecTrainSettings, summary: dict) -> list[str]:
    """What `train.py codec` prints at the end: the validation metrics before and after, skipped files, export."""
    lines = []
    if valid := summary["valid"]:
        first, last = valid[0], valid[-1]
        lines.append(f"validation SI-SNR: {first['si_snr']:.2f} dB at step {first['step']} -> {last['si_snr']:.2f} "
                     f"dB at step {last['step']}; mel distance {first['mel']:.3f} -> {last['mel']:.3f}")
    lines.append(f"skipped {len(summary['skipped_files'])} unreadable files; export: {Path(settings.out) / 'export'}")
    return lines


def main(given: dict) -> None:
    """The `train.py codec` command (see `training.run.main`).

    Args:
        given: the flags present on the command line (see `training.codec_settings.add_codec_arguments`).
    """
    runs.main("train.py codec", given, CodecTrainSettings.out, resolve_settings, prepare_run, train_codec,
              summary_lines)

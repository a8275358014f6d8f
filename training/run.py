"""What `train.py codec` and `train.py lm` share: their callbacks, the Lightning trainer, the fit between two
validations, and the command's outline (resolve and print the settings, build, train, print the summary).

Every run writes under OUT:
    OUT/settings.json              the resolved settings (also inside every checkpoint)
    OUT/checkpoints/last.ckpt      the latest state (written every --save-every steps and at the end)
    OUT/checkpoints/stepNNNNNNN.ckpt   periodic checkpoints, the newest --keep-checkpoints kept
    OUT/tensorboard/               losses and validation metrics, audio examples
"""

import json
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from training.audio_files import DataError
from training.checkpoints import LAST, AtomicCheckpointIO, resume_path, settings_for_run
from training.run_settings import RunSettings


class TrainValidLoaders(L.LightningDataModule):
    """The loaders of both training commands' data modules: `train_set` (whole batches only) and `valid_set`,
    which the subclass builds, batched by `settings.batch_size` with `settings.num_workers` workers."""

    train_set: Dataset
    valid_set: Dataset

    def _loader(self, dataset: Dataset, drop_last: bool) -> DataLoader:
        workers = self.settings.num_workers
        return DataLoader(dataset, batch_size=self.settings.batch_size, drop_last=drop_last, num_workers=workers,
                          persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.valid_set, drop_last=False)


class RunInterruptedError(Exception):
    """Training was stopped by SIGTERM (a scheduler's stop, `kill`); the message says what was saved."""


class SaveLastAtEnd(Callback):
    """Write OUT/checkpoints/last.ckpt when training ends or is stopped by SIGTERM, so `--resume` continues from
    the last finished step.

    (ModelCheckpoint writes last.ckpt only along with its periodic checkpoints. On SIGTERM Lightning finishes the
    step it is in and raises `SIGTERMException`; the state then is that of a periodic checkpoint.)
    """

    def __init__(self, path: Path):
        self.path = path

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: optimizers, loops, callbacks

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            trainer.save_checkpoint(self.path, weights_only=False)


class StepProgressBar(ProgressBar):
    """One progress bar for training: steps done / --max-steps (counted from the resumed step after a resume),
    with the last logged training losses. Lightning's own bar counts batches of an epoch, which a run of endless
    random segments does not have.

    Args:
        steps_per_batch: Lightning's global steps per training batch (the codec's two optimizers make two).
    """

    def __init__(self, steps_per_batch: int = 1):
        super().__init__()
        self.steps_per_batch = steps_per_batch
        self.enabled = True
        self.bar: tqdm | None = None

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def step(self, trainer: L.Trainer) -> int:
        return trainer.global_step // self.steps_per_batch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.bar = tqdm(total=trainer.max_steps // self.steps_per_batch, initial=self.step(trainer), desc="training",
                        unit="step", dynamic_ncols=True, disable=not self.enabled or not trainer.is_global_zero)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
                           ) -> None:
        self.bar.update(self.step(trainer) - self.bar.n)
        history = getattr(pl_module, "history", {}).get("train")
        if history:
            losses = [(k, v) for k, v in history[-1].items() if k != "step"][:4]  # the first few: one line
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in losses}, refresh=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class SeedPerProcess(Callback):
    """Reseed torch's RNG when training starts, differently in every process and at every resume point.

    The training sets draw their segments from torch's RNG, which `seed_everything` seeds identically in every
    process: without this, all DDP processes would read the same segments (with `num_workers=0`; Lightning
    seeds loader workers per rank itself), and a resumed run would replay the segments of the run's start.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(self.seed + 1_000_003 * trainer.global_rank + trainer.global_step)


@dataclass
class Run:
    """The parts of a run, built and checked before anything is written (so that setting errors surface first)."""

    module: L.LightningModule
    data: L.LightningDataModule
    description: str  # what was built, printed before training


def build_trainer(settings: RunSettings, checkpoint_name: str, callbacks: Sequence[Callback] = (),
                  steps_per_batch: int = 1, strategy: str | None = None, gradient_clip_val: float | None = None
                  ) -> L.Trainer:
    """The Lightning Trainer of a run: TensorBoard logs, periodic checkpoints and last.ckpt under OUT, written
    atomically.

    Args:
        settings: the run's settings (steps are counted in training batches, as --max-steps counts them).
        checkpoint_name: the periodic checkpoints' file name, e.g. "step{step:07.0f}" (a logged value).
        callbacks: extra Lightning callbacks (the tests use one to watch the run).
        steps_per_batch: Lightning's global steps per training batch (one per optimizer that steps).
        strategy: Lightning's strategy (default: the settings').
        gradient_clip_val: clip the gradient norm to this (None: no clipping).
    """
    out = Path(settings.out)
    periodic = ModelCheckpoint(
        dirpath=out / "checkpoints", filename=checkpoint_name, auto_insert_metric_name=False, monitor="step",
        mode="max", save_top_k=settings.keep_checkpoints, save_last=True,
        every_n_train_steps=settings.save_every * steps_per_batch,
        enable_version_counter=False,  # SaveLastAtEnd rewrites last.ckpt; no "last-v1.ckpt" beside it
    )
    devices = int(settings.devices) if settings.devices.lstrip("-").isdigit() else settings.devices
    progress = [StepProgressBar(steps_per_batch)] if settings.progress_bar else []
    return L.Trainer(
        accelerator=settings.accelerator, devices=devices, num_nodes=settings.num_nodes,
        strategy=strategy or settings.strategy, precision=settings.precision,
        max_steps=settings.max_steps * steps_per_batch, val_check_interval=settings.valid_every,
        check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=settings.log_every,
        gradient_clip_val=gradient_clip_val, gradient_clip_algorithm="norm",
        logger=TensorBoardLogger(out, name="tensorboard", version=""),
        callbacks=[*callbacks, SeedPerProcess(settings.seed), SaveLastAtEnd(out / "checkpoints" / LAST), periodic,
                   *progress],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=settings.progress_bar, enable_model_summary=False, default_root_dir=out,
    )


def fit(settings: RunSettings, trainer: L.Trainer, run: Run) -> None:
    """Write OUT/settings.json; validate (the "before" metrics of a fresh run, at step 0); train from scratch or
    from the checkpoint `settings.resume` names; validate again (the "after" metrics, at the final step).

    Raises:
        RunInterruptedError: on SIGTERM (last.ckpt then holds the last finished step).
    """
    out = Path(settings.out)
    ckpt_path = resume_path(settings.resume, out) if settings.resume else None
    report(f"processes: {trainer.world_size} ({trainer.num_nodes} node(s) x {trainer.num_devices} device(s), "
           f"{type(trainer.strategy).__name__}); batch {settings.batch_size} per process, "
           f"{settings.batch_size * trainer.world_size} per step")
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        (out / "settings.json").write_text(json.dumps(settings.to_dict(), indent=2))
        remove_partial_checkpoints(out / "checkpoints")
    stages = [] if ckpt_path else [lambda: trainer.validate(run.module, datamodule=run.data, verbose=False)]
    stages += [lambda: trainer.fit(run.module, datamodule=run.data, ckpt_path=ckpt_path, weights_only=True),
               lambda: trainer.validate(run.module, datamodule=run.data, verbose=False)]
    try:
        with sigterm_recorded() as received, warnings.catch_warnings():
            # Lightning's deprecation of its own use of torch's pytree (torch 2.13): nothing a user can act on.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
            # An endless random-segment dataset has nothing to resume mid-epoch; Lightning's warning says so.
            warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch.*")
            # We do want the state after the step's updates in the checkpoint, which is what Lightning warns about.
            warnings.filterwarnings("ignore", message=".*no pre-optimization state was saved.*")
            # A resumed run writes into its own checkpoint folder, as it should.
            warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
            # Validating with several processes: the fixed validation set split between them, padded to equal
            # shares (up to world size - 1 windows counted twice in the mean).
            warnings.filterwarnings("ignore", message=".*Using `DistributedSampler` with the dataloaders.*")
            for stage in stages:
                stage()
                if received:  # a SIGTERM between stages, or in a validation's last batch (Lightning forgets it)
                    raise SIGTERMException
    except SIGTERMException:  # a SystemExit whose code is 0: a scheduler would read success
        last = out / "checkpoints" / LAST
        saved = (f"the last finished step is in {last}: continue with --resume --out {out}" if last.is_file()
                 else "no checkpoint was written")
        raise RunInterruptedError(f"interrupted by SIGTERM; {saved}; no export") from None


@contextmanager
def sigterm_recorded() -> Iterator[list[int]]:
    """Record the SIGTERMs received inside the block (in a list) instead of dying of them.

    Inside each trainer call Lightning installs its own handler, which calls this one too; between calls (and
    across them: Lightning forgets a SIGTERM at its next call) this one is what tells `fit` to stop.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield received
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def remove_partial_checkpoints(folder: Path) -> None:
    """Delete the temporary files of checkpoint writes a killed run left (`.NAME.ckpt.tmp`, maybe partial)."""
    for tmp in folder.glob(".*.ckpt.tmp"):
        tmp.unlink(missing_ok=True)


def main(command: str, given: dict, default_out: str, resolve: Callable[[dict, dict | None], RunSettings],
         prepare: Callable[[RunSettings], Run], train: Callable[[RunSettings, Run], dict],
         summarize: Callable[[RunSettings, dict], list[str]]) -> None:
    """A training command: resolve the settings, print them, build and check the run, train, print the summary.

    A setting or data error ends the command with one line, `COMMAND: error: ...`, before anything is written
    (data errors found later, when the tokens are loaded, also end it with one line). SIGTERM ends it with
    status 143 (128 + SIGTERM) and a line saying what was saved.

    Args:
        command: the command's name in messages ("train.py codec").
        given: the flags present on the command line.
        default_out: the command's default output folder (where "--resume" with no value looks).
        resolve: `(given, saved settings or None) -> settings`: defaults < a resumed checkpoint's < the flags.
        prepare: builds the run's parts (raises ValueError or OSError on what cannot train).
        train: trains and returns the run's summary.
        summarize: the summary's lines to print.
    """
    quiet_lightning()
    try:
        settings = settings_for_run(given, default_out, resolve)
        settings.check()
        report(f"{command}, resolved settings:\n{json.dumps(settings.to_dict(), indent=2)}")
        run = prepare(settings)
    except (ValueError, OSError) as err:
        raise SystemExit(f"{command}: error: {err}") from None
    report(run.description)
    if settings.resume:
        report(f"resuming from {settings.resume}")
    try:
        summary = train(settings, run)
    except DataError as err:
        raise SystemExit(f"{command}: error: {err}") from None
    except RunInterruptedError as err:
        print(f"{command}: {err}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.SIGTERM) from None
    for line in summarize(settings, summary):
        report(line)


def quiet_lightning() -> None:
    """Keep Lightning to what a user of the command needs: no accelerator inventory ("GPU available: False"),
    advertising tips, "`Trainer.fit` stopped" or "Received SIGTERM" lines (its info-level log messages; the
    command says what happened itself). Its warnings about the run still show (`fit` filters the ones that are
    not about the run), as one line each: Lightning, once loaded, prints its own with their site-packages path."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.formatwarning = one_line_warning


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as a command shows it: `warning: MESSAGE` (skipped files, a repaired token cache), one line
    without Python's file name and source line."""
    return f"warning: {message}\n"


@rank_zero_only
def report(message: str) -> None:
    """Print once, from the first process of a multi-process run."""
    print(message, flush=True)

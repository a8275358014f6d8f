"""Settings of a codec training run: one frozen dataclass, its command line, and how the two resolve.

They resolve as every run's do (training/run_settings.py): the defaults below < the settings saved in the
checkpoint named by `--resume` < the flags given on the command line.

Defaults follow audiocraft's compression solver (`config/solver/compression/default.yaml`) where it has one:
loss weights l1 0.1, msspec 2, adv 4, feat 4 (balanced), commitment 1 (not balanced), Adam lr 3e-4 betas
(0.5, 0.9).
The published batch is 64 one-second segments; the default here is smaller so that a first run fits anywhere.
"""

import argparse
import functools
from dataclasses import dataclass
from pathlib import Path

from encodec import EncodecConfig, EncodecModel, get_preset, load_encodec
from training.run_settings import (
    RunSettings,
    add_run_arguments,
    argument_adder,
    parse_floats,
    parse_ints,
    resolve_fields,
)

# The fields that override the preset's EncodecConfig when set (None keeps the preset's value).
MODEL_OVERRIDES = ("sample_rate", "channels", "n_filters", "dimension", "n_q", "bins", "ratios", "lstm_layers")
TRAINED_PARTS = ("all", "decoder")  # --train: what the codec's optimizer updates
# Every number's range: the model's as the checkpoint loader (encodec/loading.py) checks a config's, the rest's
# where training can run at all (Adam needs betas below 1; a segment holds at least one sample).
RANGES = {"sample_rate": (1, 1_000_000), "channels": (1, 2), "n_filters": (1, 65_536), "dimension": (1, 65_536),
          "n_q": (1, 1024), "bins": (2, 2**20), "ratios": (1, 1024), "lstm_layers": (1, 64),
          "disc_filters": (1, 65_536), "disc_n_ffts": (2, 65_536), "segment_seconds": (1e-3, 3600),
          "valid_fraction": (0, 0.99), "l1_weight": (0, 1e6), "msspec_weight": (0, 1e6), "adv_weight": (0, 1e6),
          "feat_weight": (0, 1e6), "commitment_weight": (0, 1e6), "lr": (0, 10), "betas": (0, 0.999999)}


@functools.cache
def starting_codec(source: str) -> EncodecModel:
    """The codec `--init-from` names (any source `load_encodec` reads), in its training form (weight norm kept).
    Cached: the settings ask for its config several times and the training module for its weights once."""
    return load_encodec(source, inference=False)


@dataclass(frozen=True)
class CodecTrainSettings(RunSettings):
    """Everything that defines a codec training run; saved inside every checkpoint it writes."""

    # data
    data: str = ""  # folder of wav / flac / ogg files, searched recursively
    valid_data: str | None = None  # a separate validation folder; default: hold out part of `data`
    valid_fraction: float = 0.1  # share of the files of `data` held out when there is no `valid_data`
    valid_examples: int = 32  # fixed validation segments
    sample_on_duration: bool = False  # draw training files in proportion to their length (default: uniformly)
    segment_seconds: float = 1.0
    batch_size: int = 16
    num_workers: int = 2
    # model: a preset, and the fields of its EncodecConfig to replace (tiny models for tests and demos)
    preset: str = "encodec-32khz"
    sample_rate: int | None = None
    channels: int | None = None
    n_filters: int | None = None
    dimension: int | None = None
    n_q: int | None = None
    bins: int | None = None
    ratios: tuple[int, ...] | None = None
    lstm_layers: int | None = None
    init_from: str | None = None  # start from this codec's weights and shape (an export, a MusicGen folder, ...)
    train: str = "all"  # "decoder": the encoder and the codebooks stay frozen, so an LM's tokens stay valid
    disc_filters: int = 32
    disc_n_ffts: tuple[int, ...] = (1024, 2048, 512, 256, 128)  # hop n_fft / 4, window n_fft
    # losses: the first four go through the balancer, the commitment loss is added outside it
    l1_weight: float = 0.1
    msspec_weight: float = 2.0
    adv_weight: float = 4.0
    feat_weight: float = 4.0
    commitment_weight: float = 1.0
    balancer: bool = True
    # optimisation
    max_steps: int = 2000
    lr: float = 3e-4
    betas: tuple[float, ...] = (0.5, 0.9)
    out: str = "runs/codec"

    def codec_config(self) -> EncodecConfig:
        """The preset's EncodecConfig with the overrides that are set, or the config of the `--init-from` codec."""
        if self.init_from:
            return starting_codec(self.init_from).config
        overrides = {name: getattr(self, name) for name in MODEL_OVERRIDES if getattr(self, name) is not None}
        return get_preset(self.preset, **overrides)

    @property
    def segment_samples(self) -> int:
        return round(self.segment_seconds * self.codec_config().sample_rate)

    @property
    def loss_weights(self) -> dict[str, float]:
        """The balanced losses' weights, by loss name."""
        return {"l1": self.l1_weight, "msspec": self.msspec_weight, "adv": self.adv_weight, "feat": self.feat_weight}

    def check(self) -> None:
        """Raise ValueError on settings that cannot train."""
        if not self.data:
            raise ValueError("--data is required (a folder of audio files)")
        self.check_ranges(RANGES)
        if self.ratios is not None and not 1 <= len(self.ratios) <= 16:
            raise ValueError(f"--ratios takes 1 to 16 numbers, got {len(self.ratios)}")
        for folder in (self.data, self.valid_data):
            if folder and not Path(folder).is_dir():
                raise ValueError(f"audio folder not found: {folder}")
        if self.init_from:
            given = [name for name in MODEL_OVERRIDES if getattr(self, name) is not None]
            if given:
                flags = ", ".join("--" + name.replace("_", "-") for name in given)
                raise ValueError(f"--init-from {self.init_from} fixes the codec's shape: drop {flags}")
        if self.train not in TRAINED_PARTS:
            raise ValueError(f"--train must be one of {', '.join(TRAINED_PARTS)}, got {self.train!r}")
        if self.train == "decoder" and not self.init_from:
            raise ValueError("--train decoder fine-tunes a trained codec's decoder: --init-from names the codec")
        if sum(w for w in self.loss_weights.values() if w > 0) <= 0:
            raise ValueError("at least one of --l1-weight, --msspec-weight, --adv-weight, --feat-weight must be > 0")
        # The discriminator's STFTs are uncentred: a segment must hold one window of the largest one. The
        # largest mel scale (n_fft 1024) reflect-pads by 384 samples, which needs more than 384 samples.
        needed = max(max(self.disc_n_ffts), 385)
        if self.segment_samples < needed:
            raise ValueError(f"segments of {self.segment_samples} samples are shorter than the {needed} samples the "
                             "discriminator's largest FFT needs: raise --segment-seconds or lower --disc-n-ffts")
        self.check_betas()
        self.check_at_least(1, ("batch_size", "max_steps", "valid_examples"))
        self.check_run()


def add_codec_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train.py codec` flags. Their parsed defaults are absent (SUPPRESS) so that `resolve_settings`
    can tell a flag given on the command line from a default."""
    add = argument_adder(CodecTrainSettings())
    data = parser.add_argument_group("data")
    add(data, "--data", "folder of training audio (wav, flac, ogg; searched recursively); required unless --resume",
        metavar="DIR")
    add(data, "--valid-data", "separate validation folder (default: hold out --valid-fraction of --data)",
        metavar="DIR")
    add(data, "--valid-fraction", "share of --data held out for validation without --valid-data", type=float)
    add(data, "--valid-examples", "number of fixed validation segments", type=int)
    add(data, "--sample-on-duration", "draw training files in proportion to their duration, so an hour-long track "
        "counts as much as 360 ten-second clips (default: every file equally often)",
        action=argparse.BooleanOptionalAction)
    add(data, "--segment-seconds", "length of each training segment", type=float)
    add(data, "--batch-size", "segments per batch and per device (published: 64)", type=int)
    add(data, "--num-workers", "data loader processes per device", type=int)
    model = parser.add_argument_group("model (a preset, and fields to replace for small models)")
    add(model, "--preset", "EnCodec preset (encodec-32khz, encodec-24khz)")
    add(model, "--sample-rate", "audio rate in Hz (default: the preset's)", type=int)
    add(model, "--channels", "1 mono, 2 stereo (default: the preset's)", type=int)
    add(model, "--n-filters", "channels of the first conv (default: the preset's)", type=int)
    add(model, "--dimension", "latent and codebook width D (default: the preset's)", type=int)
    add(model, "--n-q", "number of codebooks K (default: the preset's)", type=int)
    add(model, "--bins", "codes per codebook V (default: the preset's)", type=int)
    add(model, "--ratios", "decoder up-sampling ratios, e.g. 8,5,4,4 (default: the preset's)", type=parse_ints)
    add(model, "--lstm-layers", "LSTM layers (default: the preset's)", type=int)
    add(model, "--init-from", "start from this codec's weights and shape: an export folder (OUT/export), a MusicGen "
        "folder or repo id (its codec), a checkpoint file; the shape flags above are then refused", metavar="CODEC")
    add(model, "--train", "what to train: all, or decoder (encoder and codebooks frozen, so the tokens an LM was "
        "trained on keep their meaning: a GAN fine-tune of the decoder)", choices=TRAINED_PARTS)
    add(model, "--disc-filters", "discriminator channels", type=int)
    add(model, "--disc-n-ffts", "discriminator STFT sizes, one per scale", type=parse_ints)
    losses = parser.add_argument_group("losses")
    add(losses, "--l1-weight", "waveform L1 weight (balanced; 0 = logged only)", type=float)
    add(losses, "--msspec-weight", "multi-scale mel weight (balanced)", type=float)
    add(losses, "--adv-weight", "adversarial hinge weight (balanced)", type=float)
    add(losses, "--feat-weight", "feature-matching weight (balanced)", type=float)
    add(losses, "--commitment-weight", "RVQ commitment weight (added outside the balancer)", type=float)
    add(losses, "--balancer", "balance the loss gradients (--no-balancer: plain weighted sum)",
        action=argparse.BooleanOptionalAction)
    optim = parser.add_argument_group("optimisation")
    add(optim, "--max-steps", "training steps (one discriminator and one codec update each)", type=int)
    add(optim, "--lr", "Adam learning rate, codec and discriminator", type=float)
    add(optim, "--betas", "Adam betas", type=parse_floats)
    run = parser.add_argument_group("run")
    add(run, "--out", "output folder: checkpoints/, tensorboard/, export/, loss_curve.png", metavar="DIR")
    add_run_arguments(run, add, strategy_help="Lightning strategy (ddp is run with find_unused_parameters)")


def resolve_settings(given: dict, saved: dict | None = None) -> CodecTrainSettings:
    """Defaults < `saved` (a checkpoint's settings) < `given` (flags from the command line).

    Args:
        given: the parsed flags present on the command line (names as in CodecTrainSettings).
        saved: `CodecTrainSettings.to_dict()` from a checkpoint, or None.
    """
    return resolve_fields(CodecTrainSettings(), given, saved)

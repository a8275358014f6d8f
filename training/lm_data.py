"""Captioned audio for language-model training: the files, their cached tokens, and random token windows.

The captions come from sidecar files or a manifest (training/captions.py).

Each file is encoded once into the token cache (training/lm_tokens.py); the training set then draws
windows of T = segment_seconds * frame_rate frames at random (uniform over files, then over offsets, as
audiocraft's `sample_on_weight: false`, `sample_on_duration: false`); validation windows are fixed. Files
shorter than one window (by their header, before anything is encoded) are left out and counted (audiocraft would
pad them with silence instead).

Shape legend: K codebooks, T frames.
"""

import math
import warnings

import torch
from torch.utils.data import Dataset

from encodec import EncodecModel
from training.audio_files import AudioFile, DataError, split_files
from training.captions import read_captioned
from training.lm_settings import LMTrainSettings
from training.lm_tokens import CacheStats, TokenCache
from training.run import TrainValidLoaders

BATCHES_PER_EPOCH = 1000  # the training set is endless random windows; an "epoch" is just a count


class TokenWindows(Dataset):
    """Windows of `frames` frames of cached codes, with their captions: items (codes [K, frames] int64, caption).

    Args:
        codes: one [K, T_i] tensor per file (T_i >= frames).
        captions: one caption per file.
        frames: window length T.
        num_examples: the dataset length.
        random_offsets: training (random file, random offset). When False, example i is the (i // F)-th
            consecutive window of file i % F, clamped to the file's end (validation: fixed windows).
    """

    def __init__(self, codes: list[torch.Tensor], captions: list[str], frames: int, num_examples: int,
                 random_offsets: bool = True):
        if not codes:
            raise ValueError("no token sequences")
        self.codes, self.captions, self.frames = codes, captions, frames
        self.num_examples, self.random_offsets = num_examples, random_offsets

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        if self.random_offsets:
            i = int(torch.randint(len(self.codes), ()))
            start = int(torch.randint(self.codes[i].shape[-1] - self.frames + 1, ()))
        else:
            i = index % len(self.codes)
            start = min((index // len(self.codes)) * self.frames, self.codes[i].shape[-1] - self.frames)
        return self.codes[i][:, start:start + self.frames].long(), self.captions[i]  # [K, T]


def encoded_frames(file: AudioFile, codec: EncodecModel) -> int:
    """The frames T of the codes `encode_file` makes of a whole file: its N samples at the codec's rate, in frames
    of `hop_length` samples (the last one padded)."""
    return math.ceil(round(file.duration * codec.sample_rate) / codec.hop_length)


class LMDataModule(TrainValidLoaders):
    """The captioned files of a run, encoded once into the token cache, as training and validation loaders.

    The files are listed, split and checked when the module is built (every process, cheap: headers only), so
    that a run with no usable data stops before it writes anything; `prepare_data` (Lightning runs it in one
    process per node, before the others start) encodes what the cache lacks; `setup` loads the tokens in every
    process.

    Args:
        settings: the run's settings (data sources, split, window length, batch size).
        codec: the codec that makes the tokens.
    Raises:
        DataError: when a caption file is bad, or the training or the validation set has no readable audio file
            at least one window long.
    """

    def __init__(self, settings: LMTrainSettings, codec: EncodecModel):
        super().__init__()
        self.settings, self.codec = settings, codec
        self.frames = math.floor(settings.segment_seconds * codec.frame_rate + 1e-6)
        if self.frames < codec.num_codebooks:  # with delays 0..K-1, codebook k predicts the last T - k frames
            raise ValueError(f"--segment-seconds {settings.segment_seconds} gives {self.frames} frames: the delay "
                             f"pattern of {codec.num_codebooks} codebooks needs at least {codec.num_codebooks}")
        train = read_captioned(settings.data or settings.manifest)
        if settings.valid_data:
            valid = read_captioned(settings.valid_data)
            self.train_files, self.valid_files = train.files, valid.files
            self.captions = {**train.captions, **valid.captions}
            self.skipped = sorted(set(train.skipped + valid.skipped))
        else:
            self.train_files, self.valid_files = split_files(train.files, settings.valid_fraction, settings.seed)
            self.captions, self.skipped = train.captions, train.skipped
        if not self.train_files or not self.valid_files:
            raise DataError(f"no readable audio files in {settings.data or settings.manifest} "
                            f"(skipped {len(self.skipped)})")
        self.too_short: list[str] = []
        self.train_files, self.valid_files = self._long_enough(self.train_files), self._long_enough(self.valid_files)
        if not self.train_files or not self.valid_files:
            raise DataError(self._too_short_message("training" if not self.train_files else "validation"))
        self.uncaptioned = sum(not self.captions[f.path] for f in {*self.train_files, *self.valid_files})
        self.cache = TokenCache(settings.cache_folder, codec)
        self.cache_stats: CacheStats | None = None  # set in the process that runs prepare_data
        self.train_set: TokenWindows | None = None
        self.valid_set: TokenWindows | None = None

    def sample_captions(self, count: int) -> list[str | None]:
        """`count` validation captions for generated examples (captioned files first; None = unconditional)."""
        captions = sorted({self.captions[f.path] for f in self.valid_files}, key=lambda c: (not c, c))
        return [captions[i % len(captions)] or None for i in range(count)]

    def prepare_data(self) -> None:
        if self.cache_stats is not None:  # done already (validation before training)
            return
        files = list({f.path: f for f in self.train_files + self.valid_files}.values())
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.cache_stats = self.cache.update(files, device, progress=self.settings.progress_bar)

    def setup(self, stage: str) -> None:
        if self.train_set is not None:
            return
        index = self.cache.read_index()
        train, valid = self._load(self.train_files, index), self._load(self.valid_files, index)
        if not train or not valid:
            raise DataError(self._too_short_message("training" if not train else "validation"))
        s = self.settings
        self.train_set = TokenWindows(*zip(*train, strict=True), self.frames, s.batch_size * BATCHES_PER_EPOCH)
        self.valid_set = TokenWindows(*zip(*valid, strict=True), self.frames, s.valid_examples, random_offsets=False)

    def _too_short_message(self, split: str) -> str:
        return (f"no audio file of the {split} set is at least one window (--segment-seconds "
                f"{self.settings.segment_seconds}) long; left out as too short: {len(self.too_short)}")

    def _long_enough(self, files: list[AudioFile]) -> list[AudioFile]:
        """The files whose tokens will hold at least one window, by their header; the others are warned about
        and counted in `too_short`."""
        kept = []
        for file in files:
            frames = encoded_frames(file, self.codec)
            if frames >= self.frames:
                kept.append(file)
            else:
                self.too_short.append(file.path)
                warnings.warn(f"{file.path} is shorter than one window ({frames} < {self.frames} frames): left out",
                              stacklevel=3)
        return kept

    def _load(self, files: list[AudioFile], index: dict) -> list[tuple[torch.Tensor, str]]:
        """(codes, caption) of the files that were encoded and hold at least one window; the rest are counted."""
        loaded = []
        for file in files:
            codes = self.cache.load(file.path, index)  # [K, T_i]
            if codes is None:  # it failed to encode (warned in prepare_data)
                if file.path not in self.skipped:
                    self.skipped.append(file.path)
            elif codes.shape[-1] < self.frames:
                self.too_short.append(file.path)
                warnings.warn(f"{file.path} is shorter than one window ({codes.shape[-1]} < {self.frames} frames): "
                              "left out", stacklevel=2)
            else:
                loaded.append((codes, self.captions[file.path]))
        return loaded

"""Captioned audio for language-model training: the captions, the cached tokens, and random token windows.

Where the captions come from:
- a folder (`--data DIR`): every wav / flac / ogg file (recursive) with a sidecar of the same name, `song.txt`
  (the whole text) or `song.json` ({"caption": ...} or {"description": ...}, audiocraft's key); `.txt` wins;
- a manifest (`--manifest FILE`): one JSON object per line, {"path": "song.wav", "caption": "..."}, paths
  relative to the manifest's folder; a line without a caption falls back to the file's sidecar.
A file without any caption is kept with the empty (null) description: it trains the unconditional model.

Each file is encoded once into the token cache (training/lm_tokens.py); the training set then draws
windows of T = segment_seconds * frame_rate frames at random (uniform over files, then over offsets, as
audiocraft's `sample_on_weight: false`, `sample_on_duration: false`); validation windows are fixed. Files
shorter than one window are left out and counted (audiocraft would pad them with silence instead).

Shape legend: K codebooks, T frames.
"""

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from encodec import EncodecModel
from training.audio_files import AUDIO_EXTENSIONS, AudioFile, probe_audio, split_files
from training.lm_settings import LMTrainSettings
from training.lm_tokens import CacheStats, TokenCache

CAPTION_KEYS = ("caption", "description")
BATCHES_PER_EPOCH = 1000  # the training set is endless random windows; an "epoch" is just a count


@dataclass
class CaptionedFiles:
    """Readable audio files, the caption of each (by path; "" = none), and the paths that were skipped."""

    files: list[AudioFile] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def add(self, path: Path, caption: str | None) -> None:
        """Probe `path` (header only); an unreadable or empty file is warned about and skipped."""
        audio = probe_audio(path)
        if audio is None:
            self.skipped.append(str(path))
            return
        self.files.append(audio)
        self.captions[str(path)] = caption if caption is not None else sidecar_caption(path) or ""


def sidecar_caption(audio_path: Path) -> str | None:
    """The caption in `<stem>.txt` or `<stem>.json` beside an audio file, or None."""
    text = audio_path.with_suffix(".txt")
    if text.is_file():
        return text.read_text(encoding="utf-8").strip()
    meta = audio_path.with_suffix(".json")
    if meta.is_file():
        return _caption_of(json.loads(meta.read_text(encoding="utf-8")))
    return None


def _caption_of(entry: dict) -> str | None:
    return next((str(entry[k]).strip() for k in CAPTION_KEYS if entry.get(k) is not None), None)


def scan_captioned_folder(root: str | Path) -> CaptionedFiles:
    """The audio files under `root` (recursive, sorted) with their sidecar captions."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder not found: {root}")
    result = CaptionedFiles()
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        result.add(path, None)
    return result


def read_manifest(manifest: str | Path) -> CaptionedFiles:
    """The files a JSONL manifest lists ({"path": ..., "caption" or "description": ...} per line)."""
    manifest = Path(manifest)
    result = CaptionedFiles()
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            path = manifest.parent / entry["path"]  # an absolute path stays absolute
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{manifest}:{number}: expected a JSON object with a \"path\": {err}") from None
        result.add(path, _caption_of(entry))
    return result


def read_captioned(source: str | Path) -> CaptionedFiles:
    """A folder or a .jsonl manifest."""
    return read_manifest(source) if Path(source).is_file() else scan_captioned_folder(source)


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


class LMDataModule(L.LightningDataModule):
    """The captioned files of a run, encoded once into the token cache, as training and validation loaders.

    The files are listed and split when the module is built (every process, cheap); `prepare_data` (Lightning
    runs it in one process per node, before the others start) encodes what the cache lacks; `setup` loads the
    tokens in every process.

    Args:
        settings: the run's settings (data sources, split, window length, batch size).
        codec: the codec that makes the tokens.
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
            raise ValueError(f"no readable audio files in {settings.data or settings.manifest} "
                             f"(skipped {len(self.skipped)})")
        self.uncaptioned = sum(not self.captions[f.path] for f in {*self.train_files, *self.valid_files})
        self.cache = TokenCache(settings.cache_folder, codec)
        self.cache_stats: CacheStats | None = None  # set in the process that runs prepare_data
        self.too_short: list[str] = []
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
            raise ValueError(f"no audio file is at least one window ({self.settings.segment_seconds} s) long "
                             f"in the {'training' if not train else 'validation'} set")
        s = self.settings
        self.train_set = TokenWindows(*zip(*train, strict=True), self.frames, s.batch_size * BATCHES_PER_EPOCH)
        self.valid_set = TokenWindows(*zip(*valid, strict=True), self.frames, s.valid_examples, random_offsets=False)

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

    def _loader(self, dataset: Dataset, drop_last: bool) -> DataLoader:
        workers = self.settings.num_workers
        return DataLoader(dataset, batch_size=self.settings.batch_size, drop_last=drop_last, num_workers=workers,
                          persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.valid_set, drop_last=False)

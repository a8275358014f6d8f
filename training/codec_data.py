"""Audio data for codec training: fixed-length segments cut from the audio files under a folder.

    data = CodecDataModule(settings)              # scans --data (and --valid-data), splits, checks
    data.train_dataloader()                       # batches [B, C, N], N = segment_seconds * sample_rate

Training segments start at a random file and a random offset (torch's RNG, which the DataLoader seeds per
worker); validation segments are fixed (`random_offsets=False`), so the metrics of two validations compare.

Shape legend: B batch, C audio channels, N samples.
"""

import warnings

import torch
from torch.utils.data import Dataset

from training.audio_files import AudioFile, DataError, read_segment, scan_audio_files, split_files
from training.codec_settings import CodecTrainSettings
from training.run import TrainValidLoaders

BATCHES_PER_EPOCH = 1000  # the training set is endless random segments; an "epoch" is just a count


class AudioSegmentDataset(Dataset):
    """`num_examples` segments of `segment_seconds` from `files`, as [C, N] tensors.

    Args:
        files: readable files (see `scan_audio_files`).
        sample_rate, channels: the model's.
        segment_seconds: segment length.
        num_examples: the dataset length (an "epoch"); random segments are drawn afresh each time.
        random_offsets: draw the file and the offset at random (training). When False, example i is the
            (i // F)-th consecutive segment of file i % F (validation), clamped to the file's end.
        on_duration: draw files in proportion to their duration (random_offsets only); default uniformly.
    """

    def __init__(self, files: list[AudioFile], sample_rate: int, channels: int, segment_seconds: float,
                 num_examples: int, random_offsets: bool = True, on_duration: bool = False):
        if not files:
            raise ValueError("no readable audio files")
        self.files, self.sample_rate, self.channels = list(files), sample_rate, channels
        self.weights = torch.tensor([f.duration for f in self.files], dtype=torch.float64) if on_duration else None
        self.segment_seconds, self.num_examples, self.random_offsets = segment_seconds, num_examples, random_offsets
        self.failed: set[str] = set()  # files that passed the scan but failed to read (warned once each)

    def __len__(self) -> int:
        return self.num_examples

    def _pick(self, index: int) -> tuple[int, float]:
        """(file index, offset in seconds) of example `index`."""
        if self.random_offsets:
            if self.weights is None:
                i = int(torch.randint(len(self.files), ()))
            else:
                i = int(torch.multinomial(self.weights, 1))
            room = max(0.0, self.files[i].duration - self.segment_seconds)
            return i, float(torch.rand(())) * room
        i = index % len(self.files)
        room = max(0.0, self.files[i].duration - self.segment_seconds)
        return i, min((index // len(self.files)) * self.segment_seconds, room)

    def __getitem__(self, index: int) -> torch.Tensor:
        first, offset = self._pick(index)
        for attempt in range(len(self.files)):  # a file that fails to read is replaced by the next one
            file = self.files[(first + attempt) % len(self.files)]
            try:
                return read_segment(file, offset if attempt == 0 else 0.0, self.segment_seconds,
                                    self.sample_rate, self.channels)
            except Exception as err:  # corrupt data behind a valid header
                if file.path not in self.failed:
                    self.failed.add(file.path)
                    warnings.warn(f"cannot read {file.path}, using another file instead: {err}", stacklevel=2)
        raise RuntimeError("none of the audio files could be read")


class CodecDataModule(TrainValidLoaders):
    """The audio files of a run as training and validation loaders of segments.

    The files are listed, split and checked when the module is built, so that a run with no usable data
    stops before it writes anything.

    Args:
        settings: the run's settings (data folders, split, segment length, batch size, the codec's rate).
    Raises:
        DataError: when the training or the validation set has no readable audio file.
    """

    def __init__(self, settings: CodecTrainSettings):
        super().__init__()
        self.settings = settings
        scan = scan_audio_files(settings.data)
        if settings.valid_data:
            valid_scan = scan_audio_files(settings.valid_data)
            self.train_files, self.valid_files = scan.readable, valid_scan.readable
            self.skipped = sorted(set(scan.skipped + valid_scan.skipped))  # the two folders may be the same one
        else:
            self.train_files, self.valid_files = split_files(scan.readable, settings.valid_fraction, settings.seed)
            self.skipped = scan.skipped
        if not self.train_files or not self.valid_files:
            raise DataError(f"no readable audio files (wav, flac, ogg) in {settings.data}"
                             + (f" or {settings.valid_data}" if settings.valid_data else "")
                             + f" (skipped {len(self.skipped)})")
        config = settings.codec_config()
        segment = dict(sample_rate=config.sample_rate, channels=config.channels,
                       segment_seconds=settings.segment_seconds)
        self.train_set = AudioSegmentDataset(self.train_files, num_examples=settings.batch_size * BATCHES_PER_EPOCH,
                                             on_duration=settings.sample_on_duration, **segment)
        self.valid_set = AudioSegmentDataset(self.valid_files, num_examples=settings.valid_examples,
                                             random_offsets=False, **segment)

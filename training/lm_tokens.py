"""The token cache: each audio file is encoded by the codec once, and its codes are kept on disk.

    cache = TokenCache("runs/lm/tokens", codec)
    stats = cache.update(files)          # encodes the files that are new or changed since the last run
    codes = cache.load(files[0].path)    # [K, T] int16, or None if the file has no current tokens

Layout: FOLDER/<codec fingerprint>/index.json and one `<hash of the path>.safetensors` per audio file.
- The fingerprint hashes the codec's config and weights, so another codec (or the same one retrained) gets
  its own subfolder and never reads stale tokens; several codecs can share one cache folder.
- The index maps each audio file's absolute path to its size and modification time when it was encoded; a
  file whose size or time changed is encoded again.
- Token files are safetensors and the index is JSON: reading the cache never runs code. Every file is
  written to a temporary name and renamed, so an interrupted run leaves complete files only, and the index
  is saved every few files so that it keeps the work done.
- A cache damaged anyway (a truncated or foreign token file, an index that is not ours) is repaired: what
  cannot be read is encoded again, with one warning. A token file's name is the hash of its audio path, so an
  index entry naming any other file (`../../etc/passwd`) is not read but encoded again.

Files are encoded whole, in chunks of about 30 s (a multiple of the hop, so the frames line up) to bound
memory: codes [K, ceil(N / hop)], as `EncodecModel.encode` gives for the whole file, up to the chunk seams.

Shape legend: C audio channels, N samples, K codebooks, T frames.
"""

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from encodec import EncodecModel
from training.audio_files import AudioFile, read_segment

CHUNK_SECONDS = 30.0
SAVE_INDEX_EVERY = 50  # files


def codec_fingerprint(codec: EncodecModel) -> str:
    """SHA-256 of the codec's config and every tensor of its state dict (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(json.dumps(asdict(codec.config), sort_keys=True).encode())
    for name, tensor in sorted(codec.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def encode_file(codec: EncodecModel, file: AudioFile, device: torch.device | str = "cpu",
                chunk_seconds: float = CHUNK_SECONDS) -> torch.Tensor:
    """The codes of a whole audio file, read at the codec's rate and channels. Returns [K, T] int64 on CPU."""
    wav = read_segment(file, 0.0, file.duration, codec.sample_rate, codec.channels)  # [C, N]
    N = wav.shape[-1]
    chunk = codec.hop_length * max(1, round(chunk_seconds * codec.frame_rate))
    # Chunk seams at multiples of `chunk`; the last chunk takes the remainder (no tiny tail chunk).
    bounds = [i * chunk for i in range(max(1, N // chunk))] + [N]
    pieces = [codec.encode(wav[None, :, a:b].to(device))[0].cpu() for a, b in zip(bounds, bounds[1:], strict=False)]
    return torch.cat(pieces, dim=-1)  # [K, T]


@dataclass
class CacheStats:
    """What `TokenCache.update` did: files encoded now, files whose tokens were reused, files that failed."""

    encoded: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)


class TokenCache:
    """Codes of audio files under `folder`, for one codec (see the module docstring).

    Args:
        folder: the cache folder (created on first write).
        codec: the codec that encodes (and identifies) the tokens.
    """

    def __init__(self, folder: str | os.PathLike, codec: EncodecModel):
        self.codec = codec
        self.folder = Path(folder) / codec_fingerprint(codec)[:16]
        self.index_path = self.folder / "index.json"
        self.dtype = torch.int16 if codec.cardinality <= torch.iinfo(torch.int16).max else torch.int32

    @staticmethod
    def key(path: str | os.PathLike) -> str:
        return str(Path(path).resolve())

    @staticmethod
    def token_name(key: str) -> str:
        """The token file of an audio file: a hash of its absolute path (the only name the cache ever reads)."""
        return hashlib.sha1(key.encode()).hexdigest()[:24] + ".safetensors"

    def read_index(self) -> dict[str, dict]:
        """The index's well-formed entries, by absolute audio path; {} when there is no index or it is not ours."""
        index, _ = self._read_index()
        return index

    def _read_index(self) -> tuple[dict[str, dict], int]:
        """(the well-formed entries, the number of entries, or 1 for the whole index, that were not)."""
        if not self.index_path.is_file():
            return {}, 0
        try:
            files = json.loads(self.index_path.read_text(encoding="utf-8"))["files"]
            if not isinstance(files, dict):
                raise TypeError("no file table")
        except (ValueError, KeyError, TypeError, OSError):  # not JSON, not UTF-8, not our layout, unreadable
            return {}, 1
        index = {key: entry for key, entry in files.items() if self._well_formed(key, entry)}
        return index, len(files) - len(index)

    def _well_formed(self, key: str, entry: object) -> bool:
        """Whether an index entry is one this cache wrote: its token file is the one named for its path."""
        return (isinstance(entry, dict) and entry.get("tokens") == self.token_name(key)
                and all(type(entry.get(k)) is int for k in ("size", "mtime_ns", "frames")))

    def _current(self, entry: dict | None, path: str) -> bool:
        """Whether an index entry still describes the file (same size and time) and its tokens exist."""
        if entry is None or not (self.folder / entry["tokens"]).is_file():
            return False
        stat = os.stat(path)
        return (entry["size"], entry["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)

    def _read_tokens(self, entry: dict) -> torch.Tensor | None:
        """The codes [K, T] a (well-formed) entry names, or None when the file is not readable as such."""
        try:
            codes = load_file(self.folder / entry["tokens"])["codes"]  # safetensors: never runs code
        except Exception:  # truncated, not safetensors (a pickle, ...), no "codes": any of them means "encode again"
            return None
        K = self.codec.num_codebooks
        return codes if codes.dtype == self.dtype and codes.shape == (K, entry["frames"]) else None

    def update(self, files: list[AudioFile], device: torch.device | str = "cpu", progress: bool = False
               ) -> CacheStats:
        """Encode the files that have no current, readable tokens yet; a file that fails to read is warned about
        and listed. Unreadable tokens or index entries are encoded again, with one warning."""
        index, bad_entries = self._read_index()
        stats = CacheStats()
        todo, unreadable = [], 0
        for file in files:
            entry = index.get(self.key(file.path))
            if not self._current(entry, file.path):
                todo.append(file)
            elif self._read_tokens(entry) is None:
                todo.append(file)
                unreadable += 1
            else:
                stats.reused += 1
        if bad_entries and not index:
            warnings.warn(f"token cache {self.folder}: index.json could not be read; encoding every file again",
                          stacklevel=2)
        elif bad_entries or unreadable:
            warnings.warn(f"token cache {self.folder}: {bad_entries + unreadable} token files or index entries could "
                          "not be read; encoding those files again", stacklevel=2)
        if not todo:
            return stats
        self.folder.mkdir(parents=True, exist_ok=True)
        self.codec.to(device)
        for i, file in enumerate(tqdm(todo, desc="encoding audio to tokens", unit="file", disable=not progress)):
            stat = os.stat(file.path)  # taken before reading: a change during encoding is seen next time
            try:
                codes = encode_file(self.codec, file, device)  # [K, T]
            except Exception as err:  # corrupt data behind a valid header
                warnings.warn(f"cannot encode {file.path}, leaving it out: {err}", stacklevel=2)
                stats.failed.append(file.path)
                continue
            key = self.key(file.path)
            name = self.token_name(key)
            stored = {"codes": codes.to(self.dtype)}
            _write_atomically(self.folder / name, lambda tmp, stored=stored: save_file(stored, tmp))
            index[key] = {"tokens": name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                          "frames": codes.shape[-1]}
            stats.encoded += 1
            if (i + 1) % SAVE_INDEX_EVERY == 0:
                self._write_index(index)
        self._write_index(index)
        return stats

    def _write_index(self, index: dict[str, dict]) -> None:
        content = json.dumps({"codec": {"sample_rate": self.codec.sample_rate, "frame_rate": self.codec.frame_rate,
                                        "num_codebooks": self.codec.num_codebooks,
                                        "cardinality": self.codec.cardinality},
                              "files": index}, indent=1)
        _write_atomically(self.index_path, lambda tmp: Path(tmp).write_text(content))

    def load(self, path: str | os.PathLike, index: dict[str, dict] | None = None) -> torch.Tensor | None:
        """The codes [K, T] of an audio file as stored (int16; int32 for codebooks of more than 32767 codes),
        or None when the cache has no current, readable tokens for it."""
        index = self.read_index() if index is None else index
        entry = index.get(self.key(path))
        if not self._current(entry, str(path)):
            return None
        return self._read_tokens(entry)  # [K, T]


def _write_atomically(path: Path, write) -> None:
    """`write(temporary path)`, then rename it to `path` (atomic on POSIX)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

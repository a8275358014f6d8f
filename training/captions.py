"""Captions of audio files for language-model training, from sidecar files or a JSONL manifest.

Where the captions come from:
- a folder (`--data DIR`): every wav / flac / ogg file (recursive) with a sidecar of the same name, `song.txt`
  (the whole text) or `song.json` ({"caption": ...} or {"description": ...}, audiocraft's key); `.txt` wins;
- a manifest (`--manifest FILE`): one JSON object per line, {"path": "song.wav", "caption": "..."}, paths
  relative to the manifest's folder and inside it (or absolute); a line without a caption falls back to the
  file's sidecar.
A file without any caption is kept with the empty (null) description: it trains the unconditional model. A
caption must be text: a sidecar that is not UTF-8, a .json that is not an object, or a caption that is not a
string (null included) stops the run with an error naming the file; so does a manifest path that leaves the
manifest's folder ("../../etc/passwd") or names something other than a regular file (/dev/zero, a FIFO).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from training.audio_files import AUDIO_EXTENSIONS, AudioFile, DataError, probe_audio

CAPTION_KEYS = ("caption", "description")


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
    """The caption in `<stem>.txt` or `<stem>.json` beside an audio file, or None.

    Raises:
        DataError: naming the sidecar, when it is not UTF-8 text, not JSON, or holds no string caption.
    """
    text, meta = audio_path.with_suffix(".txt"), audio_path.with_suffix(".json")
    sidecar = text if text.is_file() else meta if meta.is_file() else None
    if sidecar is None:
        return None
    try:
        content = sidecar.read_text(encoding="utf-8")
        return content.strip() if sidecar == text else caption_of(json.loads(content))
    except (ValueError, OSError) as err:  # invalid UTF-8 or JSON (both ValueErrors), unreadable, not a caption
        raise DataError(f"caption file {sidecar}: {err}") from None


def caption_of(entry: object) -> str | None:
    """The "caption" (or else "description") of a JSON object, stripped; None when it has neither.

    Raises:
        ValueError: when `entry` is not a JSON object or its caption is not a string.
    """
    if not isinstance(entry, dict):
        raise ValueError(f'expected a JSON object with a "caption", got {json_type(entry)}')
    for key in CAPTION_KEYS:
        if key not in entry:
            continue
        value = entry[key]
        if not isinstance(value, str):
            raise ValueError(f'"{key}" must be a string, got {json_type(value)}')
        return value.strip()
    return None


def json_type(value: object) -> str:
    """JSON's name for the type of a parsed value ("array", "object", ...)."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


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
            raise DataError(f"{manifest}:{number}: expected a JSON object with a \"path\": {err}") from None
        try:
            caption = caption_of(entry)
            check_listed_path(path, entry["path"], manifest.parent)
        except ValueError as err:
            raise DataError(f"{manifest}:{number}: {err}") from None
        result.add(path, caption)
    return result


def check_listed_path(path: Path, written: str, folder: Path) -> None:
    """Raise ValueError unless a manifest's relative path stays inside the manifest's folder, and what it names,
    when it exists, is a regular file (a device or a FIFO would be read forever)."""
    if not Path(written).is_absolute() and not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"path {written!r} leaves the manifest's folder {folder}: list files inside it, or give "
                         "an absolute path")
    if path.exists() and not path.is_file():
        raise ValueError(f"path {written!r} is not a regular file")


def read_captioned(source: str | Path) -> CaptionedFiles:
    """A folder or a .jsonl manifest."""
    return read_manifest(source) if Path(source).is_file() else scan_captioned_folder(source)

"""Where generate.py writes its clips, and how: output paths, normalisation, audio files and JSON sidecars."""

import json
import math
import tempfile
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot be written (checked before anything is generated)."""


def plan_outputs(output: str, fmt: str | None, prompts: list[str]) -> list[Path]:
    """The audio file of every prompt; checks that they can be written before anything is generated."""
    from inference.audio import audio_format

    path = Path(output)
    if output.endswith(("/", "\\")) or path.is_dir():
        folder, ext = path, f".{fmt or 'wav'}"
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--output {output} ends with '/' but {folder} is a file, not a folder")
        if not folder.is_dir():
            raise OutputError(f"output folder {output} does not exist; create it first")
        names = [slug(p) if len(prompts) == 1 else f"{i}_{slug(p)}" for i, p in enumerate(prompts, 1)]
        outputs = [folder / f"{name}{ext}" for name in names]
    else:
        audio_format(path)  # AudioFileError for anything but .wav and .flac
        if fmt is not None and path.suffix.lower() != f".{fmt}":
            raise OutputError(f"--format {fmt} does not match the output file {output}")
        folder = path.parent
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"cannot write {output}: {folder} is not a folder")
        if not folder.is_dir():
            raise OutputError(f"cannot write {output}: the folder {folder} does not exist")
        outputs = [path] if len(prompts) == 1 else [path.with_stem(f"{path.stem}_{i}") for i in
                                                    range(1, len(prompts) + 1)]
    for out in outputs:
        if out.is_dir():
            raise OutputError(f"cannot write {out}: it is a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OutputError(f"cannot write into {folder}: {err.strerror or err}") from None
    return outputs


def slug(prompt: str, length: int = 48) -> str:
    """A file-name-safe short form of a prompt: "Lo-fi funk!" -> "lo-fi_funk"."""
    kept = "".join(c if c.isalnum() or c in "-" else " " for c in prompt.lower())
    return "_".join(kept.split())[:length].rstrip("_-") or "unconditional"


def save_clip(path: Path, wav, sample_rate: int, settings, record: dict, spectrogram: bool) -> None:
    """Normalise and write one clip [C, N], its JSON sidecar (`record` + what was done), and its spectrogram."""
    from inference.audio import atomic_path, normalize_loudness, normalize_peak, save_spectrogram, write_audio

    result = None
    if settings.normalize == "loudness":
        result = normalize_loudness(wav, sample_rate, settings.target_lufs, settings.peak_db)
    elif settings.normalize == "peak":
        result = normalize_peak(wav, sample_rate, settings.peak_db)
    if result is not None:
        wav = result.wav
        if result.note:
            print(f"{path.name}: {result.note}")
    write_audio(path, wav, sample_rate)
    record["normalization"] = None if result is None else {
        "method": result.method, "gain_db": result.gain_db, "lufs": result.lufs, "true_peak_dbfs": result.peak_db,
        "note": result.note}
    record["files"] = {"audio": path.name}
    if spectrogram:
        title = record["prompt"] or "(unconditional)"
        record["files"]["spectrogram"] = save_spectrogram(path.with_suffix(".png"), wav, sample_rate, title).name
    with atomic_path(path.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(finite(record), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path} (+ {path.with_suffix('.json').name}" + (", spectrogram" if spectrogram else "") + ")")


def finite(value):
    """JSON has no infinities or NaNs: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value

"""Where generate.py writes its clips, and how: output paths, normalisation, audio files and JSON sidecars."""

import json
import math
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot be written (checked before anything is generated)."""


def plan_outputs(output: str, fmt: str | None, prompts: list[str], spectrogram: bool = False) -> list[Path]:
    """The audio file of every prompt. Checks, before anything is generated, that every file of every clip
    (audio, sidecar, spectrogram) can be written; missing folders are created when the clips are written."""
    from inference.audio import audio_format

    path = Path(output)
    if output.endswith(("/", "\\")) or is_folder(path):
        folder, ext = path, f".{fmt or 'wav'}"
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--output {output} ends with '/' but {folder} is a file, not a folder")
        names = [slug(p) if len(prompts) == 1 else f"{i}_{slug(p)}" for i, p in enumerate(prompts, 1)]
        outputs = [folder / f"{name}{ext}" for name in names]
    else:
        audio_format(path)  # AudioFileError for anything but .wav and .flac
        if fmt is not None and path.suffix.lower() != f".{fmt}":
            raise OutputError(f"--format {fmt} does not match the output file {output}")
        folder = path.parent
        outputs = [path] if len(prompts) == 1 else [path.with_stem(f"{path.stem}_{i}") for i in
                                                    range(1, len(prompts) + 1)]
    check_folder(folder)
    for out in outputs:
        for name in clip_files(out, spectrogram).values():
            check_name(name)
    return outputs


def is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, say: check_name says so
        return False


def clip_files(path: Path, spectrogram: bool) -> dict[str, Path]:
    """The files of one clip: its audio, its JSON sidecar, and its spectrogram PNG when asked for."""
    files = {"audio": path, "sidecar": path.with_suffix(".json")}
    if spectrogram:
        files["spectrogram"] = path.with_suffix(".png")
    return files


def check_folder(folder: Path) -> None:
    """OutputError unless `folder` is, or can be created as, a folder we can write into."""
    existing = folder
    while not existing.exists() and existing != existing.parent:  # the nearest existing ancestor
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write into {folder}: {existing} is a file, not a folder")
    for missing in folder.relative_to(existing).parts:
        check_name(existing / missing)
    if existing != folder:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"cannot create the folder {folder}: {existing} is not writable")
        return
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OutputError(f"cannot write into {folder}: {err.strerror or err}") from None


def check_name(path: Path) -> None:
    """OutputError when the name of `path` is too long for the file system, or `path` is a folder."""
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not every system says
        limit = 255
    if len(os.fsencode(path.name)) > limit:
        shown = path.parent / f"{path.name[:20]}...{path.name[-12:]}"
        raise OutputError(f"cannot write {shown}: its name is {len(os.fsencode(path.name))} bytes long, longer than "
                          f"this file system's limit of {limit}")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")


def slug(prompt: str, length: int = 48) -> str:
    """A file-name-safe short form of a prompt: "Lo-fi funk!" -> "lo-fi_funk"."""
    kept = "".join(c if c.isalnum() or c in "-" else " " for c in prompt.lower())
    return "_".join(kept.split())[:length].rstrip("_-") or "unconditional"


def save_clip(path: Path, wav, sample_rate: int, settings, record: dict, spectrogram: bool) -> None:
    """Normalise and write one clip [C, N], its JSON sidecar (`record` + what was done), and its spectrogram.

    The files of a clip are written as one unit (`written_together`): all of them, from this run, or none.
    OutputError (one line) when they cannot be written.
    """
    import soundfile

    from inference.audio import audio_format, normalize_loudness, normalize_peak, write_error, write_pcm16
    from inference.spectrogram import draw_spectrogram

    if not bool(wav.isfinite().all()):  # a broken model: refuse, rather than write a clip of -32768s
        raise OutputError(f"{path.name}: the generated audio holds NaN or infinite samples; nothing was written")
    result = None
    if settings.normalize == "loudness":
        result = normalize_loudness(wav, sample_rate, settings.target_lufs, settings.peak_db)
    elif settings.normalize == "peak":
        result = normalize_peak(wav, sample_rate, settings.peak_db)
    if result is not None:
        wav = result.wav
        if result.note:
            print(f"{path.name}: {result.note}")
    files = clip_files(path, spectrogram)
    record["normalization"] = None if result is None else {
        "method": result.method, "gain_db": result.gain_db, "lufs": result.lufs, "true_peak_dbfs": result.peak_db,
        "limiter_reduction_db": result.limited_db, "note": result.note}
    record["files"] = {kind: file.name for kind, file in files.items() if kind != "sidecar"}
    sidecar = json.dumps(finite(record), indent=2, ensure_ascii=False) + "\n"
    replaced = path.exists()  # every example writes out.wav: a rerun says that it replaced the last one
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with written_together(list(files.values())) as temps:
            tmp = dict(zip(files, temps, strict=True))
            write_pcm16(tmp["audio"], wav, sample_rate, audio_format(path))
            if spectrogram:
                title = record["prompt"] or "(unconditional)"
                draw_spectrogram(wav, sample_rate, title).savefig(tmp["spectrogram"], format="png", dpi=100)
            # a path that is not valid UTF-8 (an undecodable byte) is kept as a \udcXX escape
            Path(tmp["sidecar"]).write_text(sidecar, encoding="utf-8", errors="backslashreplace")
    except (soundfile.LibsndfileError, OSError) as err:
        raise OutputError(write_error(path, err)) from None
    print(f"wrote {path} (+ {files['sidecar'].name}" + (", spectrogram" if spectrogram else "") + ")"
          + (", replacing the file of an earlier run" if replaced else ""))


@contextmanager
def written_together(paths: list[Path]) -> Iterator[list[str]]:
    """`with written_together([a, b]) as (tmp_a, tmp_b):` write the files under temporary names; when the block
    ends they replace `a` and `b` together, or none of them.

    The renames happen under an exclusive lock on the folder (fcntl.flock), with SIGINT and SIGTERM held
    back until they are done, so two runs writing the same names leave one run's files, never a mix. On any
    error or interruption the temporary files are removed, and so is any file already renamed: no clip is
    ever left without its sidecar.
    """
    from inference.audio import temporary_name

    temps: list[str] = []
    try:
        for path in paths:
            temps.append(temporary_name(path))
        yield temps
        with folder_lock(paths[0].parent), signals_held():
            renamed: list[Path] = []
            try:
                for tmp, path in zip(temps, paths, strict=True):
                    os.replace(tmp, path)
                    renamed.append(path)
            except BaseException:
                for path in renamed:
                    path.unlink(missing_ok=True)
                raise
            temps.clear()
    finally:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on a folder (released when the block ends); a no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back during the block, then deliver them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _: received.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in received[:1]:
            signal.raise_signal(sig)


def finite(value):
    """JSON has no infinities or NaNs: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value

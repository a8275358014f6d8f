"""The web app's generation session: the loaded model, one generation at a time, and the clips it wrote.

Nothing here knows about Gradio: `GenerationSession.generate` takes a checked request (frontend/request_checks.py)
and yields the audio as it is made, then the finished clip, written by the command line's own output code
(frontend/outputs.py: normalised, 16-bit WAV, JSON sidecar, spectrogram). The page (frontend/app_page.py) turns
these into what the browser shows.
"""

import json
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from audio.clip import atomic_path, write_error
from frontend import models
from frontend.cli_inputs import resolve_device
from frontend.outputs import OutputError, save_clip, slug
from frontend.request_checks import Request, RequestError
from inference import MusicGen

MAX_CLIPS = 50  # clips kept on the server (all visitors together); older ones are removed first
MAX_AGE_S = 3600.0  # and none is kept longer than an hour
STORE_PREFIX = "musicgen-app-"  # the clip folder: musicgen-app-PID-RANDOM in the temporary directory
CHUNK_SECONDS = 1.0  # audio handed to the player at a time


class Stopped(Exception):  # noqa: N818  (what happened, not an error)
    """Raised inside the decoding loop (its per-step callback) when the visitor pressed Stop."""


@dataclass(frozen=True)
class Clip:
    """A finished clip: its files (WAV, FLAC, spectrogram PNG, JSON sidecar) and what the sidecar holds."""

    wav: Path
    flac: Path
    spectrogram: Path
    sidecar: Path
    record: dict


class ClipStore:
    """The app's clips, in a private temporary folder: at most `max_clips`, none older than `max_age_s` seconds,
    all removed by `close`. The folder's name holds the process id, so that the next app to start removes the
    folders of apps that could not (killed with SIGKILL, or the machine lost power): `remove_orphans`."""

    def __init__(self, max_clips: int = MAX_CLIPS, max_age_s: float = MAX_AGE_S) -> None:
        remove_orphans(Path(tempfile.gettempdir()))
        self.folder = Path(tempfile.mkdtemp(prefix=f"{STORE_PREFIX}{os.getpid()}-"))
        self.max_clips, self.max_age_s = max_clips, max_age_s
        self.count = 0
        self.lock = threading.Lock()

    def new_path(self, prompt: str, seed: int) -> Path:
        """The WAV path of the next clip (its other files share the stem), after removing what is over the bounds."""
        with self.lock:
            self.count += 1
            self.prune(keep=self.max_clips - 1)
            return self.folder / f"{self.count:04d}_{slug(prompt, 32)}_seed{seed}.wav"

    def prune(self, keep: int) -> None:
        """Remove the clips older than max_age_s, then the oldest until `keep` are left (every file of each)."""
        stems: dict[str, float] = {}
        for file in self.folder.iterdir():
            stem = file.name.split(".")[0]
            stems[stem] = min(stems.get(stem, float("inf")), file.stat().st_mtime)
        by_age = sorted(stems, key=stems.__getitem__, reverse=True)  # newest first
        now = time.time()
        for i, stem in enumerate(by_age):
            if i >= keep or now - stems[stem] > self.max_age_s:
                for file in self.folder.glob(f"{stem}.*"):
                    file.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_orphans(root: Path) -> None:
    """Remove the clip folders under `root` whose app process is gone. Only on POSIX systems, where a process can
    be asked whether it exists (on Windows `os.kill` would end it)."""
    for folder in root.glob(f"{STORE_PREFIX}*-*") if os.name == "posix" else ():
        pid = folder.name[len(STORE_PREFIX):].split("-")[0]
        if pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def process_exists(pid: int) -> bool:
    """Whether process `pid` exists (POSIX: signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class GenerationSession:
    """The model a page generates with, one generation at a time: loaded once in the CLI's default form (int8 on a
    CPU, inference.speed.default_quantize), the other form (exact float32, or int8) a second LM loaded on first
    use, sharing the first's text encoder and codec (T5-base and the 32 kHz codec are about 0.7 GB in float32).

    Args:
        model: `--model` of app.py (None: the CLI's default, or the bundled demo model offline).
        store: where the clips are written.
        thread_policy: the CPU thread setting, recorded in every sidecar.
    """

    def __init__(self, model: str | None, store: ClipStore, thread_policy: str = "") -> None:
        self.requested, self.store, self.thread_policy = model, store, thread_policy
        self.device, _, self.default = resolve_device("auto", "auto", "auto")  # default: "int8" on a CPU
        self.models: dict[str, MusicGen] = {}  # by quantize: "none", "int8"
        self.source, self.fallback_from = "", None
        self.load(self.default)
        self.lock = threading.Lock()  # one generation at a time (the page's queue also sends one at a time)
        self.stops: dict[str, threading.Event] = {}

    def load(self, quantize: str):
        """The model with `quantize` ("none" or "int8") weights, loaded on first use."""
        if quantize not in self.models:
            device, dtype, quantize = resolve_device(self.device, "auto", quantize)
            mg, source = models.load_model(self.source or self.requested, device, dtype, quantize, cuda_graph=False)
            if not self.source:  # the first load decides the model, the offline fallback included
                self.source = source
                fell_back = self.requested is None and source == str(models.DEMO_FOLDER)
                self.fallback_from = models.DEFAULT_MODEL if fell_back else None
            else:  # the other form differs in its LM only: it shares the first's text encoder and codec
                first = self.mg
                mg = MusicGen(mg.lm, first.codec, first.text, max_duration=first.max_duration,
                              extend_stride=first.extend_stride)
            self.models[quantize] = mg
        return self.models[quantize]

    @property
    def mg(self) -> "MusicGen":
        """The model as loaded first, what the page describes (its other form is a second LM, loaded on first use,
        with the same text encoder and codec)."""
        return self.models[self.default]

    @property
    def is_melody(self) -> bool:
        return self.mg.lm.config.num_chroma is not None

    def stop(self, visitor: str) -> bool:
        """Ask the generation of `visitor` (a browser session) to end after its current step; False if none runs."""
        event = self.stops.get(visitor)
        if event is not None:
            event.set()
        return event is not None

    def generate(self, request: Request, int8: bool | None, visitor: str) -> Iterator[torch.Tensor | Clip]:
        """Yield the audio [C, n] as it is made (before normalisation), then the finished Clip; int8 None: the
        default form.

        RequestError when the clip does not fit in memory; Stopped when `stop(visitor)` was called.
        """
        stop = threading.Event()
        with self.lock:
            self.stops[visitor] = stop
            try:
                quantize = self.default if int8 is None else "int8" if int8 else "none"
                yield from self._generate(request, quantize, stop)
            finally:
                self.stops.pop(visitor, None)

    def _generate(self, request: Request, quantize: str, stop: threading.Event) -> Iterator[torch.Tensor | Clip]:
        mg = self.load(quantize)
        check_memory(mg, request)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        settings = self.settings(request, quantize, seed)

        def on_step(done: int, total: int) -> None:
            if stop.is_set():
                raise Stopped()

        started = time.perf_counter()
        first_audio, pieces = None, []
        stream = mg.generate_stream([request.prompt or None], seed=seed, chunk_seconds=CHUNK_SECONDS, callback=on_step,
                                    **stream_inputs(request))
        try:
            for chunk in stream:
                if chunk.shape[-1] == 0:
                    continue
                first_audio = first_audio or time.perf_counter() - started
                pieces.append(chunk[0].cpu())  # [C, n]
                yield pieces[-1]
        except torch.OutOfMemoryError:
            raise RequestError("out of GPU memory: choose a shorter duration") from None
        seconds = time.perf_counter() - started
        wav = torch.cat(pieces, dim=-1)  # [C, N]: what generate() returns for the same request
        record = self.record(request, settings, mg.sample_rate, wav, seconds, first_audio)
        yield self.write(wav, mg.sample_rate, settings, record)

    def settings(self, request: Request, quantize: str, seed: int) -> "models.Settings":
        device, dtype, quantize = resolve_device(self.device, "auto", quantize)
        return models.Settings(
            model=self.source, device=device, dtype=dtype, quantize=quantize, cuda_graph=False,
            threads=self.thread_policy, duration=request.duration, seed=seed, seed_was_random=request.seed is None,
            sampling=request.sampling, normalize="loudness", target_lufs=-14.0, peak_db=-1.0,
            prompt_audio=request.prompt_audio_name, melody=request.melody_name)

    def record(self, request: Request, settings, sample_rate: int, wav: torch.Tensor, seconds: float,
               first_audio: float | None) -> dict:
        """The sidecar of a clip: the CLI's fields, with the app as the front end."""
        audio_seconds = wav.shape[-1] / sample_rate
        return {"prompt": request.prompt, "unconditional": request.prompt == "", **models.flat_settings(settings),
                "sample_rate": sample_rate, "channels": wav.shape[0], "fallback_from": self.fallback_from,
                "audio_seconds": audio_seconds, "seconds_taken": {"generate": seconds, "first_audio": first_audio},
                "real_time_factor": seconds / audio_seconds, "torch": torch.__version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "front_end": "app.py"}

    def write(self, wav: torch.Tensor, sample_rate: int, settings, record: dict) -> Clip:
        """Write the clip as the CLI does (normalised WAV, sidecar, spectrogram), plus the same samples as FLAC
        (each file written under a temporary name and renamed into place). OutputError (one line) on failure."""
        import soundfile

        path = self.store.new_path(record["prompt"] or "unconditional", settings.seed)
        save_clip(path, wav, sample_rate, settings, record, spectrogram=True)
        flac, sidecar = path.with_suffix(".flac"), path.with_suffix(".json")
        try:
            samples, rate = soundfile.read(path, dtype="int16", always_2d=True)  # [N, C]: the WAV's exact samples
            with atomic_path(flac) as tmp:
                soundfile.write(tmp, samples, rate, subtype="PCM_16", format="FLAC")
            record = json.loads(sidecar.read_text(encoding="utf-8"))
            record["files"]["flac"] = flac.name
            with atomic_path(sidecar) as tmp:
                Path(tmp).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except (soundfile.LibsndfileError, OSError) as err:
            raise OutputError(write_error(flac, err)) from None
        return Clip(path, flac, path.with_suffix(".png"), sidecar, record)


def stream_inputs(request: Request) -> dict:
    """The keywords of `MusicGen.generate_stream` for a request: duration, sampling, audio prompt or melody."""
    sampling = request.sampling
    inputs = dict(duration=request.duration, use_sampling=sampling.use_sampling, top_k=sampling.top_k,
                  top_p=sampling.top_p, temperature=sampling.temperature, cfg_coef=sampling.cfg_coef)
    if request.prompt_audio is not None:
        inputs.update(prompt_wav=request.prompt_audio[0], prompt_sample_rate=request.prompt_audio[1])
    if request.melody is not None:
        inputs.update(melody_wavs=[request.melody[0]], melody_sample_rate=request.melody[1])
    return inputs


def check_memory(mg, request: Request) -> None:
    """RequestError when one clip of this request does not fit in the free memory (the CLI's memory plan)."""
    from inference.memory import plan_memory, size

    num_frames = max(1, math.floor(request.duration * mg.frame_rate + 1e-6))
    prompt_frames = 0
    if request.prompt_audio is not None:
        wav, rate = request.prompt_audio
        prompt_frames = math.ceil(wav.shape[-1] / rate * mg.frame_rate)
    plan = plan_memory(mg, num_frames, request.sampling.guided, prompt_frames)
    if not plan.fits:
        raise RequestError(f"a {request.duration:g} s clip needs about {size(plan.per_prompt + plan.saving)}, more "
                           f"than the {size(plan.available)} free: choose a shorter duration")


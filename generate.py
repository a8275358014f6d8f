"""Generate music from text with MusicGen: the command line.

    python generate.py "An uplifting jazz song that makes your head shake" --duration 10 --output out.wav
    python generate.py "lo-fi funk" "80s pop" --model medium --seed 42 --output songs/
    python generate.py "" --duration 5                                 # unconditional
    python generate.py "jazz piano" --prompt-audio intro.wav --duration 20   # continue a piece
    python generate.py --prompts-file prompts.txt --output clips/      # many prompts, in batches

Every clip is written next to a JSON sidecar holding its prompt, model, seed and every setting, so that
any result can be generated again. Many prompts are generated in batches of a size chosen from the free memory
(inference/memory.py), each batch written before the next starts; batch b (from 0) samples with the seed
`seed + b`. `python generate.py --help` lists the options.
"""

import threads  # noqa: I001  (first: the CPU thread policy must be set before torch loads)

import argparse
import io
import math
import secrets
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from inference.cli_inputs import (
    MAX_SEED,
    CliError,
    check_numbers,
    read_melody,
    read_prompt_audio,
    read_prompts,
    resolve_device,
    sampling_settings,
)
from inference.memory import MAX_BATCH
from inference.outputs import plan_outputs, save_clip

if TYPE_CHECKING:
    from lm.sampling import SamplingParams

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL = "facebook/musicgen-small"
DEMO_FOLDER = ROOT / "checkpoints" / "demo"  # the small bundled model (`--model demo`, offline fallback)
MAX_MESSAGE = 400  # characters of an error message shown
DENOISE_STRENGTH = 0.5  # --denoise: gated bins at -6 dB (inference.denoise.DEFAULT_STRENGTH, without importing torch)
DTYPES = ("auto", "float32", "float16", "bfloat16")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the program is, so that it cleans up as after Ctrl-C (no half-written files)."""


def on_sigterm(signum, frame):
    raise Terminated()


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one run (recorded in every sidecar)."""

    model: str
    device: str
    dtype: str
    quantize: str
    cuda_graph: bool
    threads: str
    duration: float
    seed: int
    seed_was_random: bool
    sampling: "SamplingParams"
    normalize: str
    target_lufs: float
    peak_db: float
    prompt_audio: str | None
    melody: str | None = None
    denoise: float = 0.0  # the spectral gate's strength (inference/denoise.py); 0: off


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(description="Generate music from text prompts with MusicGen.")
    parser.add_argument("prompts", nargs="*", metavar="PROMPT",
                        help='text descriptions, one clip each, generated together in batches ("" = unconditional)')
    parser.add_argument("--prompts-file", type=Path, metavar="FILE",
                        help="a text file with one prompt per line (blank lines skipped)")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="prompts generated together (default: as many as fit in the free memory, at most "
                             f"{MAX_BATCH}); a clip depends on its batch, so to reproduce one exactly pass the "
                             "batch size its sidecar records")
    parser.add_argument("--model", metavar="NAME|REPO|FOLDER",
                        help="short name (small, medium, large, melody, stereo-small, ...), Hugging Face repo id, "
                             f"local folder, or 'demo' (default: {DEFAULT_MODEL})")
    parser.add_argument("--duration", type=float, default=10.0, metavar="SECONDS",
                        help="seconds of audio per clip (default: 10)")
    parser.add_argument("--output", default="out.wav", metavar="PATH",
                        help="a .wav or .flac file (several prompts: PATH_1.wav, PATH_2.wav, ...) or a folder "
                             "ending in '/', created when missing (default: out.wav)")
    parser.add_argument("--format", choices=("wav", "flac"), help="format of the files written into a folder "
                                                                  "(default: wav)")
    parser.add_argument("--seed", type=int, help="random seed in [0, 2**63 - 1] (default: a random one, printed and "
                                                 "recorded)")
    parser.add_argument("--top-k", type=int, default=250, metavar="K",
                        help="sample among the K likeliest tokens; 0 keeps all (default: 250)")
    parser.add_argument("--top-p", type=float, default=0.0, metavar="P",
                        help="nucleus sampling probability mass; 0 turns it off (default: 0)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default: 1)")
    parser.add_argument("--cfg", type=float, default=3.0, metavar="COEF",
                        help="classifier-free guidance strength; 1 turns it off (default: 3)")
    parser.add_argument("--greedy", action="store_true", help="always take the likeliest token (no sampling)")
    parser.add_argument("--prompt-audio", type=Path, metavar="FILE",
                        help="an audio file to continue; --duration counts it")
    parser.add_argument("--melody", type=Path, metavar="FILE",
                        help="an audio file whose melody (chromagram) to follow; melody models only")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when available (default: auto)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="the LM's dtype; auto: float16 on CUDA, bfloat16 with int8 weights (the CPU default), "
                             "else float32. T5 and the codec stay float32")
    parser.add_argument("--quantize", choices=("auto", "none", "int8"), default="auto",
                        help="int8: the LM's weights as int8 (a quarter of the bytes; 1.7-4.5x faster on a CPU, less "
                             "memory on a GPU); none: exact float32 on a CPU; auto: int8 on a CPU unless --dtype is "
                             "given, none on CUDA (default: auto)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="record each window's decoding step in a CUDA graph and replay it (CUDA only)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads (default: the cores not busy with other work)")
    parser.add_argument("--normalize", choices=("loudness", "peak", "none"), default="loudness",
                        help="loudness: to --lufs, a true-peak limiter keeping the peaks under -1 dBFS; peak: true "
                             "peak to -1 dBFS (default: loudness)")
    parser.add_argument("--lufs", type=float, default=-14.0, help="loudness target (default: -14)")
    parser.add_argument("--denoise", action="store_true",
                        help="turn down the codec's broadband hiss before normalising (a spectral gate at strength "
                             "0.5; off by default: on the demo codec it costs more than it gains, see the README)")
    parser.add_argument("--spectrogram", action="store_true", help="also draw a log-mel spectrogram PNG per clip")
    return parser


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print as \udcXX, not a crash
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_intermixed_args(argv)
    except SystemExit as done:  # --help, or a malformed command line (already reported in one line)
        return int(done.code or 0)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    show_warning = warnings.showwarning
    warnings.showwarning = print_note  # what the library warns about (a prompt longer than a window) is one line
    try:
        return run(args, argv if argv is not None else sys.argv[1:])
    except CliError as err:
        return fail(str(err))
    except (ValueError, OSError) as err:  # CheckpointError, AudioFileError, I/O errors
        return fail(str(err) or type(err).__name__)
    except Terminated:
        return fail("terminated (SIGTERM): nothing half-written was left", code=128 + signal.SIGTERM)
    except KeyboardInterrupt:
        return fail("interrupted: nothing half-written was left", code=128 + signal.SIGINT)
    finally:
        warnings.showwarning = show_warning
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def print_note(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"note: {message}", flush=True)


def fail(message: str, code: int = 1) -> int:
    """Report an error as one line on stderr (long ones, like lists of mismatched tensors, cut short)."""
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]} ... ({len(message) - MAX_MESSAGE} more characters)"
    print(f"error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace, argv: list[str]) -> int:
    # Everything that can be checked without the model is checked first: a typo should not cost a download.
    prompts = read_prompts(args.prompts, args.prompts_file)
    check_numbers(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    sampling = sampling_settings(args)
    device, dtype, quantize = resolve_device(args.device, args.dtype, args.quantize)
    if args.cuda_graph and device != "cuda":
        raise CliError("--cuda-graph needs a CUDA device (--device cuda)")
    outputs = plan_outputs(args.output, args.format, prompts, args.spectrogram)
    if args.melody and args.prompt_audio:
        raise CliError("--melody and --prompt-audio cannot be combined")
    thread_policy = threads.apply_threads(args.threads)
    prompt_audio = read_prompt_audio(args.prompt_audio, args.duration) if args.prompt_audio else None
    model, fallback_from = args.model, None
    if model is None and default_model_absent() and (DEMO_FOLDER / "config.json").is_file():
        print(f"offline: {DEFAULT_MODEL} cannot be downloaded and is not cached, so this run uses the bundled demo "
              f"model ({DEMO_FOLDER}), a toy trained on synthetic music")
        model, fallback_from = "demo", DEFAULT_MODEL
    melody = read_melody(args.melody, model or DEFAULT_MODEL, args.duration) if args.melody else None
    from inference.loading import resolve_source

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    settings = Settings(
        model=str(DEMO_FOLDER) if model == "demo" else resolve_source(model or DEFAULT_MODEL),
        device=device, dtype=dtype, quantize=quantize, cuda_graph=args.cuda_graph, threads=thread_policy,
        duration=args.duration,
        seed=seed, seed_was_random=args.seed is None, sampling=sampling, normalize=args.normalize,
        target_lufs=args.lufs, peak_db=-1.0, prompt_audio=str(args.prompt_audio) if args.prompt_audio else None,
        melody=str(args.melody) if args.melody else None, denoise=DENOISE_STRENGTH if args.denoise else 0.0)
    print_settings(settings, prompts, outputs)

    started = time.perf_counter()
    mg, source = load_model(model, device, dtype, quantize, args.cuda_graph)
    load_seconds = time.perf_counter() - started
    if model is None and source != settings.model:  # the default model turned out to be absent while loading
        fallback_from = settings.model
    if source != settings.model:  # --model demo, or the offline fallback: record what really ran
        settings = replace(settings, model=source)
    layout = "stereo" if mg.audio_channels == 2 else "mono"
    print(f"loaded {settings.model} in {load_seconds:.1f} s ({mg.sample_rate} Hz, {layout})")

    import torch

    batch_size = choose_batch_size(mg, args.batch_size, len(prompts), prompt_audio, settings)
    total_seconds, clip_seconds = 0.0, 0.0
    for b, start in enumerate(range(0, len(prompts), batch_size)):  # each batch written before the next starts
        batch = prompts[start : start + batch_size]
        batch_seed = (settings.seed + b) % (MAX_SEED + 1)
        started = time.perf_counter()
        try:
            wav = generate(mg, batch, prompt_audio, melody, settings, batch_seed)  # [B, C, N]
        except torch.OutOfMemoryError:
            raise CliError("out of GPU memory: try a shorter --duration, a smaller --batch-size, or a smaller "
                           "--model") from None
        seconds = time.perf_counter() - started
        total_seconds += seconds
        clip_seconds = wav.shape[-1] / mg.sample_rate
        run_record = {**flat_settings(settings), "sample_rate": mg.sample_rate, "channels": wav.shape[1],
                      "fallback_from": fallback_from,  # the default model that was absent, when the demo ran
                      "audio_seconds": clip_seconds, "seconds_taken": {"load": load_seconds, "generate": seconds},
                      "real_time_factor": seconds / (clip_seconds * len(batch)), "torch": torch.__version__,
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "command": ["generate.py", *argv]}
        for i, (prompt, path) in enumerate(zip(batch, outputs[start : start + batch_size], strict=True)):
            record = {"prompt": prompt, "unconditional": prompt == "", "index": start + i + 1, "batch": b + 1,
                      "batch_size": batch_size, "batch_seed": batch_seed, **run_record}
            clip = wav[i].cpu()  # [C, N]
            if settings.denoise:
                from inference.denoise import denoise

                clip = denoise(clip, mg.sample_rate, settings.denoise)
            save_clip(path, clip, mg.sample_rate, settings, record, args.spectrogram)
        del wav
    rtf = total_seconds / (clip_seconds * len(prompts))
    print(f"generated {len(prompts)} x {clip_seconds:.2f} s of audio in {total_seconds:.1f} s: real-time factor "
          f"{rtf:.2f} (seconds of compute per second of audio, all clips counted; below 1 is faster than real time)")
    return 0


def choose_batch_size(mg, forced: int | None, num_prompts: int, prompt_audio, s: Settings) -> int:
    """Prompts per batch: --batch-size, or as many as the free memory holds (inference/memory.py); printed.
    A clip that cannot fit even alone is refused here, before any generation, in one line."""
    from inference.memory import plan_memory, size

    num_frames = max(1, math.floor(s.duration * mg.frame_rate + 1e-6))
    prompt_frames = 0
    if prompt_audio is not None:
        wav, sample_rate = prompt_audio
        prompt_frames = math.ceil(wav.shape[-1] / sample_rate * mg.frame_rate)
    plan = plan_memory(mg, num_frames, s.sampling.guided, prompt_frames)
    where = f"available on {mg.device}" if mg.device.type == "cuda" else "of RAM available"
    if not plan.fits:
        raise CliError(f"a {s.duration:g} s clip needs about {size(plan.per_prompt + plan.saving)} (KV cache "
                       f"{size(plan.kv_cache)}, audio {size(plan.audio)}, codec decode {size(plan.codec)}, saving "
                       f"{size(plan.saving)}), more than the {size(plan.available)} {where}: choose a shorter "
                       "--duration")
    batch_size = min(forced or plan.batch_size, num_prompts)
    if forced is not None and batch_size * plan.per_prompt + plan.saving > plan.available:
        raise CliError(f"--batch-size {forced} needs about {size(batch_size * plan.per_prompt + plan.saving)}, "
                       f"more than the {size(plan.available)} {where}: choose a smaller --batch-size")
    batches = -(-num_prompts // batch_size)
    how = "--batch-size" if forced else f"about {size(plan.per_prompt)} per prompt, {size(plan.available)} {where}"
    plural = "es" if batches > 1 else ""
    print(f"batch      {batch_size} prompt{'s' if batch_size > 1 else ''} at a time, {batches} batch{plural} ({how})")
    return batch_size


def flat_settings(settings: Settings) -> dict:
    """The settings as the sidecar records them: one level, the sampling fields beside the others."""
    record = asdict(settings)
    record.update(record.pop("sampling"))
    return record


def print_settings(s: Settings, prompts: list[str], outputs: list[Path]) -> None:
    p = s.sampling
    sampling = "greedy" if not p.use_sampling else f"top-k {p.top_k}, top-p {p.top_p:g}, temperature {p.temperature:g}"
    normalize = {"loudness": f"loudness {s.target_lufs:g} LUFS, true peak <= {s.peak_db:g} dBFS",
                 "peak": f"true peak to {s.peak_db:g} dBFS", "none": "none"}[s.normalize]
    lm = f"int8 weights, {s.dtype} activations" if s.quantize == "int8" else s.dtype
    if s.device == "cpu":  # the CPU's fast path is the default: say which path runs and how to change it
        lm += " (the CPU default; --quantize none: exact float32)" if s.quantize == "int8" else \
            " (--quantize int8: faster)"
    graph = ", CUDA graph" if s.cuda_graph else ""
    rows = [("model", s.model), ("device", f"{s.device}, LM in {lm}{graph} (text encoder and codec float32)"),
            ("threads", s.threads),
            ("duration", f"{s.duration:g} s" + (f", continuing {s.prompt_audio}" if s.prompt_audio else "")),
            ("sampling", f"{sampling}, cfg {p.cfg_coef:g}"),
            ("seed", f"{s.seed}" + (" (random)" if s.seed_was_random else "")), ("normalize", normalize),
            ("denoise", f"spectral gate, strength {s.denoise:g}" if s.denoise else "off")]
    for name, value in rows:
        print(f"{name:<10} {value}")
    for i, (prompt, out) in enumerate(zip(prompts, outputs, strict=True), 1):
        print(f"{i:>4}. {out}  <-  " + (f'"{prompt}"' if prompt else "(empty prompt: unconditional generation)"))


def default_model_absent() -> bool:
    """Whether the default model can be neither found in the cache nor downloaded (asked before the settings
    are printed, so that they name the model that will run)."""
    from huggingface_hub import try_to_load_from_cache

    from checkpoint_io import hub_reachable

    cached = any(isinstance(try_to_load_from_cache(DEFAULT_MODEL, name), str)
                 for name in ("config.json", "state_dict.bin"))
    return not cached and not hub_reachable()


def load_model(model: str | None, device: str, dtype: str, quantize: str, cuda_graph: bool):
    """(MusicGen, the source it was loaded from). Without --model, the default model; when that can be neither
    downloaded nor found in the cache, the bundled demo model, said in one line."""
    import torch

    from checkpoint_io import ModelNotFoundError
    from inference import MusicGen
    from inference.loading import resolve_source

    def load(source: str):
        options = dict(dtype=getattr(torch, dtype), quantize=None if quantize == "none" else quantize)
        return MusicGen.from_pretrained(source, device=device, cuda_graph=cuda_graph, **options), source

    source = model or DEFAULT_MODEL
    if source == "demo":
        if not (DEMO_FOLDER / "config.json").is_file():
            raise CliError(f"the bundled demo model is missing from {DEMO_FOLDER} (rebuild it with "
                           "`python -m training.demo`); or use --model small (downloads facebook/musicgen-small)")
        source = str(DEMO_FOLDER)
    source = resolve_source(source)  # `--model small` records facebook/musicgen-small, as the default does
    try:
        return load(source)
    except (ValueError, OSError, KeyError) as err:
        if model is None and isinstance(err, ModelNotFoundError):  # absent, not broken: say why otherwise
            if (DEMO_FOLDER / "config.json").is_file():
                print(f"offline: {DEFAULT_MODEL} cannot be downloaded and is not cached, so this run uses the "
                      f"bundled demo model ({DEMO_FOLDER}), a toy trained on synthetic music")
                return load(str(DEMO_FOLDER))
            raise CliError(f"cannot get the default model {DEFAULT_MODEL} (no network, not cached) and the bundled "
                           f"demo model is missing from {DEMO_FOLDER}. Download the weights once with `hf download "
                           f"{DEFAULT_MODEL}` on a machine with network access, or pass --model FOLDER") from None
        detail = str(err) if not isinstance(err, KeyError) else f"its config.json lacks the section {err}"
        raise CliError(f"cannot load the model {source}: {detail}") from None


def generate(mg, prompts: list[str], prompt_audio, melody, s: Settings, seed: int):
    """Audio [B, C, N] for every prompt of one batch, sampled with `seed`, continuing `prompt_audio` or following
    `melody` ((wav [C, N], rate) pairs) when given."""
    descriptions = [p or None for p in prompts]
    sampling = dict(seed=seed, progress=True, **asdict(s.sampling))  # the one SamplingParams, as keywords
    if melody is not None:
        wav, sample_rate = melody
        return mg.generate_with_chroma(descriptions, [wav] * len(prompts), sample_rate, duration=s.duration,
                                       **sampling)
    if prompt_audio is None:
        return mg.generate(descriptions, duration=s.duration, **sampling)
    wav, sample_rate = prompt_audio
    batch = wav[None].expand(len(prompts), -1, -1)  # [B, C, N]: the same opening for every prompt
    return mg.generate_continuation(batch, sample_rate, descriptions=descriptions, duration=s.duration, **sampling)


if __name__ == "__main__":
    sys.exit(main())

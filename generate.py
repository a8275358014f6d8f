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
import contextlib
import difflib
import io
import os
import math
import secrets
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from inference.checks import MAX_SEED
from frontend.cli_inputs import (
    fail,
    MAX_PROMPTS_FILE,
    CliError,
    check_numbers,
    read_melody,
    read_prompt_audio,
    read_prompts,
    resolve_device,
    sampling_settings,
)
from inference.memory import MAX_BATCH
from frontend import models
from frontend.models import DEFAULT_MODEL, Settings, default_model_absent, flat_settings, load_model
from frontend.outputs import plan_outputs, save_clip

DENOISE_STRENGTH = 0.5  # --denoise: gated bins at -6 dB (audio.denoise.DEFAULT_STRENGTH, without importing torch)
TERMINATED = "terminated (SIGTERM): nothing half-written was left"
DTYPES = ("auto", "float32", "float16", "bfloat16")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the program is, so that it cleans up as after Ctrl-C (no half-written files)."""


class SigtermHandler:
    """Raises `Terminated` while the run is in progress. Once it has ended (clips written, or an error being
    reported) a SIGTERM is only remembered: raised then, it would escape main() as a traceback."""

    def __init__(self):
        self.running, self.received = True, False

    def __call__(self, signum, frame):
        self.received = True
        if self.running:
            raise Terminated()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(description="Generate music from text prompts with MusicGen.")
    parser.add_argument("prompts", nargs="*", metavar="PROMPT",
                        help='text descriptions, one clip each, generated together in batches ("" = unconditional)')
    parser.add_argument("--prompts-file", type=Path, metavar="FILE",
                        help="a text file with one prompt per line (blank lines skipped), at most "
                             f"{MAX_PROMPTS_FILE // 2**20} MB")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help="prompts generated together (default: as many as fit in the free memory, at most "
                             f"{MAX_BATCH}); a clip depends on its batch, so to reproduce one exactly pass the "
                             "batch size its sidecar records")
    parser.add_argument("--model", metavar="NAME|REPO|FOLDER",
                        help="short name (small, medium, large, melody, stereo-small, ...), Hugging Face repo id, "
                             f"local folder, or 'demo' (default: {DEFAULT_MODEL})")
    parser.add_argument("--duration", "--durability_seconds", type=float, default=10.0, metavar="SECONDS",
                        help="seconds of audio per clip (default: 10); --durability_seconds is the same flag, as "
                             "the research script this project grew from spells it")
    parser.add_argument("--output", default="out.wav", metavar="PATH",
                        help="a .wav or .flac file (several prompts: PATH_1.wav, PATH_2.wav, ...) or a folder "
                             "ending in '/', created when missing; '-' streams one clip as a WAV to standard output "
                             "while it is made (at the model's level, true peak under -1 dBFS: loudness "
                             "normalisation needs the whole clip) (default: out.wav)")
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
                        help="int8: the LM's weights as int8 (a quarter of the bytes; 1.6-4.5x faster on a CPU, less "
                             "memory on a GPU); none: exact float32 on a CPU; auto: int8 on a CPU unless --dtype is "
                             "given, none on CUDA (default: auto)")
    parser.add_argument("--lora", type=Path, metavar="ADAPTER",
                        help="a LoRA adapter folder (train.py lm --lora-rank, or any PEFT LoRA of this model) merged "
                             "into the model's weights as it loads")
    parser.add_argument("--lora-scale", type=float, default=1.0, metavar="S",
                        help="multiply the adapter's change (0: the model without it) (default: 1)")
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
        self.exit(2, f"error: {message}{self.suggestion(message)} (see --help)\n")

    def suggestion(self, message: str) -> str:
        """", did you mean --duration?" for the first unknown flag that is close to one of ours; else ""."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        for word in message.split(":", 1)[1].split():
            flag = word.split("=", 1)[0]
            if flag.startswith("--") and (close := difflib.get_close_matches(flag, self._option_string_actions, 1)):
                return f"; did you mean {self._option_string_actions[close[0]].option_strings[0]}?"  # not an alias
        return ""


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print as \udcXX, not a crash
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_intermixed_args(argv)
    except SystemExit as done:  # --help, or a malformed command line (already reported in one line)
        return int(done.code or 0)
    in_main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = SigtermHandler()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    show_warning = warnings.showwarning
    warnings.showwarning = print_note  # what the library warns about (a prompt longer than a window) is one line
    audio_out = sys.stdout.buffer if args.output == "-" else None  # --output -: the WAV to stdout, text to stderr
    try:
        code = outcome(args, argv if argv is not None else sys.argv[1:], audio_out)
        on_sigterm.running = False
    except Terminated:  # it came while an outcome was being reported
        on_sigterm.running = False
        code = fail(TERMINATED, code=128 + signal.SIGTERM)
    finally:
        on_sigterm.running = False
        warnings.showwarning = show_warning
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    if on_sigterm.received and code != 128 + signal.SIGTERM:  # it came after the run had ended
        code = fail(TERMINATED, code=128 + signal.SIGTERM)
    return code


def outcome(args: argparse.Namespace, argv: list[str], audio_out=None) -> int:
    """The exit code of the run; every error, Ctrl-C and SIGTERM reported in one line."""
    try:
        with contextlib.redirect_stdout(sys.stderr if audio_out is not None else sys.stdout):
            return run(args, argv, audio_out)
    except CliError as err:
        return fail(str(err))
    except (ValueError, OSError) as err:  # CheckpointError, AudioFileError, I/O errors
        return fail(str(err) or type(err).__name__)
    except Terminated:
        return fail(TERMINATED, code=128 + signal.SIGTERM)
    except KeyboardInterrupt:
        return fail("interrupted: nothing half-written was left", code=128 + signal.SIGINT)


def print_note(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"note: {message}", flush=True)


def run(args: argparse.Namespace, argv: list[str], audio_out=None) -> int:
    # Everything that can be checked without the model is checked first: a typo should not cost a download.
    prompts = read_prompts(args.prompts, args.prompts_file)
    check_numbers(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    thread_policy = threads.apply_threads(args.threads)  # before torch loads: OpenMP reads its wait policy then
    sampling = sampling_settings(args)
    device, dtype, quantize = resolve_device(args.device, args.dtype, args.quantize)
    if args.cuda_graph and device != "cuda":
        raise CliError("--cuda-graph needs a CUDA device (--device cuda)")
    if audio_out is not None:
        check_streaming(args, prompts)
    outputs = [Path("-")] if audio_out is not None else plan_outputs(args.output, args.format, prompts,
                                                                     args.spectrogram)
    if args.melody and args.prompt_audio:
        raise CliError("--melody and --prompt-audio cannot be combined")
    if args.lora is not None and not (args.lora / "adapter_config.json").is_file():
        raise CliError(f"--lora {args.lora}: not a LoRA adapter folder (no adapter_config.json)")
    if not math.isfinite(args.lora_scale):
        raise CliError(f"--lora-scale must be a finite number, got {args.lora_scale}")
    prompt_audio = read_prompt_audio(args.prompt_audio, args.duration) if args.prompt_audio else None
    model, fallback_from = args.model, None
    if model is None and default_model_absent() and (models.DEMO_FOLDER / "config.json").is_file():
        print(f"offline: {DEFAULT_MODEL} cannot be downloaded and is not cached, so this run uses the bundled demo "
              f"model ({models.DEMO_FOLDER}), a toy trained on synthetic music")
        model, fallback_from = "demo", DEFAULT_MODEL
    melody = read_melody(args.melody, model or DEFAULT_MODEL, args.duration) if args.melody else None
    from inference.loading import resolve_source

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    settings = Settings(
        model=str(models.DEMO_FOLDER) if model == "demo" else resolve_source(model or DEFAULT_MODEL),
        device=device, dtype=dtype, quantize=quantize, cuda_graph=args.cuda_graph, threads=thread_policy,
        duration=args.duration,
        seed=seed, seed_was_random=args.seed is None, sampling=sampling,
        normalize="stream" if audio_out is not None else args.normalize,
        target_lufs=args.lufs, peak_db=-1.0, prompt_audio=str(args.prompt_audio) if args.prompt_audio else None,
        melody=str(args.melody) if args.melody else None, denoise=DENOISE_STRENGTH if args.denoise else 0.0,
        lora=str(args.lora) if args.lora else None, lora_scale=args.lora_scale)
    print_settings(settings, prompts, outputs)

    started = time.perf_counter()
    mg, source = load_model(model, device, dtype, quantize, args.cuda_graph, settings.lora, args.lora_scale)
    load_seconds = time.perf_counter() - started
    if model is None and source != settings.model:  # the default model turned out to be absent while loading
        fallback_from = settings.model
    if source != settings.model:  # --model demo, or the offline fallback: record what really ran
        settings = replace(settings, model=source)
    layout = "stereo" if mg.audio_channels == 2 else "mono"
    print(f"loaded {settings.model} in {load_seconds:.1f} s ({mg.sample_rate} Hz, {layout})")

    import torch

    if audio_out is not None:
        return stream_wav(mg, prompts[0], prompt_audio, melody, settings, audio_out)
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
            record = {"prompt": prompt, "unconditional": prompt == "", "index": start + i + 1, "batch": b,
                      "batch_size": batch_size, "batch_seed": batch_seed, **run_record}
            clip = wav[i].cpu()  # [C, N]
            if settings.denoise:
                from audio.denoise import denoise

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
    from inference.memory import plan_memory, size, used_memory

    num_frames = max(1, math.floor(s.duration * mg.frame_rate + 1e-6))
    prompt_frames = 0
    if prompt_audio is not None:
        wav, sample_rate = prompt_audio
        prompt_frames = math.ceil(wav.shape[-1] / sample_rate * mg.frame_rate)
    plan = plan_memory(mg, num_frames, s.sampling.guided, prompt_frames)
    where = f"available on {mg.device}" if mg.device.type == "cuda" else "of RAM available"
    if not plan.fits:
        raise CliError(f"a {s.duration:g} s clip needs about {size(plan.per_prompt + plan.saving)} (KV cache "
                       f"{size(plan.kv_cache)}, audio {size(plan.audio)}, codec decode {size(plan.codec)}, "
                       + (f"prompt encode {size(plan.encode)}, " if plan.encode else "") + "saving "
                       f"{size(plan.saving)}), more than the {size(plan.available)} {where}: choose a shorter "
                       "--duration")
    batch_size = min(forced or plan.batch_size, num_prompts)
    if forced is not None and batch_size * plan.per_prompt + plan.saving > plan.available:
        raise CliError(f"--batch-size {forced} needs about {size(batch_size * plan.per_prompt + plan.saving)}, "
                       f"more than the {size(plan.available)} {where}: choose a smaller --batch-size")
    batches = -(-num_prompts // batch_size)
    how = "--batch-size" if forced else f"{size(plan.available)} {where}"
    peak = used_memory(mg.device) + batch_size * plan.per_prompt + plan.saving  # what to compare a measured peak to
    plural = "es" if batches > 1 else ""
    print(f"batch      {batch_size} prompt{'s' if batch_size > 1 else ''} at a time, {batches} batch{plural} ({how}); "
          f"memory: about {size(plan.per_prompt)} per prompt and {size(plan.saving)} to save a clip, {size(peak)} at "
          "the peak with the loaded model")
    return batch_size


def print_settings(s: Settings, prompts: list[str], outputs: list[Path]) -> None:
    p = s.sampling
    sampling = "greedy" if not p.use_sampling else f"top-k {p.top_k}, top-p {p.top_p:g}, temperature {p.temperature:g}"
    normalize = {"loudness": f"loudness {s.target_lufs:g} LUFS, true peak <= {s.peak_db:g} dBFS",
                 "peak": f"true peak to {s.peak_db:g} dBFS", "none": "none",
                 "stream": f"none (streamed: the model's level, true peak <= {s.peak_db:g} dBFS)"}[s.normalize]
    lm = f"int8 weights, {s.dtype} activations" if s.quantize == "int8" else s.dtype
    if s.device == "cpu":  # the CPU's fast path is the default: say which path runs and how to change it
        lm += " (the CPU default; --quantize none: exact float32)" if s.quantize == "int8" else \
            " (--quantize int8: faster)"
    graph = ", CUDA graph" if s.cuda_graph else ""
    adapter = f" + LoRA {s.lora} (scale {s.lora_scale:g}, merged)" if s.lora else ""
    rows = [("model", s.model + adapter), ("device", f"{s.device}, LM in {lm}{graph} (text encoder and codec float32)"),
            ("threads", s.threads),
            ("duration", f"{s.duration:g} s" + (f", continuing {s.prompt_audio}" if s.prompt_audio else "")),
            ("sampling", f"{sampling}, cfg {p.cfg_coef:g}"),
            ("seed", f"{s.seed}" + (" (random)" if s.seed_was_random else "")), ("normalize", normalize),
            ("denoise", f"spectral gate, strength {s.denoise:g}" if s.denoise else "off")]
    for name, value in rows:
        print(f"{name:<10} {value}")
    for i, (prompt, out) in enumerate(zip(prompts, outputs, strict=True), 1):
        print(f"{i:>4}. {out}  <-  " + (f'"{prompt}"' if prompt else "(empty prompt: unconditional generation)"))


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


def check_streaming(args: argparse.Namespace, prompts: list[str]) -> None:
    """--output - streams one clip as it is made: what needs several clips or the whole clip is refused."""
    if len(prompts) != 1:
        raise CliError(f"--output - streams one clip: give one prompt, not {len(prompts)}")
    for flag, given in (("--spectrogram", args.spectrogram), ("--denoise", args.denoise), ("--format", args.format),
                        ("--batch-size", args.batch_size)):
        if given:
            raise CliError(f"{flag} needs the whole clip written to a file: it cannot be used with --output -")


def stream_wav(mg, prompt: str, prompt_audio, melody, s: Settings, out) -> int:
    """Write one clip to the binary stream `out` as a WAV file while it is generated (audio/wav_stream.py)."""
    from audio.wav_stream import StreamingLimiter, pcm16, wav_header

    options = dict(seed=s.seed, progress=True, **asdict(s.sampling))
    if melody is not None:
        options.update(melody_wavs=[melody[0]], melody_sample_rate=melody[1])
    if prompt_audio is not None:
        options.update(prompt_wav=prompt_audio[0][None], prompt_sample_rate=prompt_audio[1])
    frames = max(1, math.floor(s.duration * mg.frame_rate + 1e-6))
    limiter = StreamingLimiter(mg.sample_rate, s.peak_db)
    stream = mg.generate_stream([prompt or None], duration=s.duration, **options)
    started, written = time.perf_counter(), 0
    try:
        out.write(wav_header(frames * mg.codec.hop_length, mg.audio_channels, mg.sample_rate))
        for chunk in stream:
            audio = limiter.push(chunk[0].cpu())  # [C, n]
            out.write(pcm16(audio))
            out.flush()
            written += audio.shape[-1]
        out.write(pcm16(limiter.flush()))
        out.flush()
    except BrokenPipeError:  # the player quit: stop generating, and let nothing else write to the closed pipe
        stream.close()
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        print(f"standard output was closed after {written / mg.sample_rate:.1f} s of audio: stopped")
        return 0
    seconds = time.perf_counter() - started
    print(f"streamed {frames / mg.frame_rate:.2f} s of audio in {seconds:.1f} s (seed {s.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The bundled demo model, rebuilt by one command: corpus -> codec -> decoder GAN fine-tune + LM -> a model folder.

    python -m training.demo --scale tiny          # a minute: smoke test, into runs/demo-tiny/model
    python -m training.demo --real-music DIR ...  # the real recipe (about 2.5 hours on a 2-core CPU), runs/demo-demo
    python -m training.demo --install ...         # the same, written to checkpoints/demo: replaces the bundled model

Nothing is written into checkpoints/demo unless --install (or --out checkpoints/demo) says so.

Each stage is an ordinary command of this project, printed before it runs, so any of them can be rerun or
tuned by hand (times: the bundled build on a 2-core AMD EPYC):
1. `python -m corpus WORK/corpus ...`: captioned music rendered offline (corpus/render.py) with Debian's
   FluidR3_GM SoundFont (`apt-get install fluid-soundfont-gm`), in drawn rooms (2 min);
2. `python train.py codec --data WORK/codec-data/train ...`: a small 32 kHz EnCodec, reconstruction losses only
   (multi-scale mel first), on the LM's training clips and the real recordings of --real-music (4000 steps of
   about 0.45 s on both cores from scratch: 30 min; `--codec-init CODEC` starts it from a trained codec of the
   same shape instead, and then it runs 1000 steps: 8 min);
3. at the same time, one core each:
   - `python train.py codec --init-from WORK/codec/export --train decoder ...`: the decoder alone, adversarial
     (MS-STFT discriminator, feature matching, balancer), on the same clips, encoder and codebooks frozen
     (1000 steps of 3.4 s: 56 min);
   - `python train.py lm --data WORK/corpus --codec WORK/codec/export ...`: the LM with the word table, on the
     first codec's tokens, which the fine-tune leaves as they are (5 min to encode them, then 3000 steps of
     2.9 s on one core beside the fine-tune, 1.4 s on two after it: about 100 min). Each caption's details are
     dropped a sentence at a time (`--sentence-dropout 0.5`), so that a style's name alone, "Lo-fi funk", is a
     caption it has seen;
4. the LM's model with the fine-tuned codec (WORK/assembled; the encoder and codebooks are checked to be the
   ones the LM's tokens came from);
5. `python -m training.demo.evaluate OUT --corpus WORK/corpus --before PREVIOUS --real FILES`: codec, LM and
   prompt evidence on held-out clips, the codec also on --held-out-music recordings, beside the previously
   bundled model's codec and Opus 6 kbps (3 min).
The model is copied to OUT with the training curves, the evaluation and a model card (MODEL_CARD.md) built from
them. A stage whose output exists is skipped (the last one when OUT holds the model and a model card), and a
training stage whose last checkpoint exists resumes from it, so an interrupted build continues where it stopped.

Real recordings for the codec (no captions needed) come from Debian's game-music packages, unpacked without
installing; the bundled build used these, and measured itself on two others it never trained on:

    mkdir -p data/debs && cd data/debs
    apt-get download colobot-common-sounds hedgewars-data planetblupi-music-ogg singularity-music frozen-bubble-data
    for d in *.deb; do dpkg -x "$d" x; done; cd ../..
    python -m training.demo --install --real-music data/debs/x/usr/share/games/colobot/music \\
        data/debs/x/usr/share/games/hedgewars/Data/Music data/debs/x/usr/share/planetblupi/music \\
        --held-out-music data/debs/x/usr/share/games/singularity/music \\
                         data/debs/x/usr/share/games/frozen-bubble/snd/*zik*.ogg

The bundled build's first codec did not start from scratch: `--codec-init` continued the first codec of the build
before it (3000 steps of the same shape and losses on a 600-clip TimGM6mb corpus); its model card says so. Its
LM trained after the decoder fine-tune, alone on both cores (`python train.py --threads 2 lm ...`, 3000 steps
of 1.4-1.6 s: 75 min).
"""

import argparse
import filecmp
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import threads
from training.audio_files import scan_audio_files, split_files
from training.captions import read_captioned
from training.demo.evaluate import FEATURES, token_mismatches

ROOT = Path(__file__).resolve().parents[2]  # the project: training/demo/recipe.py
BUNDLED = ROOT / "checkpoints" / "demo"  # the model `generate.py --model demo` reads


FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm (MIT)


@dataclass(frozen=True)
class Recipe:
    """The sizes and budgets of one demo build."""

    clips: int
    clip_seconds: float
    sample_rate: int
    corpus_args: tuple[str, ...]  # `python -m corpus` flags besides the sizes (chorales, reverb, SoundFont)
    codec_shape: tuple[str, ...]  # the codec's size flags, fixed by --codec-init's codec when it is given
    codec_args: tuple[str, ...]
    codec_steps: int
    codec_init_steps: int  # the first codec's steps when --codec-init starts it from a trained codec
    gan_args: tuple[str, ...]  # the decoder's adversarial fine-tune (`train.py codec --train decoder`)
    gan_steps: int
    lm_args: tuple[str, ...]
    lm_steps: int
    evaluate_args: tuple[str, ...] = ()


RECIPES = {
    # 2000 generated clips + 200 Bach chorales of 10 s, FluidR3_GM in drawn rooms.
    # Codec: 32 kHz, 50 frames/s like MusicGen's, but 16 filters, 64-d latents and 4 x 1024 codes, on the LM's
    # training clips and the real recordings of --real-music. First reconstruction losses only (l1 + multi-scale
    # mel, no discriminator: ~7x cheaper per step on a CPU), mel weighted 20:1 over the waveform's l1 (train.py's
    # defaults): weighting l1 first raised SI-SNR by 10 dB, but made codebook 0's tokens change from frame to frame
    # (repeats 0.20 -> 0.08), and an LM of this size could no longer predict them. Then the decoder alone is
    # fine-tuned with the MS-STFT discriminator (16 filters, 3 scales) and feature matching, which removes the hiss
    # the reconstruction losses leave; l1 weighs twice the adversarial terms there, since the tokens no longer
    # move. Encoder and codebooks stay frozen, so the LM, which trains on the first codec's tokens, runs at the
    # same time.
    # LM: 5 layers, dim 256, on 8 s segments.
    "demo": Recipe(
        clips=2000, clip_seconds=10.0, sample_rate=32_000,
        corpus_args=("--chorales", "200", "--reverb", "--soundfont", str(FLUID_R3)),
        codec_shape=("--n-filters", "16", "--dimension", "64", "--n-q", "4", "--bins", "1024"),
        codec_args=("--adv-weight", "0", "--feat-weight", "0", "--segment-seconds", "1", "--batch-size", "8",
                    "--sample-on-duration", "--num-workers", "1", "--valid-every", "500", "--save-every", "250"),
        codec_steps=4000, codec_init_steps=1000,
        gan_args=("--l1-weight", "4", "--msspec-weight", "2", "--adv-weight", "2", "--feat-weight", "2",
                  "--disc-filters", "16", "--disc-n-ffts", "1024,512,256", "--segment-seconds", "1",
                  "--batch-size", "8", "--sample-on-duration", "--num-workers", "1", "--valid-every", "250",
                  "--save-every", "100"),
        gan_steps=1000,
        lm_args=("--dim", "256", "--layers", "5", "--heads", "4", "--text", "lut", "--lut-bins", "512",
                 "--segment-seconds", "8", "--batch-size", "10", "--lr", "1e-3", "--warmup-steps", "100",
                 "--sentence-dropout", "0.5", "--num-workers", "1", "--valid-every", "250", "--save-every", "100",
                 "--sample-every", "100000"),
        lm_steps=3000,
    ),
    # Seconds, for tests: the same commands on a few short clips and tiny models.
    "tiny": Recipe(
        clips=6, clip_seconds=2.0, sample_rate=8000, corpus_args=("--reverb",),
        codec_shape=("--sample-rate", "8000", "--n-filters", "4", "--dimension", "16", "--n-q", "2", "--bins", "16",
                     "--ratios", "4,4", "--lstm-layers", "1"),
        codec_args=("--disc-filters", "4", "--disc-n-ffts", "256,128",
                    "--segment-seconds", "0.5", "--batch-size", "2", "--valid-every", "2", "--save-every", "2",
                    "--valid-fraction", "0.34"),
        codec_steps=2, codec_init_steps=2,
        gan_args=("--disc-filters", "4", "--disc-n-ffts", "256,128", "--segment-seconds", "0.5", "--batch-size", "2",
                  "--sample-on-duration", "--valid-every", "2", "--save-every", "2"),
        gan_steps=2,
        lm_args=("--dim", "16", "--layers", "1", "--heads", "2", "--text", "lut", "--lut-bins", "32",
                 "--segment-seconds", "0.5", "--batch-size", "2", "--warmup-steps", "1", "--valid-every", "2",
                 "--save-every", "2", "--sample-every", "1000", "--valid-fraction", "0.34"),
        lm_steps=2,
        evaluate_args=("--seeds", "2", "--duration", "0.5", "--valid-fraction", "0.34"),
    ),
}


def run(command: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(part) for part in command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def run_together(jobs: dict[str, list[str]], logs: Path) -> None:
    """Run independent `train.py` commands at the same time, the cores split between them, each one's output in
    LOGS/<name>.log; raise when one fails (the others are stopped). One job runs in the foreground as usual."""
    if len(jobs) == 1:
        (command,) = jobs.values()
        run(command)
        return
    share = max(1, threads.available_cores() // len(jobs))
    logs.mkdir(parents=True, exist_ok=True)
    running = {}
    for name, command in jobs.items():
        command = [command[0], command[1], "--threads", str(share), *command[2:]]  # python train.py --threads N ...
        print(f"\n$ {' '.join(shlex.quote(part) for part in command)}\n  (output: {_shown(logs / name)}.log)",
              flush=True)
        with open(logs / f"{name}.log", "w") as log:  # the child keeps its own copy of the file
            running[name] = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        pending = dict(running)
        while pending:
            for name, process in list(pending.items()):
                if process.poll() is None:
                    continue
                del pending[name]
                if process.returncode != 0:
                    tail = (logs / f"{name}.log").read_text().splitlines()[-15:]
                    raise RuntimeError(f"{name} failed (exit {process.returncode}); the end of its log:\n"
                                       + "\n".join(tail))
                print(f"{name}: done", flush=True)
            time.sleep(1.0)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.terminate()
                process.wait()


def codec_data(corpus: Path, real_music: list[Path], folder: Path, seed: int, valid_fraction: float
               ) -> tuple[Path, Path]:
    """The codecs' data, as links: FOLDER/train holds the corpus clips the LM trains on and every
    recording under `real_music`; FOLDER/valid the corpus clips the LM holds out (so the evaluation's clips stay
    unseen by both). Rebuilt on every call (the same split each time)."""
    train_clips, valid_clips = split_files(read_captioned(corpus).files, valid_fraction, seed)  # the LM's split
    if folder.exists():
        shutil.rmtree(folder)
    for name, clips in (("train", train_clips), ("valid", valid_clips)):
        (folder / name).mkdir(parents=True)
        for clip in clips:
            (folder / name / Path(clip.path).name).symlink_to(Path(clip.path).resolve())
    real = [scan_audio_files(source).readable for source in real_music]
    for i, (source, files) in enumerate(zip(real_music, real, strict=True)):
        if not files:
            raise SystemExit(f"error: no readable audio files (wav, flac, ogg) under --real-music {source}")
        (folder / "train" / f"real{i}").mkdir()
        for j, file in enumerate(files):
            path = Path(file.path)
            (folder / "train" / f"real{i}" / f"{j:04d}_{path.name}").symlink_to(path.resolve())
    record = {"real_music": [str(d) for d in real_music], "real_music_files": sum(map(len, real)),
              "real_music_minutes": sum(f.duration for files in real for f in files) / 60}
    (folder.parent / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder / "train", folder / "valid"


def assemble(lm_export: Path, lm_codec: Path, tuned_codec: Path, folder: Path) -> None:
    """The LM's model with the fine-tuned codec `tuned_codec` in place of `lm_codec`, the one it was trained with.
    Only the decoder may differ: the encoder and the codebooks make the tokens the LM learned, so they must be
    the same tensors."""
    from encodec import load_encodec
    from inference import MusicGen
    from inference.export import save_musicgen

    changed = token_mismatches(load_encodec(lm_codec, inference=False), load_encodec(tuned_codec, inference=False))
    if changed:
        raise RuntimeError(f"{tuned_codec} has another encoder or codebooks than {lm_codec} ({changed[0]}, ...): "
                           "its tokens are not the ones the LM learned")
    model = MusicGen.from_pretrained(str(lm_export), quantize=None)  # saved: the exact float32 weights
    model.codec = load_encodec(tuned_codec)
    save_musicgen(model, folder)


def audio_files(sources: list[Path]) -> list[Path]:
    """The audio files among `sources`: files as given, and the readable audio files under each folder."""
    return [path for source in sources for path in
            ([Path(f.path) for f in scan_audio_files(source).readable] if source.is_dir() else [source])]


def previous_model(recipe: Recipe, work: Path, out: Path) -> Path | None:
    """The bundled model this build is measured against (`evaluate --before`): a copy in WORK when the build
    replaces it, None when there is none or it runs at another rate (the tiny scale)."""
    if not (BUNDLED / "config.json").is_file():
        return None
    if json.loads((BUNDLED / "config.json").read_text())["audio_encoder"]["sampling_rate"] != recipe.sample_rate:
        return None
    if out.resolve() != BUNDLED.resolve():
        return BUNDLED
    copy = work / "previous-model"
    if not (copy / "config.json").is_file():
        shutil.copytree(BUNDLED, copy, dirs_exist_ok=True)
    return copy


def flag_values(args: tuple[str, ...]) -> dict[str, str]:
    """{flag: the argument after it} of a command line's arguments (a valueless flag maps to the next flag)."""
    return dict(zip(args, args[1:], strict=False))


def build(recipe: Recipe, work: Path, out: Path, seed: int, real_music: list[Path],
          held_out_music: list[Path] = (), codec_init: Path | None = None) -> Path:
    """Run the stages (skipping finished ones) and write the model to `out`; the first codec starts from
    `codec_init` when given."""
    corpus, codec, gan, lm = work / "corpus", work / "codec", work / "codec-gan", work / "lm"
    if not (corpus / "manifest.jsonl").is_file():
        flags = flag_values(recipe.corpus_args)
        if "--soundfont" in flags and not Path(flags["--soundfont"]).is_file():
            raise SystemExit(f"error: the corpus is rendered with {flags['--soundfont']}, which is missing: install "
                             "Debian's fluid-soundfont-gm (apt-get install fluid-soundfont-gm)")
        run([sys.executable, "-m", "corpus", str(corpus), "--count", str(recipe.clips), "--seconds",
             str(recipe.clip_seconds), "--sample-rate", str(recipe.sample_rate), "--seed", str(seed),
             *recipe.corpus_args])
    common = ["--no-progress-bar", "--seed", str(seed)]
    codecs_done = all((folder / "export" / "config.json").is_file() for folder in (codec, gan))
    if not codecs_done:
        lm_valid_fraction = float(flag_values(recipe.lm_args).get("--valid-fraction", 0.1))  # train.py's default
        train, valid = codec_data(corpus, real_music, work / "codec-data", seed, lm_valid_fraction)
    if not (codec / "export" / "config.json").is_file():
        resume = ["--resume"] if (codec / "checkpoints" / "last.ckpt").is_file() else []
        if codec_init is None:
            start, steps = list(recipe.codec_shape), recipe.codec_steps
        else:
            start, steps = ["--init-from", str(codec_init)], recipe.codec_init_steps
        run([sys.executable, "train.py", "codec", "--data", str(train), "--valid-data", str(valid), *start,
             "--out", str(codec), "--max-steps", str(steps), *recipe.codec_args, *common, *resume])
    jobs = {}
    if not (gan / "export" / "config.json").is_file():
        resume = ["--resume"] if (gan / "checkpoints" / "last.ckpt").is_file() else []
        jobs["codec-gan"] = [sys.executable, "train.py", "codec", "--data", str(train), "--valid-data", str(valid),
                             "--init-from", str(codec / "export"), "--train", "decoder", "--out", str(gan),
                             "--max-steps", str(recipe.gan_steps), *recipe.gan_args, *common, *resume]
    if not (lm / "export" / "config.json").is_file():
        resume = ["--resume"] if (lm / "checkpoints" / "last.ckpt").is_file() else []
        jobs["lm"] = [sys.executable, "train.py", "lm", "--data", str(corpus), "--codec", str(codec / "export"),
                      "--out", str(lm), "--max-steps", str(recipe.lm_steps), *recipe.lm_args, *common, *resume]
    if jobs:
        run_together(jobs, work / "logs")
    model = work / "assembled"
    if not (model / "config.json").is_file():
        print(f"\nassembling {_shown(model)}: the LM of {_shown(lm / 'export')} with the decoder of "
              f"{_shown(gan / 'export')}", flush=True)
        assemble(lm / "export", codec / "export", gan / "export", model)
    if finished(out, model):
        print(f"\n{out} already holds this model, its evaluation and its model card")
        return out
    before = previous_model(recipe, work, out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model, out)
    shutil.copyfile(codec / "loss_curve.png", out / "codec_training.png")
    shutil.copyfile(gan / "loss_curve.png", out / "codec_gan_training.png")
    shutil.copyfile(lm / "loss_curve.png", out / "lm_training.png")
    compare = ["--before", _shown(before)] if before is not None else []
    if held_out_music:
        compare += ["--real", *map(_shown, audio_files(list(held_out_music)))]
    run([sys.executable, "-m", "training.demo.evaluate", _shown(out), "--corpus", _shown(corpus),
         *recipe.evaluate_args, *compare])
    (out / "MODEL_CARD.md").write_text(model_card(recipe, work, out))
    return out


def finished(out: Path, export: Path) -> bool:
    """Whether `out` is a finished model folder of the model `export`: the same files, evaluated, with a card."""
    return ((out / "MODEL_CARD.md").is_file() and (out / "evaluation.json").is_file() and export.is_dir()
            and all((out / f.name).is_file() and filecmp.cmp(f, out / f.name, shallow=False) for f in export.iterdir()))


def _shown(path: Path) -> str:
    """`path` relative to the project (the commands run there) when inside it, so records do not hold /home/..."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _summary(folder: Path) -> dict:
    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _codec_table(rows: dict) -> str:
    """A markdown table of evaluation.json's codec comparison (one row per system)."""
    names = {"trained": "this model's codec", "before": "the previous bundled model's codec",
             "untrained": "this codec untrained", "original": "the original clips"}
    lines = ["| system | SI-SNR (dB) | log-mel L1 | log-mel L1 > 4 kHz | flatness > 4 kHz |", "|---|---|---|---|---|"]
    for system, m in rows.items():
        if isinstance(m, dict):
            cells = [f"{m[k]:.2f}" if k == "si_snr" and k in m else f"{m[k]:.3f}" if k in m else "-"
                     for k in ("si_snr", "mel", "high_band_mel", "high_band_flatness")]
            name = names.get(system, system.replace("opus_", "Opus ").replace("kbps", " kbps"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_card(recipe: Recipe, work: Path, out: Path) -> str:
    """A short card: data, sizes, training, metrics (from the runs' summaries and the evaluation), limits."""
    config = json.loads((out / "config.json").read_text())
    size = sum(p.stat().st_size for p in out.iterdir() if p.suffix == ".safetensors") / 2**20
    decoder, codec = config["decoder"], config["audio_encoder"]
    codec_run, gan_run, lm_run = _summary(work / "codec"), _summary(work / "codec-gan"), _summary(work / "lm")
    build = json.loads((work / "build.json").read_text()) if (work / "build.json").is_file() else {}
    report = json.loads((out / "evaluation.json").read_text())
    corpus_settings = json.loads((work / "corpus" / "settings.json").read_text()) \
        if (work / "corpus" / "settings.json").is_file() else {}
    lm_loss = lm_run.get("valid_loss", {})
    last_valid = (lm_run.get("valid") or [{}])[-1]
    accuracies = ", ".join(f"{last_valid[f'acc_q{k}']:.3f}" for k in range(decoder["num_codebooks"])
                           if f"acc_q{k}" in last_valid)
    frame_rate = codec["sampling_rate"] // math.prod(codec["upsampling_ratios"])
    nan = float("nan")
    rows = []
    for entry in report["prompts"].values():
        for source in ("generated", "corpus"):
            if entry[source]:
                cells = " | ".join(f"{entry[source][name]['mean']:.3g} ({entry[source][name]['min']:.3g} to "
                                   f"{entry[source][name]['max']:.3g})" for name in FEATURES)
                rows.append(f"| {entry['prompt'] if source == 'generated' else '(held-out corpus clips)'} | "
                            f"{source} | {cells} |")
    table = "\n".join(rows)
    lm_flags = flag_values(recipe.lm_args)
    sentence_dropout = (f", each caption's details dropped with probability {lm_flags['--sentence-dropout']} a "
                        "sentence (its first sentence, the style, kept)" if "--sentence-dropout" in lm_flags else "")
    short = report.get("short_prompts")
    short_line = ""
    if short:
        lowest, highest = short["level_range_db"]
        short_line = (f"\n- Short prompts (each style's name alone, as people type it: \"Lo-fi funk\", \"Country "
                      f"instrumental\", ...): median frame level {lowest:.1f} to {highest:.1f} dBFS, "
                      f"{short['near_silent']} of {short['clips']} clips near-silent (below "
                      f"{short['near_silent_below_db']:g} dBFS); the held-out corpus clips' lowest is "
                      f"{short['corpus_median_level_db']['min']:.1f}.")
    soundfont = Path(corpus_settings.get("soundfont", "TimGM6mb.sf2")).name
    clips = corpus_settings.get("count", recipe.clips)
    chorales = corpus_settings.get("chorales", 0)
    real = build.get("real_music", [])
    real_line = (f"real recordings for the codec (no captions needed): {len(real)} folders, "
                 f"{', '.join(Path(d).name for d in real)} ({build.get('real_music_files', '?')} files, "
                 f"{build.get('real_music_minutes', 0):.0f} min)" if real else
                 "no real recordings (--real-music)")
    before = report.get("lm_before")
    lm_before = (f"\n  The previous bundled LM, which reads the same tokens, on the same clips: "
                 f"{before['true_caption']:.3f}, {before['other_style_caption']:.3f} and {before['no_caption']:.3f}."
                 if before else "")
    real_section = ""
    if "codec_real" in report:
        real_section = (f"\n\nOn {len(report['codec_real']['clips'])} excerpts of {report['seconds']:g} s of real "
                        f"recordings the codec never saw ({', '.join(report['codec_real']['clips'])}):\n\n"
                        + _codec_table(report["codec_real"]))
    return f"""# Demo MusicGen (trained from scratch on a rendered corpus)

A toy MusicGen that ships with the project so that `python generate.py "Lo-fi funk" --model demo` works offline,
in seconds on a CPU. Rebuilt by `python -m training.demo --install` ({size:.1f} MiB of weights).

## Data
- {clips} clips of {recipe.clip_seconds:g} s at {recipe.sample_rate} Hz rendered offline
  from generated MIDI arrangements in 10 styles (80s pop, 90s rock, techno, lo-fi funk, country, jazz, piano
  ballad, ambient, orchestral, bossa nova){f", and {chorales} Bach chorale excerpts" if chorales else ""};
- rendered with the {soundfont} General MIDI SoundFont{", each in a drawn room (reverb, RT60 0.2-1.6 s)"
  if corpus_settings.get("reverb") else ""} (corpus/render.py, seed 0);
- each caption states the style, tempo, key, instruments and whether there are drums;
- 10% of the clips are held out (the same ones for the codec and the LM);
- {real_line}.

## Model
- **Codec**: EnCodec, {codec['sampling_rate']} Hz mono, {codec['num_filters']} filters, latent
  {codec['hidden_size']}, ratios {codec['upsampling_ratios']} ({frame_rate} frames/s), {decoder['num_codebooks']}
  codebooks of {codec['codebook_size']} codes ({decoder['num_codebooks'] * frame_rate * 10 / 1000:g} kbps).
  Trained {codec_run.get('steps', '?')} steps on the corpus clips and the real recordings with l1 + multi-scale
  mel losses only, the mel weighted first{
  f" ({codec_run['note']})" if codec_run.get('note') else ""}; then its decoder alone
  {gan_run.get('steps', '?')} steps with the MS-STFT discriminator, feature matching and the balancer, encoder and
  codebooks frozen (codec_gan_training.png).
- **LM**: {decoder['num_hidden_layers']} layers, dim {decoder['hidden_size']}, {decoder['num_attention_heads']} heads,
  {decoder['num_codebooks']} codebooks with the delay pattern, a word lookup-table text conditioner (no T5),
  windows of {config.get('max_duration', '?')} s. Trained {lm_run.get('steps', '?')} steps on the first codec's
  tokens (the decoder fine-tune leaves them unchanged, so both can train at once){sentence_dropout}.

## Metrics (held-out clips)
Codec on {report['held_out_clips']} held-out corpus clips of {report['seconds']:g} s (training/demo/codec_eval.py:
SI-SNR over 5 s frames; log-mel L1, also above 4 kHz only; spectral flatness above 4 kHz, 0.56 for white noise,
which a codec's hiss raises):

{_codec_table(report['codec'])}{real_section}

Clips the model generates have a flatness above 4 kHz of {report.get('generated_high_band_flatness', nan):.3f}
(evaluation.png, top right; spectrograms of generated and held-out corpus clips below).

- LM validation loss (nats per token, mean over codebooks): {lm_loss.get('first', nan):.3f} at step
  {lm_loss.get('first_step')} -> {lm_loss.get('last', nan):.3f} at step {lm_loss.get('last_step')}; accuracy per
  codebook at the end: {accuracies or '?'}.
  On held-out clips with their own caption {report['lm']['true_caption']:.3f}, with a caption of another style
  {report['lm']['other_style_caption']:.3f}, with no caption {report['lm']['no_caption']:.3f}.{lm_before}
- The prompt changes the music ({report['generation']['seeds']} seeds x {report['generation']['duration']:g} s,
  top-k {report['generation']['top_k']}, CFG {report['generation']['cfg_coef']:g}; mean and range;
  evaluation.png):

| prompt | audio | onset rate (1/s) | spectral centroid (Hz) | low-band share (< 150 Hz) |
|---|---|---|---|---|
{table}
{short_line}

Training curves: codec_training.png, codec_gan_training.png, lm_training.png. Recipe:
`{json.dumps(asdict(recipe))}`

## Limits
A toy. It knows only the corpus's synthetic styles and General MIDI timbres, at low fidelity (a small codec at
about 2 kbps, trained for about two hours on a CPU, which rebuilds the spectrum far better than the waveform: see
SI-SNR above); words outside the captions' vocabulary mean nothing to it,
and it was trained on {config.get('max_duration', '?')} s windows (longer pieces are generated in sliding
windows). Use the published models for real music.
"""


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with `work` and `out` resolved (defaults under runs/, checkpoints/demo only by --install)."""
    parser = argparse.ArgumentParser(prog="python -m training.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(RECIPES), default="demo")
    parser.add_argument("--work", type=Path, help="corpus and training runs (default: runs/demo-SCALE)")
    parser.add_argument("--out", type=Path, help="the finished model (default: WORK/model)")
    parser.add_argument("--install", action="store_true",
                        help=f"write the finished model to {_shown(BUNDLED)}, replacing the bundled one "
                             "(--scale demo only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real-music", type=Path, nargs="+", default=[], metavar="DIR",
                        help="folders of real recordings (wav, flac, ogg) the codecs also learn from "
                             "(no captions needed); see the module help for the Debian packages the bundled "
                             "model used")
    parser.add_argument("--codec-init", type=Path, metavar="CODEC",
                        help="start the first codec from this one (a model folder or codec of the recipe's shape, "
                             "e.g. checkpoints/demo) instead of from scratch")
    parser.add_argument("--held-out-music", type=Path, nargs="+", default=[], metavar="PATH",
                        help="real recordings (files or folders) the codec is measured on, beside Opus; keep "
                             "them out of --real-music")
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.real_music if not d.is_dir()]
    missing += [str(p) for p in args.held_out_music if not p.exists()]
    missing += [str(args.codec_init)] if args.codec_init is not None and not args.codec_init.exists() else []
    if missing:
        parser.error(f"no such folder or file: {', '.join(missing)}")
    if args.install and args.out is not None:
        parser.error("--install writes the model to the bundled folder: drop --out")
    if args.install and args.scale != "demo":
        parser.error(f"--install replaces the bundled model: only with --scale demo, not {args.scale}")
    args.work = args.work or ROOT / "runs" / f"demo-{args.scale}"
    args.out = BUNDLED if args.install else args.out or args.work / "model"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    recipe = RECIPES[args.scale]
    print(f"settings: scale={args.scale} work={args.work} out={args.out} seed={args.seed} "
          f"real_music={[str(d) for d in args.real_music]} held_out_music={[str(p) for p in args.held_out_music]} "
          f"codec_init={args.codec_init}\nrecipe: {recipe}")
    try:
        out = build(recipe, args.work, args.out, args.seed, args.real_music, args.held_out_music, args.codec_init)
    except (subprocess.CalledProcessError, RuntimeError) as err:  # a stage failed or was stopped: it said why
        reason = f"exit status {err.returncode}" if isinstance(err, subprocess.CalledProcessError) else err
        print(f"error: a stage stopped ({reason}); the same command continues where it stopped", file=sys.stderr)
        return 1
    print(f"\nthe demo model is in {out}: python generate.py \"Lo-fi funk\" --model {out} --duration 8")
    return 0

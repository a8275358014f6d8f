"""The bundled demo model, rebuilt by one command: corpus -> codec -> language model -> a model folder.

    python -m training.demo --scale tiny          # a minute: smoke test, into runs/demo-tiny/model
    python -m training.demo                       # the real recipe (about 70 min on a 2-core CPU), runs/demo-demo
    python -m training.demo --install             # the same, written to checkpoints/demo: replaces the bundled model

Nothing is written into checkpoints/demo unless --install (or --out checkpoints/demo) says so.

Each stage is an ordinary command of this project, printed before it runs, so any of them can be rerun or
tuned by hand:
1. `python -m corpus WORK/corpus ...`: captioned music rendered offline (corpus/render.py);
2. `python train.py codec --data WORK/corpus ...`: a small 32 kHz EnCodec;
3. `python train.py lm --data WORK/corpus --codec WORK/codec/export ...`: a small LM with the word table;
4. `python -m training.demo.evaluate OUT --corpus WORK/corpus`: codec, LM and prompt evidence on held-out clips;
the LM export (codec and text table included) is copied to OUT with the training curves, the evaluation and a
model card (MODEL_CARD.md) built from them. A stage whose output exists is skipped (the last one when OUT holds
the LM export and a model card), and a training stage whose last checkpoint exists resumes from it, so an
interrupted build continues where it stopped.
"""

import argparse
import filecmp
import json
import math
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from training.demo.evaluate import FEATURES

ROOT = Path(__file__).resolve().parents[2]  # the project: training/demo/recipe.py
BUNDLED = ROOT / "checkpoints" / "demo"  # the model `generate.py --model demo` reads


@dataclass(frozen=True)
class Recipe:
    """The sizes and budgets of one demo build."""

    clips: int
    clip_seconds: float
    sample_rate: int
    codec_args: tuple[str, ...]
    codec_steps: int
    lm_args: tuple[str, ...]
    lm_steps: int
    evaluate_args: tuple[str, ...] = ()


RECIPES = {
    # 32 kHz, 50 frames/s like MusicGen's codec, but 16 filters, 64-d latents and 4 x 1024 codes, trained on
    # reconstruction losses only (l1 + multi-scale mel, no discriminator: ~5x cheaper per step on a CPU);
    # a 4-layer LM on 8 s segments. About 35 + 33 minutes on a 2-core CPU.
    "demo": Recipe(
        clips=600, clip_seconds=10.0, sample_rate=32_000,
        codec_args=("--n-filters", "16", "--dimension", "64", "--n-q", "4", "--bins", "1024",
                    "--adv-weight", "0", "--feat-weight", "0", "--segment-seconds", "1", "--batch-size", "8",
                    "--valid-every", "500", "--save-every", "500"),
        codec_steps=3000,
        lm_args=("--dim", "256", "--layers", "4", "--heads", "4", "--text", "lut", "--lut-bins", "512",
                 "--segment-seconds", "8", "--batch-size", "10", "--lr", "1e-3", "--warmup-steps", "100",
                 "--valid-every", "250", "--save-every", "250", "--sample-every", "1000"),
        lm_steps=2000,
    ),
    # Seconds, for tests: the same commands on a few short clips and tiny models.
    "tiny": Recipe(
        clips=6, clip_seconds=2.0, sample_rate=8000,
        codec_args=("--sample-rate", "8000", "--n-filters", "4", "--dimension", "16", "--n-q", "2", "--bins", "16",
                    "--ratios", "4,4", "--lstm-layers", "1", "--disc-filters", "4", "--disc-n-ffts", "256,128",
                    "--segment-seconds", "0.5", "--batch-size", "2", "--valid-every", "2", "--save-every", "2",
                    "--valid-fraction", "0.34"),
        codec_steps=2,
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


def build(recipe: Recipe, work: Path, out: Path, seed: int) -> Path:
    """Run the three stages (skipping finished ones) and write the model to `out`."""
    corpus, codec, lm = work / "corpus", work / "codec", work / "lm"
    if not (corpus / "manifest.jsonl").is_file():
        run([sys.executable, "-m", "corpus", str(corpus), "--count", str(recipe.clips), "--seconds",
             str(recipe.clip_seconds), "--sample-rate", str(recipe.sample_rate), "--seed", str(seed)])
    common = ["--no-progress-bar", "--seed", str(seed)]
    if not (codec / "export" / "config.json").is_file():
        resume = ["--resume"] if (codec / "checkpoints" / "last.ckpt").is_file() else []
        run([sys.executable, "train.py", "codec", "--data", str(corpus), "--out", str(codec), "--max-steps",
             str(recipe.codec_steps), *recipe.codec_args, *common, *resume])
    if not (lm / "export" / "config.json").is_file():
        resume = ["--resume"] if (lm / "checkpoints" / "last.ckpt").is_file() else []
        run([sys.executable, "train.py", "lm", "--data", str(corpus), "--codec", str(codec / "export"), "--out",
             str(lm), "--max-steps", str(recipe.lm_steps), *recipe.lm_args, *common, *resume])
    if finished(out, lm / "export"):
        print(f"\n{out} already holds this LM export, its evaluation and its model card")
        return out
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(lm / "export", out)
    shutil.copyfile(codec / "loss_curve.png", out / "codec_training.png")
    shutil.copyfile(lm / "loss_curve.png", out / "lm_training.png")
    run([sys.executable, "-m", "training.demo.evaluate", _shown(out), "--corpus", _shown(corpus),
         *recipe.evaluate_args])
    (out / "MODEL_CARD.md").write_text(model_card(recipe, work, out))
    return out


def finished(out: Path, export: Path) -> bool:
    """Whether `out` is a finished model folder of the LM export `export`: the same files, evaluated, with a card."""
    return ((out / "MODEL_CARD.md").is_file() and (out / "evaluation.json").is_file() and export.is_dir()
            and all((out / f.name).is_file() and filecmp.cmp(f, out / f.name, shallow=False) for f in export.iterdir()))


def _shown(path: Path) -> str:
    """`path` relative to the project (the commands run there) when inside it, so records do not hold /home/..."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _summary(folder: Path) -> dict:
    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def model_card(recipe: Recipe, work: Path, out: Path) -> str:
    """A short card: data, sizes, training, metrics (from the runs' summaries and the evaluation), limits."""
    config = json.loads((out / "config.json").read_text())
    size = sum(p.stat().st_size for p in out.iterdir() if p.suffix == ".safetensors") / 2**20
    decoder, codec = config["decoder"], config["audio_encoder"]
    codec_run, lm_run = _summary(work / "codec"), _summary(work / "lm")
    report = json.loads((out / "evaluation.json").read_text())
    codec_valid = codec_run.get("valid", [{}])
    first, last = codec_valid[0], codec_valid[-1]
    lm_loss = lm_run.get("valid_loss", {})
    ours, untrained = report["codec"]["trained"], report["codec"]["untrained"]
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
    return f"""# Demo MusicGen (trained from scratch on a rendered corpus)

A toy MusicGen that ships with the project so that `python generate.py "Lo-fi funk" --model demo` works offline,
in seconds on a CPU. Rebuilt by `python -m training.demo --install` ({size:.1f} MiB of weights).

## Data
{recipe.clips} clips of {recipe.clip_seconds:g} s at {recipe.sample_rate} Hz rendered offline from generated MIDI
arrangements in 10 styles (80s pop, 90s rock, techno, lo-fi funk, country, jazz, piano ballad, ambient,
orchestral, bossa nova) with the TimGM6mb General MIDI SoundFont (corpus/render.py, seed 0). Each caption
states the style, tempo, key, instruments and whether there are drums. 10% of the clips are held out
(the same ones for the codec and the LM).

## Model
- **Codec**: EnCodec, {codec['sampling_rate']} Hz mono, {codec['num_filters']} filters, latent
  {codec['hidden_size']}, ratios {codec['upsampling_ratios']} ({frame_rate} frames/s), {decoder['num_codebooks']}
  codebooks of {codec['codebook_size']} codes. Trained {codec_run.get('steps', '?')} steps with l1 + multi-scale mel
  losses only (no discriminator); batch and segment in the recipe below.
- **LM**: {decoder['num_hidden_layers']} layers, dim {decoder['hidden_size']}, {decoder['num_attention_heads']} heads,
  {decoder['num_codebooks']} codebooks with the delay pattern, a word lookup-table text conditioner (no T5),
  windows of {config.get('max_duration', '?')} s. Trained {lm_run.get('steps', '?')} steps.

## Metrics (held-out clips)
- Codec validation during training (steps {first.get('step')} -> {last.get('step')}): SI-SNR
  {first.get('si_snr', nan):.2f} dB -> {last.get('si_snr', nan):.2f} dB, mel L1 {first.get('mel', nan):.3f} ->
  {last.get('mel', nan):.3f}.
- Codec on {report['held_out_clips']} held-out clips of {report['seconds']:g} s: SI-SNR {ours['si_snr']:.2f} dB
  (same architecture untrained: {untrained['si_snr']:.2f} dB), mel L1 {ours['mel']:.3f} (untrained
  {untrained['mel']:.3f}).
- LM validation loss (nats per token, mean over codebooks): {lm_loss.get('first', nan):.3f} at step
  {lm_loss.get('first_step')} -> {lm_loss.get('last', nan):.3f} at step {lm_loss.get('last_step')}.
  On held-out clips with their own caption {report['lm']['true_caption']:.3f}, with a caption of another style
  {report['lm']['other_style_caption']:.3f}, with no caption {report['lm']['no_caption']:.3f}.
- The prompt changes the music ({report['generation']['seeds']} seeds x {report['generation']['duration']:g} s,
  top-k {report['generation']['top_k']}, CFG {report['generation']['cfg_coef']:g}; mean and range;
  evaluation.png):

| prompt | audio | onset rate (1/s) | spectral centroid (Hz) | low-band share (< 150 Hz) |
|---|---|---|---|---|
{table}

Training curves: codec_training.png, lm_training.png. Recipe: `{json.dumps(asdict(recipe))}`

## Limits
A toy. It knows only the corpus's ten synthetic styles and General MIDI timbres, at low fidelity (a small
codec trained for about half an hour, without the adversarial losses that make EnCodec sharp: expect hiss);
words outside the captions' vocabulary mean nothing to it, and it was trained on
{config.get('max_duration', '?')} s windows (longer pieces are generated in sliding windows). Use the published
models for real music.
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
    args = parser.parse_args(argv)
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
    print(f"settings: scale={args.scale} work={args.work} out={args.out} seed={args.seed}\nrecipe: {recipe}")
    out = build(recipe, args.work, args.out, args.seed)
    print(f"\nthe demo model is in {out}: python generate.py \"Lo-fi funk\" --model {out} --duration 8")
    return 0

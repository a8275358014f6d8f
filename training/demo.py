"""The bundled demo model, rebuilt by one command: corpus -> codec -> language model -> checkpoints/demo.

    python -m training.demo                       # the real recipe (hours on a 2-core CPU)
    python -m training.demo --scale tiny --work /tmp/demo --out /tmp/demo/model   # a minute: smoke test

Each stage is an ordinary command of this project, printed before it runs, so any of them can be rerun or
tuned by hand:
1. `python -m training.corpus WORK/corpus ...`: captioned music rendered offline (training/corpus.py);
2. `python train.py codec --data WORK/corpus ...`: a small 32 kHz EnCodec;
3. `python train.py lm --data WORK/corpus --codec WORK/codec/export ...`: a small LM with the word table;
then the LM export (codec and text table included) is copied to OUT with a model card (MODEL_CARD.md)
built from the runs' summaries. A stage whose output exists is skipped, and a training stage whose last
checkpoint exists resumes from it, so an interrupted build continues where it stopped.
"""

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


RECIPES = {
    # 32 kHz, 50 frames/s like MusicGen's codec, but 16 filters, 64-d latents and 4 x 1024 codes; a 4-layer LM.
    "demo": Recipe(
        clips=600, clip_seconds=10.0, sample_rate=32_000,
        codec_args=("--n-filters", "16", "--dimension", "64", "--n-q", "4", "--bins", "1024", "--disc-filters", "16",
                    "--segment-seconds", "1", "--batch-size", "8", "--valid-every", "250", "--save-every", "250"),
        codec_steps=3000,
        lm_args=("--dim", "256", "--layers", "4", "--heads", "4", "--text", "lut", "--lut-bins", "512",
                 "--segment-seconds", "8", "--batch-size", "16", "--lr", "1e-3", "--warmup-steps", "200",
                 "--valid-every", "250", "--save-every", "250", "--sample-every", "1000"),
        lm_steps=4000,
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
    ),
}


def run(command: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(part) for part in command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def build(recipe: Recipe, work: Path, out: Path, seed: int) -> Path:
    """Run the three stages (skipping finished ones) and write the model to `out`."""
    corpus, codec, lm = work / "corpus", work / "codec", work / "lm"
    if not (corpus / "manifest.jsonl").is_file():
        run([sys.executable, "-m", "training.corpus", str(corpus), "--count", str(recipe.clips), "--seconds",
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
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(lm / "export", out)
    (out / "MODEL_CARD.md").write_text(model_card(recipe, work, out))
    return out


def _summary(folder: Path) -> dict:
    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def model_card(recipe: Recipe, work: Path, out: Path) -> str:
    """A short card: data, sizes, training, metrics (from the runs' summaries), limits."""
    config = json.loads((out / "config.json").read_text())
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    decoder, codec = config["decoder"], config["audio_encoder"]
    return f"""# Demo MusicGen (trained from scratch on a rendered corpus)

Built by `python -m training.demo` ({size:.1f} MiB). Recipe: `{json.dumps(asdict(recipe))}`

- **Data**: {recipe.clips} clips of {recipe.clip_seconds:g} s rendered offline from generated MIDI arrangements
  in 10 styles with the TimGM6mb General MIDI SoundFont (training/corpus.py); captions state the style,
  tempo, key, instruments and whether there are drums.
- **Codec**: {codec['sampling_rate']} Hz, {codec['num_filters']} filters, latent {codec['hidden_size']},
  ratios {codec['upsampling_ratios']}, {codec['codebook_size']} codes per codebook.
  Training summary: `{json.dumps(_summary(work / 'codec'))}`
- **LM**: dim {decoder['hidden_size']}, {decoder['num_hidden_layers']} layers, {decoder['num_attention_heads']}
  heads, {decoder['num_codebooks']} codebooks, word lookup-table text conditioner (no T5).
  Training summary: `{json.dumps(_summary(work / 'lm'))}`
- **Limits**: a toy. It knows only the corpus's synthetic styles and General MIDI timbres, at low fidelity;
  words outside the captions' vocabulary mean nothing to it. Use the published models for real music.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(RECIPES), default="demo")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "demo", help="corpus and training runs")
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints" / "demo", help="the finished model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    recipe = RECIPES[args.scale]
    print(f"settings: scale={args.scale} work={args.work} out={args.out} seed={args.seed}\nrecipe: {recipe}")
    out = build(recipe, args.work, args.out, args.seed)
    print(f"\nthe demo model is in {out}: python generate.py \"Lo-fi funk\" --model {out} --duration 8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

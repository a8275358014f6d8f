"""What `--denoise` (audio/denoise.py) does to codec reconstructions, next to Opus at 6 kbps.

    python -m corpus data/heldout/corpus --count 8 --seconds 8 --seed 12345 --reverb \\
        --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2                        # not the demo corpus (seed 0)
    (cd data/heldout && apt-get download singularity-music frozen-bubble-data && for d in *.deb; do dpkg -x $d x; done)
    python bench/denoise.py --corpus data/heldout/corpus --out docs/denoise_eval --real-clips 8 \\
        --real data/heldout/x/usr/share/games/singularity/music/*.ogg \\
               data/heldout/x/usr/share/games/frozen-bubble/snd/*zik*.ogg

Held-out clips (mono, 32 kHz, `--seconds` long): every WAV of `--corpus`, and one excerpt from 40 % into each
of `--real-clips` recordings spread over the `--real` files. Each clip goes through
- the bundled demo codec (checkpoints/demo, 4 x 1024 codes at 50 Hz = 2 kbps),
- a codec of the published size (`encodec-32khz`: 64 filters, 4 x 2048 codes, 2.2 kbps) with random weights,
  its codebooks k-means-initialised on the clips' latents (training.demo.evaluate.untrained_codec): an
  untrained codec, whose output has nothing of the music; it is a buzz more than a hiss (tones at multiples
  of 2 kHz from the strided transposed convolutions: flatness above 4 kHz 0.0002),
- each of those followed by the denoiser at every `--strengths`,
- Opus at `--opus-kbps` (Debian opus-tools: opusenc --bitrate, opusdec --rate 32000), when opusenc is found;
  its resamplers' delay of a few samples is removed (see `align`).
Measured against the original clip (mean over clips), with training/demo/codec_eval.py's measures: SI-SNR,
log-mel L1, log-mel L1 above 4 kHz and spectral flatness above 4 kHz.
Also the high-band flatness of clips the demo model generates, with and without the denoiser.
Prints a table per clip set and writes OUT.json and OUT.png (the metrics as bars, and spectrograms of one
real clip through each system).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before bench/, which has a threads.py of its own

import threads  # noqa: E402, I001  (before torch: the CPU thread policy)

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402

from encodec import EncodecModel  # noqa: E402
from encodec.config import get_preset  # noqa: E402
from encodec.mel import mel_filter_bank  # noqa: E402
from inference import MusicGen  # noqa: E402
from audio.denoise import denoise  # noqa: E402
from training.audio_files import probe_audio, read_segment  # noqa: E402
from training.demo.codec_eval import METRICS, CodecMetrics, excerpts, flatness, opus, opus_available  # noqa: E402
from training.demo.evaluate import PROMPTS, reconstructions, untrained_codec  # noqa: E402

RATE = 32_000


def corpus_clips(folder: Path, seconds: float) -> dict[str, torch.Tensor]:
    return {p.stem: read_segment(probe_audio(p), 0.0, seconds, RATE, 1) for p in sorted(folder.glob("*.wav"))}


def systems(demo: EncodecModel, published: EncodecModel, strengths: list[float], kbps: float | None, tmp: Path):
    """{name: function wav [C, N] -> wav [C, N]}: every codec, with and without the denoiser."""
    out = {"original": lambda w: w}
    cache = {}  # (codec name, clip id) -> reconstruction: each clip goes through each codec once

    def coded(name: str, codec: EncodecModel, wav: torch.Tensor) -> torch.Tensor:
        if (name, id(wav)) not in cache:
            cache[(name, id(wav))] = reconstructions(codec, wav[None])[0]  # [C, N]
        return cache[(name, id(wav))]

    for name, codec in (("demo codec", demo), ("random published-size codec", published)):
        out[name] = lambda w, n=name, c=codec: coded(n, c, w)
        for s in strengths:
            out[f"{name} + denoise {s:g}"] = lambda w, n=name, c=codec, s=s: denoise(coded(n, c, w), RATE, s)
    if kbps is not None:
        out[f"opus {kbps:g} kbps"] = lambda w: opus(w, kbps, tmp, RATE)
    return out


def measure(sets: dict[str, dict[str, torch.Tensor]], coders: dict, metrics: CodecMetrics):
    """({set: {system: {metric: mean over clips}}}, {system: (name, output) of the last set's first clip})."""
    table = {}
    for set_name, clips in sets.items():
        table[set_name], example = {}, {}
        for system, code in coders.items():
            rows = []
            for clip_name, wav in clips.items():
                out = code(wav)
                rows.append(metrics(out, wav))
                example.setdefault(system, (clip_name, out))
            kept = ("high_band_flatness",) if system == "original" else METRICS  # the rest compare it to itself
            table[set_name][system] = {m: sum(r[m] for r in rows) / len(rows) for m in kept}
            print(f"  {set_name}: {system} done", flush=True)
    return table, example


def generated_flatness(mg: MusicGen, strengths: list[float], seeds: int, seconds: float) -> dict[str, float]:
    """High-band flatness of clips the demo model generates for the two prompts of training.demo.evaluate
    (piano ballad, techno) over `seeds` seeds, as they come and after the denoiser at each strength."""
    clips = torch.cat([mg.generate(list(PROMPTS.values()), duration=seconds, seed=seed) for seed in range(seeds)])
    result = {f"{len(clips)} clips": sum(flatness(w, RATE) for w in clips) / len(clips)}  # clips [B, C, N]
    for s in strengths:
        result[f"+ denoise {s:g}"] = sum(flatness(denoise(w, mg.sample_rate, s), RATE) for w in clips) / len(clips)
    return result


def print_table(table: dict, counts: dict) -> None:
    for set_name, rows in table.items():
        print(f"\n{set_name} ({counts[set_name]} clips)")
        print(f"{'system':<42} {'SI-SNR dB':>9} {'mel L1':>7} {'>4k L1':>7} {'>4k flat':>8}")
        for system, m in rows.items():
            cells = [f"{m[k]:{w}.{d}f}" if k in m else f"{'-':>{w}}" for k, w, d in
                     (("si_snr", 9, 2), ("mel", 7, 3), ("high_band_mel", 7, 3), ("high_band_flatness", 8, 3))]
            print(f"{system:<42} " + " ".join(cells))


def plot(path: Path, table: dict, example: dict, shown: list[str]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(17, 8.5))
    grid = fig.add_gridspec(2, 4)
    names = list(next(iter(table.values())))
    panels = (("si_snr", "SI-SNR (dB, higher is better)"), ("mel", "log-mel L1"),
              ("high_band_mel", "log-mel L1 above 4 kHz"), ("high_band_flatness", "spectral flatness above 4 kHz"))
    for col, (metric, label) in enumerate(panels):
        ax = fig.add_subplot(grid[0, col])
        for i, (set_name, rows) in enumerate(table.items()):
            values = [rows[n].get(metric, float("nan")) for n in names]
            ax.barh([j + 0.4 * i for j in range(len(names))], values, height=0.4, label=set_name)
        ax.set_yticks([j + 0.2 for j in range(len(names))], names if col == 0 else [""] * len(names),
                      fontsize="small")
        ax.invert_yaxis()
        ax.set_title(label)
        ax.grid(alpha=0.3, axis="x")
    fig.axes[0].legend(fontsize="small")
    bank = mel_filter_bank(RATE, 2048, 96)
    for col, system in enumerate(s for s in shown if s in example):
        clip_name, wav = example[system]
        spec = torch.stft(wav.mean(dim=0), 2048, 512, window=torch.hann_window(2048), return_complex=True)
        mel = 10 * (bank @ spec.abs().pow(2)).clamp(min=1e-10).log10()  # [96, T] dB
        ax = fig.add_subplot(grid[1, col])
        ax.imshow(mel.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=float(mel.max()) - 80)
        ax.set_title(f"{system}\n({clip_name})", fontsize="small")
        ax.set(xlabel="frame (16 ms)", ylabel="mel band" if col == 0 else None)
    fig.suptitle("the denoiser on codec reconstructions of held-out clips (demo codec, random published-size "
                 "codec, Opus)")
    fig.tight_layout()
    fig.savefig(path, dpi=70)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a folder of rendered corpus WAVs")
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="real recordings (any format soundfile reads)")
    parser.add_argument("--real-clips", type=int, default=8, help="excerpts taken from --real (one per file)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--opus-kbps", type=float, default=6.0)
    parser.add_argument("--generated-seeds", type=int, default=2, help="seeds of demo-model clips (2 prompts each)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "denoise_eval", help="writes OUT.json, OUT.png")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    thread_policy = threads.apply_threads(args.threads)
    print(f"settings: {vars(args)}, threads {thread_policy}, torch {torch.__version__}")

    sets = {"corpus (seed 12345)": corpus_clips(args.corpus, args.seconds)}
    if args.real:
        sets["real recordings"] = excerpts(args.real, args.real_clips, args.seconds, RATE)
    counts = {name: len(clips) for name, clips in sets.items()}
    print("clips: " + "; ".join(f"{name}: {', '.join(clips)}" for name, clips in sets.items()))
    mg = MusicGen.from_pretrained(ROOT / "checkpoints" / "demo", device="cpu")
    demo = mg.codec.eval()
    mixed = [w for pair in zip(*(c.values() for c in sets.values()), strict=False) for w in pair]  # alternating sets
    everything = torch.stack(mixed)  # [B, 1, N]: the random codec's k-means sees its first 8, of both sets
    published = untrained_codec(EncodecModel(get_preset("encodec-32khz")), everything, seed=0)
    kbps = args.opus_kbps if opus_available() else None
    if kbps is None:
        print("opusenc/opusdec not found (Debian opus-tools): no Opus row")
    with tempfile.TemporaryDirectory() as tmp:
        table, example = measure(sets, systems(demo, published, args.strengths, kbps, Path(tmp)), CodecMetrics(RATE))
    print_table(table, counts)
    generated = generated_flatness(mg, args.strengths, args.generated_seeds, args.seconds)
    print("\ngenerated by the demo model (" + ", ".join(f"{k} {v:.3f}" for k, v in generated.items()) + ")")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "real"},
              "real_files": [str(p) for p in args.real], "clips": {n: list(c) for n, c in sets.items()},
              "codecs": {"demo": "checkpoints/demo codec, 2 kbps",
                         "random published-size": "encodec-32khz preset, random weights, codebooks k-means-"
                                                  "initialised on the clips' latents, 2.2 kbps"},
              "results": table, "generated_high_band_flatness": generated}
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    shown = ["original", "demo codec", f"demo codec + denoise {args.strengths[0]:g}", f"opus {args.opus_kbps:g} kbps"]
    plot(args.out.with_suffix(".png"), table, example, shown)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

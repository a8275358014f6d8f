"""Evidence for a trained demo model, measured on the corpus clips that training held out.

    python -m training.demo.evaluate checkpoints/demo --corpus runs/demo/corpus

1. Codec: SI-SNR (dB, higher is better) and log-mel L1 distance (lower is better) of the reconstructions of
   held-out clips, against the same codec untrained (random weights; its codebooks k-means-initialised on the
   held-out latents, so that it quantizes something).
2. LM: teacher-forced cross-entropy (nats per token, mean over codebooks) on held-out token windows, given the
   clip's own caption, a caption of another style, and no caption. Lower with the true caption = the text is used.
3. Prompts: clips generated for contrasting prompts over several seeds, described by onset rate, spectral
   centroid and low-band energy share (training/audio_features.py), beside the same features of held-out
   corpus clips of those styles.

Writes OUT/evaluation.json and OUT/evaluation.png (the features per prompt, and a spectrogram of one clip
each); prints a summary table.
"""

import argparse
import json
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from encodec import EncodecModel
from encodec.losses import MelL1Loss, si_snr_loss
from inference import MusicGen
from lm.losses import delayed_cross_entropy, teacher_forcing_inputs
from training.audio_files import AudioFile, probe_audio, read_segment, split_files
from training.captions import read_captioned
from training.demo.audio_features import describe

# Two contrasting captions from the corpus (corpus/styles.py), and the style each was written for.
PROMPTS = {"piano_ballad": "Slow solo piano ballad",
           "techno": "Techno music with a strong, upbeat tempo and high melodic riffs"}
FEATURES = ("onset_rate", "spectral_centroid", "low_band_share")
SAMPLING = {"top_k": 250, "cfg_coef": 3.0}  # MusicGen's defaults, recorded in the report


def held_out_clips(corpus: Path, valid_fraction: float = 0.1, seed: int = 0) -> list[tuple[Path, str, str]]:
    """(path, caption, style) of the clips `train.py` held out of --data CORPUS with these split settings."""
    captioned = read_captioned(corpus)
    _, valid = split_files(captioned.files, valid_fraction, seed)  # the split both training commands make
    styles = {}
    manifest = corpus / "manifest.jsonl"
    if manifest.is_file():
        for line in manifest.read_text().splitlines():
            row = json.loads(line)
            styles[str((corpus / row["path"]).resolve())] = row.get("style", "")
    return [(Path(f.path), captioned.captions[f.path], styles.get(str(Path(f.path).resolve()), "")) for f in valid]


@torch.no_grad()
def codec_metrics(codec: EncodecModel, wavs: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    """Mean SI-SNR (5 s frames) and mel distance of codec(wavs) against wavs [B, C, N]."""
    mel_distance = MelL1Loss(codec.sample_rate)
    si_snr, mel = [], []
    for x in wavs.split(batch_size):
        y = codec.decode(codec.encode(x))[..., : x.shape[-1]]
        si_snr.append(-si_snr_loss(y, x, codec.sample_rate) * len(x))
        mel.append(mel_distance(y, x) * len(x))
    return {"si_snr": float(sum(si_snr) / len(wavs)), "mel": float(sum(mel) / len(wavs))}


def untrained_codec(trained: EncodecModel, wavs: torch.Tensor, seed: int = 0) -> EncodecModel:
    """The trained codec's architecture with fresh random weights, codebooks fitted to the latents of (the first
    8 clips of) `wavs` [B, C, N]."""
    torch.manual_seed(seed)
    codec = EncodecModel(trained.config)
    codec.train()
    with torch.no_grad():
        codec(wavs[:8])  # the first training-mode pass k-means-initialises every codebook
    return codec.eval()


@torch.no_grad()
def lm_losses(mg: MusicGen, codes: torch.Tensor, captions: list[str], other_captions: list[str],
              batch_size: int = 8) -> dict[str, float]:
    """Teacher-forced loss of codes [B, K, T] with the true, other-style, and empty captions."""
    lm, result = mg.lm, {}
    for name, texts in (("true_caption", captions), ("other_style_caption", other_captions),
                        ("no_caption", [""] * len(captions))):
        total = 0.0
        for start in range(0, len(codes), batch_size):
            batch, text = codes[start:start + batch_size], texts[start:start + batch_size]
            states, mask = mg.text(text)
            cond = lm.project_condition(states, mask)  # "" gives the null (zero) condition, as in training
            inputs = teacher_forcing_inputs(batch, lm.config.delays, lm.config.special_token)
            total += float(delayed_cross_entropy(lm(inputs, cond), batch, lm.config.delays).loss) * len(batch)
        result[name] = total / len(codes)
    return result


def prompt_features(mg: MusicGen, seeds: list[int], duration: float) -> tuple[dict, dict]:
    """({style: [features per seed]}, {style: one generated clip [C, N]}) for the PROMPTS."""
    features, examples = defaultdict(list), {}
    for seed in tqdm(seeds, desc="generating", unit="seed"):
        wav = mg.generate(list(PROMPTS.values()), duration=duration, seed=seed, **SAMPLING)  # [2, C, N]
        for style, clip in zip(PROMPTS, wav, strict=True):
            features[style].append(describe(clip, mg.sample_rate))
            examples.setdefault(style, clip)
    return dict(features), examples


def summarize(values: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for name in FEATURES:
        column = torch.tensor([v[name] for v in values])
        out[name] = {"mean": float(column.mean()), "min": float(column.min()), "max": float(column.max())}
    return out


def plot(path: Path, generated: dict, reference: dict, examples: dict, sample_rate: int) -> None:
    from matplotlib.figure import Figure

    from encodec.mel import mel_filter_bank

    fig = Figure(figsize=(15, 7))
    axes = fig.subplots(2, 3)
    colors = {"piano_ballad": "tab:blue", "techno": "tab:red"}
    for ax, name in zip(axes[0], FEATURES, strict=True):
        for i, style in enumerate(PROMPTS):
            for j, (source, label) in enumerate(((generated, "generated"), (reference, "corpus"))):
                values = [v[name] for v in source.get(style, [])]
                x = 2 * i + j + torch.linspace(-0.15, 0.15, max(1, len(values)))[: len(values)]
                ax.scatter(x.tolist(), values, color=colors[style], marker="o" if j == 0 else "x",
                           label=f"{style} ({label})")
        ax.set_xticks([0, 1, 2, 3], ["piano\ngenerated", "piano\ncorpus", "techno\ngenerated", "techno\ncorpus"])
        ax.set_title(name.replace("_", " "))
        ax.grid(alpha=0.3)
    n_fft, hop = 2048, 512
    for ax, style in zip(axes[1], PROMPTS, strict=False):
        clip = examples[style].float().mean(dim=0)
        spec = torch.stft(clip, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().pow(2)
        mel = (mel_filter_bank(sample_rate, n_fft, 96) @ spec).clamp(min=1e-10).log10()
        ax.imshow((10 * mel).numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set(xlabel="frame", ylabel="mel band")
        ax.set_title(textwrap.fill(f'"{PROMPTS[style]}" (seed 0)', 60), fontsize="medium")
    axes[1, 2].axis("off")
    fig.suptitle("demo model: the prompt changes the music (dots: generated, crosses: held-out corpus clips)")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    tmp.replace(path)


def evaluate(model: Path, corpus: Path, seeds: int = 4, duration: float = 8.0, clips: int = 40,
             valid_fraction: float = 0.1) -> tuple[dict, dict, dict, dict]:
    """(report, generated features, corpus features, one generated clip per style); see the module doc."""
    torch.manual_seed(0)
    mg = MusicGen.from_pretrained(model, device="cpu")
    held_out = held_out_clips(corpus, valid_fraction)[:clips]
    print(f"{len(held_out)} held-out clips from {corpus}")
    rate, channels = mg.sample_rate, mg.audio_channels
    seconds = min(duration, mg.max_duration)
    wavs = torch.stack([read_segment(_probe(p), 0.0, seconds, rate, channels) for p, _, _ in held_out])
    report = {"model": str(model), "corpus": str(corpus), "held_out_clips": len(held_out), "seconds": seconds,
              "sample_rate": rate}

    report["codec"] = {"trained": codec_metrics(mg.codec, wavs),
                       "untrained": codec_metrics(untrained_codec(mg.codec, wavs), wavs)}
    codes = torch.cat([mg.codec.encode(x) for x in wavs.split(8)])  # [B, K, T]
    captions = [caption for _, caption, _ in held_out]
    styles = [style for _, _, style in held_out]
    others = [next((c for c, s in zip(captions[i:] + captions[:i], styles[i:] + styles[:i], strict=True)
                    if s != styles[i]), "") for i in range(len(captions))]  # the next clip of another style
    report["lm"] = lm_losses(mg, codes, captions, others)

    generated, examples = prompt_features(mg, list(range(seeds)), duration)
    reference = {style: [describe(w, rate) for w, s in zip(wavs, styles, strict=True) if s == style]
                 for style in PROMPTS}
    report["prompts"] = {style: {"prompt": PROMPTS[style], "generated": summarize(generated[style]),
                                 "corpus": summarize(reference[style]) if reference[style] else None,
                                 "per_seed": generated[style]} for style in PROMPTS}
    report["generation"] = {"seeds": seeds, "duration": duration, **SAMPLING}
    return report, generated, reference, examples


def _probe(path: Path) -> AudioFile:
    audio = probe_audio(path)
    if audio is None:
        raise ValueError(f"cannot read {path}")
    return audio


def print_summary(report: dict) -> None:
    codec = report["codec"]
    print(f"codec  SI-SNR {codec['trained']['si_snr']:6.2f} dB (untrained {codec['untrained']['si_snr']:6.2f})   "
          f"mel L1 {codec['trained']['mel']:.3f} (untrained {codec['untrained']['mel']:.3f})")
    print("LM     loss " + "   ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in report["lm"].items()))
    for style, entry in report["prompts"].items():
        row = "   ".join(f"{k} {v['mean']:.3g} [{v['min']:.3g}, {v['max']:.3g}]" for k, v in entry["generated"].items())
        print(f"{style:<13} {row}")
        if entry["corpus"]:
            row = "   ".join(f"{k} {v['mean']:.3g}" for k, v in entry["corpus"].items())
            print(f"{'  (corpus)':<13} {row}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="the demo model's folder")
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus it was trained on")
    parser.add_argument("--out", type=Path, help="where evaluation.json/.png go (default: the model folder)")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--clips", type=int, default=40, help="held-out clips to measure (at most)")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="the training runs' --valid-fraction")
    args = parser.parse_args(argv)
    out = args.out or args.model
    print(f"settings: model={args.model} corpus={args.corpus} out={out} seeds={args.seeds} "
          f"duration={args.duration} clips={args.clips} valid_fraction={args.valid_fraction}")
    report, generated, reference, examples = evaluate(args.model, args.corpus, args.seeds, args.duration,
                                                      args.clips, args.valid_fraction)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "evaluation.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out / "evaluation.json")
    plot(out / "evaluation.png", generated, reference, examples, report["sample_rate"])
    print_summary(report)
    print(f"wrote {out / 'evaluation.json'} and {out / 'evaluation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

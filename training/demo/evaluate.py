"""Evidence for a trained demo model, measured on the corpus clips that training held out.

    python -m training.demo.evaluate checkpoints/demo --corpus runs/demo/corpus

1. Codec: SI-SNR (dB, higher is better), log-mel L1 distance (lower is better), the same above 4 kHz, and the
   spectral flatness above 4 kHz (hiss) of the reconstructions of held-out clips (training/demo/codec_eval.py),
   against the same codec untrained (random weights; its codebooks k-means-initialised on the held-out
   latents, so that it quantizes something), the codec of the model `--before` names (the previous build) and
   Opus at `--opus-kbps` when Debian's opus-tools are installed; with `--real FILE...`, the same on excerpts of
   real recordings (one per file, up to `--real-clips`).
2. LM: teacher-forced cross-entropy (nats per token, mean over codebooks) on held-out token windows, given the
   clip's own caption, a caption of another style, and no caption. Lower with the true caption = the text is used.
3. Prompts: clips generated for contrasting prompts over several seeds, described by onset rate, spectral
   centroid and low-band energy share (training/audio_features.py), beside the same features of held-out
   corpus clips of those styles; and their high-band flatness, beside the corpus clips' and the
   reconstructions'.
4. Short prompts: each style's base caption alone ("Lo-fi funk", "Country instrumental", ...: what people type),
   over the same seeds, by median frame level (dBFS). Every corpus clip sits within a few dB of its peak most
   of the time (median level -21 to -13 dBFS); a clip whose median is below -30 dBFS is a near-silent bed with
   a few loud hits, which the long prompts of 3. would not reveal.

Writes OUT/evaluation.json and OUT/evaluation.png (the features per prompt, the high-band flatness, and
spectrograms of a generated and a held-out corpus clip per prompt); prints a summary table.
"""

import argparse
import json
import sys
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from corpus.styles import STYLES
from encodec import EncodecModel
from encodec.loading import load_encodec
from inference import MusicGen
from lm.losses import delayed_cross_entropy, teacher_forcing_inputs
from training.audio_files import AudioFile, probe_audio, read_segment, split_files
from training.captions import read_captioned
from training.demo.audio_features import describe, median_level
from training.demo.codec_eval import CodecMetrics, excerpts, flatness, opus, opus_available

# Two contrasting captions from the corpus (corpus/styles.py), and the style each was written for.
PROMPTS = {"piano_ballad": "Slow solo piano ballad",
           "techno": "Techno music with a strong, upbeat tempo and high melodic riffs"}
FEATURES = ("onset_rate", "spectral_centroid", "low_band_share")
SAMPLING = {"top_k": 250, "cfg_coef": 3.0}  # MusicGen's defaults, recorded in the report
SHORT_PROMPTS = {style.name: style.caption for style in STYLES}  # "lofi_funk": "Lo-fi funk", ...
NEAR_SILENT_DB = -30.0  # a median frame level below this is a near-silent clip


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
def reconstructions(codec: EncodecModel, wavs: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """codec.decode(codec.encode(wavs)) for wavs [B, C, N], cut to N."""
    return torch.cat([codec.decode(codec.encode(x))[..., : x.shape[-1]] for x in wavs.split(batch_size)])


def codec_comparison(wavs: torch.Tensor, codecs: dict[str, EncodecModel], opus_kbps: float | None,
                     sample_rate: int) -> dict[str, dict[str, float]]:
    """{system: mean measures (CodecMetrics)} of each codec's reconstructions of wavs [B, C, N], and of Opus at
    `opus_kbps` (None: no Opus row); "original" holds the clips' own high-band flatness."""
    metrics = CodecMetrics(sample_rate)
    table = {"original": {"high_band_flatness": sum(flatness(w, sample_rate) for w in wavs) / len(wavs)}}
    for name, codec in codecs.items():
        table[name] = metrics.mean(zip(reconstructions(codec, wavs), wavs, strict=True))
    if opus_kbps is not None:
        with tempfile.TemporaryDirectory() as tmp:
            coded = [opus(w, opus_kbps, Path(tmp), sample_rate) for w in wavs]
        table[f"opus_{opus_kbps:g}kbps"] = metrics.mean(zip(coded, wavs, strict=True))
    return table


def token_mismatches(a: EncodecModel, b: EncodecModel, rtol: float = 0.0, atol: float = 0.0) -> list[str]:
    """The encoder and codebook tensors (the parts that make tokens) in which codec `b` differs from `a`, within
    the tolerances (0: bit for bit); a tensor `b` lacks or holds in another shape differs."""
    changed = []
    for part in ("encoder", "quantizer"):
        ours, theirs = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        changed += [f"{part}.{k}" for k in ours.keys() | theirs.keys()
                    if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape
                    or not torch.allclose(ours[k], theirs[k], rtol=rtol, atol=atol)]
    return sorted(changed)


def same_tokens(a: EncodecModel, b: EncodecModel) -> bool:
    """Whether two codecs turn audio into the same tokens: the same encoder and codebook tensors, up to the
    rounding of storing folded weight norm (a few float32 ulps)."""
    return not token_mismatches(a, b, rtol=1e-5, atol=1e-7)


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
    """({style: [features per seed]}, {style: one generated clip [C, N]}) for the PROMPTS; the features include
    the high-band flatness."""
    features, examples = defaultdict(list), {}
    for seed in tqdm(seeds, desc="generating", unit="seed"):
        wav = mg.generate(list(PROMPTS.values()), duration=duration, seed=seed, **SAMPLING)  # [2, C, N]
        for style, clip in zip(PROMPTS, wav, strict=True):
            features[style].append(describe(clip, mg.sample_rate)
                                   | {"high_band_flatness": flatness(clip, mg.sample_rate)})
            examples.setdefault(style, clip)
    return dict(features), examples


def short_prompt_levels(mg: MusicGen, seeds: list[int], duration: float) -> dict[str, list[float]]:
    """{style: median frame level (dBFS) per seed} of clips generated for the SHORT_PROMPTS."""
    levels = defaultdict(list)
    for seed in tqdm(seeds, desc="short prompts", unit="seed"):
        wav = mg.generate(list(SHORT_PROMPTS.values()), duration=duration, seed=seed, **SAMPLING)  # [P, C, N]
        for style, clip in zip(SHORT_PROMPTS, wav, strict=True):
            levels[style].append(median_level(clip, mg.sample_rate))
    return dict(levels)


def summarize(values: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for name in FEATURES:
        column = torch.tensor([v[name] for v in values])
        out[name] = {"mean": float(column.mean()), "min": float(column.min()), "max": float(column.max())}
    return out


def plot(path: Path, report: dict, generated: dict, reference: dict, examples: dict, sample_rate: int) -> None:
    from matplotlib.figure import Figure

    from encodec.mel import mel_filter_bank

    fig = Figure(figsize=(19, 8))
    axes = fig.subplots(2, 4)
    colors = {"piano_ballad": "tab:blue", "techno": "tab:red"}
    for ax, name in zip(axes[0], FEATURES, strict=False):
        for i, style in enumerate(PROMPTS):
            for j, (source, label) in enumerate(((generated, "generated"), (reference, "corpus"))):
                values = [v[name] for v in source.get(style, [])]
                x = 2 * i + j + torch.linspace(-0.15, 0.15, max(1, len(values)))[: len(values)]
                ax.scatter(x.tolist(), values, color=colors[style], marker="o" if j == 0 else "x",
                           label=f"{style} ({label})")
        ax.set_xticks([0, 1, 2, 3], ["piano\ngenerated", "piano\ncorpus", "techno\ngenerated", "techno\ncorpus"])
        ax.set_title(name.replace("_", " "))
        ax.grid(alpha=0.3)
    bars = {"generated": report["generated_high_band_flatness"]}
    for key, label in (("codec", "corpus"), ("codec_real", "real")):
        for system, values in report.get(key, {}).items():
            if isinstance(values, dict) and system != "untrained":
                bars[f"{label}: {system}"] = values["high_band_flatness"]
    ax = axes[0, 3]
    ax.barh(list(bars), list(bars.values()), color="tab:gray")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize="small")
    ax.set_title("flatness above 4 kHz (hiss; noise: 0.56)")
    ax.grid(alpha=0.3, axis="x")
    n_fft, hop = 2048, 512
    shown = [name for style in PROMPTS for name in (style, f"{style} (held-out corpus clip)") if name in examples]
    for ax, name in zip(axes[1], shown, strict=False):
        clip = examples[name].float().mean(dim=0)
        spec = torch.stft(clip, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().pow(2)
        mel = 10 * (mel_filter_bank(sample_rate, n_fft, 96) @ spec).clamp(min=1e-10).log10()
        ax.imshow(mel.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=float(mel.max()) - 80)
        ax.set(xlabel="frame", ylabel="mel band")
        title = f'generated: "{PROMPTS[name]}" (seed 0)' if name in PROMPTS else name
        ax.set_title(textwrap.fill(title, 50), fontsize="medium")
    for ax in axes[1, len(shown):]:
        ax.axis("off")
    fig.suptitle("demo model: the prompt changes the music (dots: generated, crosses: held-out corpus clips)")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    tmp.replace(path)


def evaluate(model: Path, corpus: Path, seeds: int = 4, duration: float = 8.0, clips: int = 40,
             valid_fraction: float = 0.1, before: Path | None = None, real: list[Path] = (), real_clips: int = 8,
             opus_kbps: float = 6.0) -> tuple[dict, dict, dict, dict]:
    """(report, generated features, corpus features, example clips {name: [C, N]}); see the module doc."""
    torch.manual_seed(0)
    mg = MusicGen.from_pretrained(model, device="cpu", quantize=None)  # the exact model (CPU default: int8)
    held_out = held_out_clips(corpus, valid_fraction)[:clips]
    print(f"{len(held_out)} held-out clips from {corpus}")
    rate, channels = mg.sample_rate, mg.audio_channels
    seconds = min(duration, mg.max_duration)
    wavs = torch.stack([read_segment(_probe(p), 0.0, seconds, rate, channels) for p, _, _ in held_out])
    report = {"model": str(model), "corpus": str(corpus), "held_out_clips": len(held_out), "seconds": seconds,
              "sample_rate": rate}

    codecs = {"trained": mg.codec, "untrained": untrained_codec(mg.codec, wavs)}
    if before is not None:
        codecs["before"] = load_encodec(before)
        if (codecs["before"].sample_rate, codecs["before"].channels) != (rate, channels):
            raise ValueError(f"--before {before}: its codec runs at {codecs['before'].sample_rate} Hz with "
                             f"{codecs['before'].channels} channels, this model's at {rate} Hz with {channels}")
    kbps = opus_kbps if opus_available() else None
    if kbps is None:
        print("opusenc/opusdec not found (Debian opus-tools): no Opus row")
    report["codec"] = codec_comparison(wavs, codecs, kbps, rate)
    if real:
        recordings = excerpts(real, real_clips, seconds, rate)
        print(f"{len(recordings)} excerpts of real recordings: {', '.join(recordings)}")
        real_wavs = torch.stack(list(recordings.values())).expand(-1, channels, -1)  # [B, C, N]
        codecs.pop("untrained")
        report["codec_real"] = {"clips": list(recordings), **codec_comparison(real_wavs, codecs, kbps, rate)}
    report["codec_before"] = str(before) if before is not None else None
    codes = torch.cat([mg.codec.encode(x) for x in wavs.split(8)])  # [B, K, T]
    captions = [caption for _, caption, _ in held_out]
    styles = [style for _, _, style in held_out]
    others = [next((c for c, s in zip(captions[i:] + captions[:i], styles[i:] + styles[:i], strict=True)
                    if s != styles[i]), "") for i in range(len(captions))]  # the next clip of another style
    report["lm"] = lm_losses(mg, codes, captions, others)
    report["lm_before"] = None
    if before is not None and (Path(before) / "config.json").is_file() and same_tokens(codecs["before"], mg.codec):
        # The previous model's LM read tokens of the same encoder and codebooks: its loss on these is comparable.
        previous = MusicGen.from_pretrained(before, device="cpu", quantize=None)  # float32, as the losses were
        report["lm_before"] = lm_losses(previous, codes, captions, others)

    generated, examples = prompt_features(mg, list(range(seeds)), duration)
    reference = {style: [describe(w, rate) for w, s in zip(wavs, styles, strict=True) if s == style]
                 for style in PROMPTS}
    report["prompts"] = {style: {"prompt": PROMPTS[style], "generated": summarize(generated[style]),
                                 "corpus": summarize(reference[style]) if reference[style] else None,
                                 "per_seed": generated[style]} for style in PROMPTS}
    report["generation"] = {"seeds": seeds, "duration": duration, **SAMPLING}
    every = [f["high_band_flatness"] for style in PROMPTS for f in generated[style]]
    report["generated_high_band_flatness"] = sum(every) / len(every)
    levels = short_prompt_levels(mg, list(range(seeds)), duration)
    corpus_levels = torch.tensor([median_level(w, rate) for w in wavs])
    every = [level for per_seed in levels.values() for level in per_seed]
    report["short_prompts"] = {
        "prompts": SHORT_PROMPTS, "median_level_db": levels, "level_range_db": [min(every), max(every)],
        "near_silent_below_db": NEAR_SILENT_DB, "near_silent": sum(level < NEAR_SILENT_DB for level in every),
        "clips": len(every),
        "corpus_median_level_db": {"min": float(corpus_levels.min()), "median": float(corpus_levels.median())}}
    for style in PROMPTS:
        corpus_clip = next((w for w, s in zip(wavs, styles, strict=True) if s == style), None)
        if corpus_clip is not None:
            examples[f"{style} (held-out corpus clip)"] = corpus_clip
    return report, generated, reference, examples


def _probe(path: Path) -> AudioFile:
    audio = probe_audio(path)
    if audio is None:
        raise ValueError(f"cannot read {path}")
    return audio


def print_summary(report: dict) -> None:
    for key, label in (("codec", "held-out corpus clips"), ("codec_real", "real recordings")):
        if key not in report:
            continue
        print(f"codec on {label}: {'SI-SNR dB':>9} {'mel L1':>7} {'>4k L1':>7} {'>4k flat':>8}")
        for system, m in report[key].items():
            if isinstance(m, dict):
                cells = [f"{m[k]:{w}.{d}f}" if k in m else f"{'-':>{w}}" for k, w, d in
                         (("si_snr", 9, 2), ("mel", 7, 3), ("high_band_mel", 7, 3), ("high_band_flatness", 8, 3))]
                print(f"  {system:<20} " + " ".join(cells))
    print(f"generated clips: high-band flatness {report['generated_high_band_flatness']:.3f}")
    if "short_prompts" in report:  # reports written before the check have none
        short = report["short_prompts"]
        (lowest, highest), corpus = short["level_range_db"], short["corpus_median_level_db"]
        print(f"short prompts: median level {lowest:.1f} to {highest:.1f} dBFS, {short['near_silent']} of "
              f"{short['clips']} clips near-silent (< {short['near_silent_below_db']:g}); held-out corpus clips: "
              f"lowest {corpus['min']:.1f}, median {corpus['median']:.1f}")
    print("LM     loss " + "   ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in report["lm"].items()))
    if report.get("lm_before"):
        print("before loss " + "   ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in report["lm_before"].items()))
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
    parser.add_argument("--before", type=Path, help="a previous model (or codec) whose codec is measured beside")
    parser.add_argument("--real", type=Path, nargs="+", default=[], metavar="FILE",
                        help="real recordings the codec never saw (any format soundfile reads)")
    parser.add_argument("--real-clips", type=int, default=8, help="excerpts taken from --real (one per file)")
    parser.add_argument("--opus-kbps", type=float, default=6.0, help="Opus's bitrate, for comparison")
    args = parser.parse_args(argv)
    out = args.out or args.model
    print(f"settings: model={args.model} corpus={args.corpus} out={out} seeds={args.seeds} "
          f"duration={args.duration} clips={args.clips} valid_fraction={args.valid_fraction} before={args.before} "
          f"real={len(args.real)} files real_clips={args.real_clips} opus_kbps={args.opus_kbps}")
    report, generated, reference, examples = evaluate(args.model, args.corpus, args.seeds, args.duration,
                                                      args.clips, args.valid_fraction, args.before, args.real,
                                                      args.real_clips, args.opus_kbps)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "evaluation.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out / "evaluation.json")
    plot(out / "evaluation.png", report, generated, reference, examples, report["sample_rate"])
    print_summary(report)
    print(f"wrote {out / 'evaluation.json'} and {out / 'evaluation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

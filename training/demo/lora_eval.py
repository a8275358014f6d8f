"""Measure a LoRA adaptation of the demo model (`python -m training.demo.lora` runs it after training).

    python -m training.demo.lora_eval runs/lora-demo [--figure docs/lora_demo.png] [--caption TEXT]

Reads WORK/run (the `train.py lm --lora-rank` run) and WORK/valid.jsonl (the held-out recordings), and reports
into WORK/report.json (and beside the figure, as JSON):
- the held-out loss on the new music without and with the adapter (teacher-forced, on non-silent windows of the
  held-out recordings; the run's own validation, which also reads silent tracks, is reported beside it);
- forgetting: the teacher-forced loss on freshly rendered clips of the demo's own styles (corpus/, a seed it
  never trained on, each with its caption), without and with the adapter;
- generated clips for the caption, without and with the adapter, against windows of the held-out recordings
  (and their codec reconstructions, what this codec can give at best): onset rate, spectral centroid, low-band
  share (training/demo/audio_features.py), and their distance to the recordings' in units of the recordings'
  spread;
- the adapter's size against the LM's.
The figure: log-mel spectrograms of a held-out recording, a clip generated without the adapter and one with it.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import soundfile as sf
import torch
from tqdm.auto import tqdm

from audio.clip import resample
from corpus.render import Synthesizer, default_soundfont, make_clip
from corpus.styles import STYLES
from inference import MusicGen
from lm.losses import delayed_cross_entropy, teacher_forcing_inputs
from training.demo.audio_features import describe
from training.demo.evaluate import FEATURES, SAMPLING

BASE = Path(__file__).resolve().parents[2] / "checkpoints" / "demo"
SECONDS = 8.0


@torch.no_grad()
def teacher_forced_loss(mg: MusicGen, codes: torch.Tensor, captions: list[str], batch_size: int = 8) -> float:
    """Mean teacher-forced cross-entropy of codes [B, K, T] given their captions."""
    lm, total = mg.lm, 0.0
    for start in range(0, len(codes), batch_size):
        batch = codes[start:start + batch_size]
        states, mask = mg.text(captions[start:start + batch_size])
        inputs = teacher_forcing_inputs(batch, lm.config.delays, lm.config.special_token)  # [B, K, T + 1]
        total += float(delayed_cross_entropy(lm(inputs, lm.project_condition(states, mask)), batch,
                                             lm.config.delays).loss) * len(batch)
    return total / len(codes)


def old_style_clips(mg: MusicGen, per_style: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """Codes [B, K, T] and captions of corpus clips of the demo's styles, rendered with `seed`."""
    synth = Synthesizer(sf_path=str(default_soundfont()), sample_rate=max(32000, mg.sample_rate))
    clips = [make_clip(STYLES[i % len(STYLES)], i, seed, SECONDS, mg.sample_rate, synth, True)
             for i in range(per_style * len(STYLES))]
    wav = torch.stack([torch.as_tensor(c.audio, dtype=torch.float32)[None] for c in clips])  # [B, 1, N]
    with torch.no_grad():
        return mg.codec.encode(wav), [c.caption for c in clips]


def recording_windows(manifest: Path, sample_rate: int, per_file: int, floor_db: float = -30.0) -> torch.Tensor:
    """`per_file` windows of SECONDS spread over each recording of a JSONL manifest, mono: [B, 1, N]; near-silent
    windows (RMS below `floor_db` dBFS: the set holds a few silent tracks) are left out."""
    windows = []
    for line in manifest.read_text().splitlines():
        audio, rate = sf.read(json.loads(line)["path"], dtype="float32", always_2d=True)
        wav = resample(torch.from_numpy(audio.T).mean(0, keepdim=True), rate, sample_rate)  # [1, N]
        n = round(SECONDS * sample_rate)
        for i in range(per_file):
            start = (wav.shape[-1] - n) * (i + 1) // (per_file + 1)
            window = wav[:, start:start + n]
            if 20 * torch.log10(window.pow(2).mean().sqrt() + 1e-12) > floor_db:
                windows.append(window)
    return torch.stack(windows)


def features(clips: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """The mean of each feature over clips [B, C, N]."""
    values = [describe(clip, sample_rate) for clip in clips]
    return {name: statistics.mean(v[name] for v in values) for name in FEATURES}


def generate(mg: MusicGen, caption: str, seeds: int, batch: int) -> torch.Tensor:
    clips = [mg.generate([caption] * batch, duration=SECONDS, seed=seed, **SAMPLING)
             for seed in tqdm(range(seeds), desc="generating", unit="seed")]
    return torch.cat(clips)  # [seeds * batch, C, N]


def plot(path: Path, examples: dict[str, torch.Tensor], sample_rate: int, title: str) -> None:
    from matplotlib.figure import Figure

    from encodec.mel import mel_filter_bank

    fig = Figure(figsize=(15, 4))
    n_fft, hop = 2048, 512
    for ax, (name, clip) in zip(fig.subplots(1, len(examples)), examples.items(), strict=True):
        spec = torch.stft(clip.float().mean(0), n_fft, hop, window=torch.hann_window(n_fft),
                          return_complex=True).abs().pow(2)  # [F, frames]
        mel = 10 * (mel_filter_bank(sample_rate, n_fft, 96) @ spec).clamp(min=1e-10).log10()  # [96, frames]
        ax.imshow(mel.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=float(mel.max()) - 80,
                  extent=(0, clip.shape[-1] / sample_rate, 0, 96))
        ax.set(xlabel="seconds", ylabel="mel band", title=name)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    tmp.replace(path)


def evaluate(work: Path, caption: str, seeds: int = 2, batch: int = 2) -> tuple[dict, dict]:
    """(report, examples for the figure)."""
    summary = json.loads((work / "run" / "summary.json").read_text())
    base = MusicGen.from_pretrained(BASE, device="cpu", dtype=torch.float32)
    adapted = MusicGen.from_pretrained(BASE, device="cpu", dtype=torch.float32, lora=work / "run" / "adapter")
    codes, captions = old_style_clips(base, per_style=2, seed=12345)
    real = recording_windows(work / "valid.jsonl", base.sample_rate, per_file=4)  # [B, 1, N]
    with torch.no_grad():
        real_codes = base.codec.encode(real)  # [B, K, T]
        reconstructed = base.codec.decode(real_codes)
    generated = {"without adapter": generate(base, caption, seeds, batch),
                 "with adapter": generate(adapted, caption, seeds, batch)}
    reference = {"held-out recordings": features(real, base.sample_rate),
                 "their codec reconstructions": features(reconstructed, base.sample_rate)}
    spread = {name: statistics.pstdev(describe(c, base.sample_rate)[name] for c in real) or 1.0 for name in FEATURES}
    target = reference["held-out recordings"]
    clips = {}
    for name, wav in generated.items():
        measured = features(wav, base.sample_rate)
        clips[name] = {**measured, "distance_in_spreads": {f: abs(measured[f] - target[f]) / spread[f]
                                                            for f in FEATURES}}
    valid = summary["valid_loss"]
    adapter = summary["adapter"]
    report = {
        "caption": caption, "sampling": SAMPLING, "seconds": SECONDS, "seeds": seeds, "clips_per_seed": batch,
        "held_out_loss": {"windows": len(real), "before": teacher_forced_loss(base, real_codes, [caption] * len(real)),
                          "after": teacher_forced_loss(adapted, real_codes, [caption] * len(real))},
        "validation_loss_of_the_run": {"before": valid["first"], "after": valid["last"], "steps": valid["last_step"],
                                       "note": "train.py's validation windows, silent tracks included"},
        "old_styles_loss": {"clips": len(codes), "without adapter": teacher_forced_loss(base, codes, captions),
                            "with adapter": teacher_forced_loss(adapted, codes, captions)},
        "generated": clips, "reference": reference,
        "adapter": {"file_bytes": adapter["file_bytes"], "parameters": adapter["parameters"],
                    "lm_parameters": adapter["lm_parameters"], "share_of_lm": adapter["share"]},
    }
    rms = real.pow(2).mean(dim=(1, 2))  # [B]
    examples = {"held-out recording (the window of median level)": real[rms.argsort()[len(real) // 2]],
                **{f'{name}: "{caption}"': wav[0] for name, wav in generated.items()}}
    return report, examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure a LoRA adaptation of the demo model.")
    parser.add_argument("work", type=Path)
    parser.add_argument("--figure", type=Path, default=BASE.parents[1] / "docs" / "lora_demo.png")
    parser.add_argument("--caption", required=True)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args(argv)
    report, examples = evaluate(args.work, args.caption, args.seeds)
    text = json.dumps(report, indent=2)
    (args.work / "report.json").write_text(text)
    args.figure.with_suffix(".json").write_text(text)
    loss = report["held_out_loss"]
    plot(args.figure, examples, 32000, f"demo model + LoRA adapter (rank 8, {report['adapter']['file_bytes'] / 1e3:.0f}"
         f" kB): held-out loss {loss['before']:.2f} -> {loss['after']:.2f}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A captioned music corpus that builds offline: generated arrangements rendered with a General MIDI SoundFont.

    python -m corpus data/corpus --count 200 --seconds 10 --seed 0 [--soundfont PATH] [--sample-rate 32000]
                              [--styles techno,jazz] [--chorales 20] [--reverb]

Clip i is in style `STYLES[i % len(styles)]` (see corpus/styles.py): its key, tempo, progression and
instruments are drawn from `np.random.default_rng([seed, i, attempt])`, so a clip does not depend on --count
(the first 3 clips of a 200-clip corpus are the clips of a 3-clip corpus). Each part is rendered from MIDI by
symusic's SoundFont synthesizer; the parts are mixed at the style's levels, cut to --seconds with a short
fade-out, given the style's effect (lo-fi), with --reverb put in a drawn room (corpus/effects.py `room`), and
normalised to a peak of 0.9. With --chorales M, clips
count .. count + M - 1 are Bach chorales from music21's corpus played by a drawn quartet of instruments
(corpus/chorales.py). Files written, with NAME = <style>_<i:05d>:

    OUT_DIR/NAME.wav         mono 16-bit PCM at --sample-rate
    OUT_DIR/NAME.json        {"caption", "style", "tempo", "key", "instruments", "drums", "seconds", ...}
    OUT_DIR/NAME.txt         the caption
    OUT_DIR/NAME.mid         the arrangement as MIDI (what was rendered)
    OUT_DIR/manifest.jsonl   one line per clip: {"path": "NAME.wav", "caption": ..., the same attributes}
    OUT_DIR/settings.json    the resolved settings

The default SoundFont is TimGM6mb.sf2 (GPL-2), shipped inside the pretty_midi wheel; the path is always passed
explicitly, since symusic's own default downloads one. Debian's `fluid-soundfont-gm` (FluidR3_GM.sf2, MIT, 148 MB)
sounds closer to real instruments; the demo recipe renders with it when it is installed.
"""

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import julius
import numpy as np
import pretty_midi
import soundfile as sf
import torch
from symusic import Synthesizer
from tqdm import tqdm

from corpus.arrange import Arrangement
from corpus.effects import normalise_peak, room
from corpus.styles import STYLES, STYLES_BY_NAME, Style, arrange, describe, instrument_names

if TYPE_CHECKING:  # music21 is imported only when chorales are asked for
    from corpus.chorales import Chorale

MAX_ATTEMPTS = 4  # redraws when a rendering is unusable (see `usable`)
# symusic 0.5.9 with TimGM6mb never returns from render() for some programs' highest notes (Clavinet, Vibraphone,
# Electric Guitar (clean) from MIDI 97 at 32 kHz), and the ceiling falls with the output rate (Clavinet from 90 at
# 16 kHz). So the synthesizer always runs at 32 kHz or more (lower rates are resampled after), and no note may be
# above MAX_PITCH: the styles' registers stay below it.
MIN_SYNTH_RATE = 32000
MAX_PITCH = 96


@dataclass(frozen=True)
class Clip:
    """One corpus item: the arrangement, its caption, and its audio `[N]` (float32, peak 0.9)."""

    name: str
    style: str  # a style's name, or "bach_chorale"
    arrangement: Arrangement
    caption: str
    audio: np.ndarray
    seconds: float
    room: dict | None = None  # the reverb's parameters (corpus.effects.room), None when dry

    def metadata(self) -> dict:
        """What the sidecar .json and the manifest say about the clip."""
        return {
            "caption": self.caption,
            "style": self.style,
            "tempo": self.arrangement.tempo,
            "key": self.arrangement.key,
            "instruments": instrument_names(self.arrangement),
            "programs": [p.program for p in self.arrangement.parts if not p.is_drum],
            "drums": self.arrangement.has_drums,
            "seconds": self.seconds,
            **({"room": self.room} if self.room else {}),
        }


def default_soundfont() -> Path:
    """TimGM6mb.sf2, the General MIDI SoundFont inside the installed pretty_midi package."""
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; pass --soundfont PATH to a General MIDI .sf2/.sf3")
    return path


def synth_rate(sample_rate: int) -> int:
    """The rate the SoundFont synthesizer runs at for a corpus at `sample_rate` (see MIN_SYNTH_RATE)."""
    return max(sample_rate, MIN_SYNTH_RATE)


def render_stem(arrangement: Arrangement, synth: Synthesizer) -> np.ndarray:
    """One rendering `[N']` at the synthesizer's rate, the last notes' tails included."""
    highest = max((n.pitch for p in arrangement.parts if not p.is_drum for n in p.notes), default=0)
    if highest > MAX_PITCH:
        raise ValueError(f"note {highest} is above MAX_PITCH={MAX_PITCH}, where the synthesizer can hang")
    return synth.render(arrangement.to_score(), stereo=False)[0].astype(np.float64)


def fit(audio: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad `[N']` to `[n]`."""
    return np.pad(audio[:n], (0, max(0, n - len(audio))))


def render(arrangement: Arrangement, synth: Synthesizer, sample_rate: int, seconds: float) -> np.ndarray:
    """The mix `[N]`, N = seconds * sample_rate: each part rendered alone, scaled to its `level_db` (RMS,
    relative), summed, resampled to `sample_rate` and ended with a 20 ms fade-out.

    The synthesizer has no mixer (a four-note chord is four times as loud as a bass note), so the balance that
    makes "heavy drums" heavy is set here, part by part. `synth` must run at `synth_rate(sample_rate)`.
    """
    rate = synth_rate(sample_rate)
    mix = np.zeros(round(seconds * rate))
    for part in arrangement.parts:
        stem = fit(render_stem(arrangement.solo(part), synth), len(mix))
        rms = float(np.sqrt(np.mean(stem**2)))
        if rms > 0:
            mix += stem * (10 ** (part.level_db / 20) / rms)
    if rate != sample_rate:
        mix = julius.resample_frac(torch.from_numpy(mix).float(), rate, sample_rate).double().numpy()
    mix = fit(mix, round(seconds * sample_rate))
    fade = min(len(mix), round(0.02 * sample_rate))
    mix[len(mix) - fade:] *= np.linspace(1.0, 0.0, fade)
    return mix


def usable(audio: np.ndarray) -> bool:
    """Finite, not silent, and not blown up (TimGM6mb's "Whistle" renders middle C as 1e26, for one)."""
    return bool(np.isfinite(audio).all()) and float(np.sqrt(np.mean(audio**2))) > 1e-4 and np.abs(audio).max() < 20


def make_clip(style: Style, index: int, seed: int, seconds: float, sample_rate: int, synth: Synthesizer,
              reverb: bool = False) -> Clip:
    """Draw, render and caption clip `index` of a style (the synthesizer must run at `sample_rate`), in a drawn
    room when `reverb` (the caption does not mention the room; the metadata records it)."""
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, index, attempt])
        arrangement = arrange(style, seconds, rng)
        audio = render(arrangement, synth, sample_rate, seconds)
        if style.effect is not None:
            audio = style.effect(audio, sample_rate, rng)
        parameters = None
        if reverb:
            audio, parameters = room(audio, sample_rate, rng)
        if usable(audio):
            return Clip(name=f"{style.name}_{index:05d}", style=style.name, arrangement=arrangement,
                        caption=describe(style.caption, arrangement), audio=normalise_peak(audio), seconds=seconds,
                        room=parameters)
    raise RuntimeError(f"clip {index} ({style.name}): no usable rendering in {MAX_ATTEMPTS} attempts")


def make_chorale_clip(chorale: "Chorale", index: int, seed: int, seconds: float, sample_rate: int,
                      synth: Synthesizer, reverb: bool = False) -> Clip:
    """Clip `index`: a Bach chorale on a drawn ensemble and tempo (see corpus/chorales.py; needs music21)."""
    from corpus.chorales import arrange_chorale  # music21 is needed only for chorales

    rng = np.random.default_rng([seed, index])
    arrangement, base_caption = arrange_chorale(chorale, seconds, rng)
    audio = render(arrangement, synth, sample_rate, seconds)
    parameters = None
    if reverb:
        audio, parameters = room(audio, sample_rate, rng)
    if not usable(audio):
        raise RuntimeError(f"clip {index} (chorale {chorale.name}): unusable rendering")
    return Clip(name=f"bach_chorale_{index:05d}", style="bach_chorale", arrangement=arrangement,
                caption=describe(base_caption, arrangement), audio=normalise_peak(audio), seconds=seconds,
                room=parameters)


def write_clip(clip: Clip, out_dir: Path, sample_rate: int) -> dict:
    """Write NAME.wav/.json/.txt/.mid; return the manifest line."""
    sf.write(out_dir / f"{clip.name}.wav", clip.audio, sample_rate, subtype="PCM_16")
    clip.arrangement.to_score().dump_midi(str(out_dir / f"{clip.name}.mid"))
    (out_dir / f"{clip.name}.txt").write_text(clip.caption + "\n")
    (out_dir / f"{clip.name}.json").write_text(json.dumps(clip.metadata(), indent=2) + "\n")
    return {"path": f"{clip.name}.wav", **clip.metadata()}


def build_corpus(out_dir: str | Path, count: int, seconds: float, seed: int, sample_rate: int = 32000,
                 soundfont: str | Path | None = None, styles: tuple[Style, ...] = STYLES, chorales: int = 0,
                 progress: bool = True, reverb: bool = False) -> list[dict]:
    """Render `count` generated clips, then `chorales` Bach chorale clips (indices count, count + 1, ...), into
    `out_dir` (created) and write manifest.jsonl; returns the manifest lines. `reverb` puts each clip in a drawn
    room (corpus.effects.room)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    synth = Synthesizer(sf_path=str(soundfont or default_soundfont()), sample_rate=synth_rate(sample_rate))
    records = []
    for index in tqdm(range(count), desc="clips", disable=not progress):
        clip = make_clip(styles[index % len(styles)], index, seed, seconds, sample_rate, synth, reverb)
        records.append(write_clip(clip, out_dir, sample_rate))
    if chorales > 0:
        from corpus.chorales import pick_chorales  # music21 is needed only for chorales

        for j, chorale in enumerate(tqdm(pick_chorales(chorales, seed), desc="chorales", disable=not progress)):
            clip = make_chorale_clip(chorale, count + j, seed, seconds, sample_rate, synth, reverb)
            records.append(write_clip(clip, out_dir, sample_rate))
    with open(out_dir / "manifest.jsonl", "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m corpus", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, default=100, help="number of clips (styles in turn)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=32000)
    parser.add_argument("--soundfont", type=Path, default=None, help="General MIDI .sf2/.sf3 (default: TimGM6mb)")
    parser.add_argument("--chorales", type=int, default=0,
                        help="number of Bach chorale clips to add after --count (needs music21)")
    parser.add_argument("--styles", default=",".join(STYLES_BY_NAME),
                        help=f"comma-separated subset of: {', '.join(STYLES_BY_NAME)}")
    parser.add_argument("--reverb", action="store_true",
                        help="put each clip in a drawn room (RT60 0.2-1.6 s, recorded in its metadata)")
    args = parser.parse_args()
    unknown = [s for s in args.styles.split(",") if s not in STYLES_BY_NAME]
    if unknown:
        parser.error(f"unknown styles {unknown}; known: {list(STYLES_BY_NAME)}")
    styles = tuple(STYLES_BY_NAME[s] for s in args.styles.split(","))
    settings = {"out_dir": str(args.out_dir), "count": args.count, "seconds": args.seconds, "seed": args.seed,
                "sample_rate": args.sample_rate, "soundfont": str(args.soundfont or default_soundfont()),
                "styles": [s.name for s in styles], "chorales": args.chorales, "reverb": args.reverb}
    print(json.dumps(settings, indent=2))

    start = time.perf_counter()
    records = build_corpus(args.out_dir, args.count, args.seconds, args.seed, args.sample_rate,
                           settings["soundfont"], styles, args.chorales, reverb=args.reverb)
    elapsed = time.perf_counter() - start
    (args.out_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    size = sum(f.stat().st_size for f in args.out_dir.iterdir() if f.is_file())
    audio_seconds = len(records) * args.seconds
    print(f"{len(records)} clips, {audio_seconds / 60:.1f} min of audio in {elapsed:.1f} s "
          f"({audio_seconds / max(elapsed, 1e-9):.0f}x real time), {size / 2**20:.1f} MiB in {args.out_dir}")


"""Synthetic music-like audio for tests and demos: tones, chords and noise bursts, written as wav files.

Each clip is a few events placed at random onsets on a silent track and summed:
- a *tone*: a note of the equal-tempered scale with a few decaying harmonics (1/k amplitudes),
- a *chord*: three or four such notes together (major, minor, seventh),
- a *noise burst*: white noise, low-passed by a one-pole filter, with a fast exponential decay (a drum hit).
Notes get a short linear attack and an exponential release so that clips have onsets and decays, the
structure a codec must reproduce. The clip is normalised to a peak of 0.8.

    python -m corpus.tones DIR --count 64 --seconds 2 --sample-rate 16000 --seed 0
"""

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

CHORDS = {"major": (0, 4, 7), "minor": (0, 3, 7), "seventh": (0, 4, 7, 10)}


def midi_to_hz(note: float) -> float:
    """Equal temperament, A4 (MIDI 69) = 440 Hz."""
    return 440.0 * 2.0 ** ((note - 69) / 12)


def envelope(n: int, sample_rate: int, attack: float = 0.01, decay: float = 0.4) -> np.ndarray:
    """[n] linear attack of `attack` seconds, then exp(-t / decay)."""
    t = np.arange(n) / sample_rate
    return np.minimum(t / attack, 1.0) * np.exp(-t / decay)


def tone(note: float, n: int, sample_rate: int, harmonics: int = 4, decay: float = 0.4) -> np.ndarray:
    """[n] a note with `harmonics` partials of amplitude 1/k, none above Nyquist."""
    t = np.arange(n) / sample_rate
    f0 = midi_to_hz(note)
    out = np.zeros(n)
    for k in range(1, harmonics + 1):
        if k * f0 < sample_rate / 2:
            out += np.sin(2 * np.pi * k * f0 * t) / k
    return out * envelope(n, sample_rate, decay=decay)


def chord(root: float, kind: str, n: int, sample_rate: int) -> np.ndarray:
    """[n] the notes of a chord shape (see CHORDS) on `root`, each at 1/len amplitude."""
    intervals = CHORDS[kind]
    return sum(tone(root + i, n, sample_rate, decay=0.8) for i in intervals) / len(intervals)


def noise_burst(n: int, sample_rate: int, rng: np.random.Generator, cutoff: float = 0.3) -> np.ndarray:
    """[n] decaying white noise through a one-pole low-pass y[t] = y[t-1] + cutoff * (x[t] - y[t-1])."""
    x = rng.standard_normal(n) * envelope(n, sample_rate, attack=0.002, decay=0.05)
    y = np.empty(n)
    acc = 0.0
    for i in range(n):  # n is small (a fraction of a second)
        acc += cutoff * (x[i] - acc)
        y[i] = acc
    return y


def synth_clip(rng: np.random.Generator, seconds: float, sample_rate: int, events_per_second: float = 3.0
               ) -> np.ndarray:
    """A clip of `seconds` [N] with about `events_per_second` random tones, chords and noise bursts."""
    N = int(round(seconds * sample_rate))
    out = np.zeros(N)
    for _ in range(max(1, rng.poisson(events_per_second * seconds))):
        start = int(rng.integers(0, N))
        length = min(N - start, int(rng.uniform(0.1, 0.8) * sample_rate))
        if length < 8:
            continue
        kind = rng.choice(["tone", "chord", "noise"], p=[0.45, 0.35, 0.2])
        if kind == "tone":
            event = tone(rng.integers(48, 84), length, sample_rate)
        elif kind == "chord":
            event = chord(rng.integers(48, 72), str(rng.choice(list(CHORDS))), length, sample_rate)
        else:
            event = noise_burst(min(length, sample_rate // 4), sample_rate, rng, cutoff=rng.uniform(0.1, 0.9))
        out[start:start + event.shape[0]] += rng.uniform(0.3, 1.0) * event
    peak = np.abs(out).max()
    return out * (0.8 / peak) if peak > 0 else out


def write_synthetic_dataset(folder: str | Path, count: int, seconds: float = 2.0, sample_rate: int = 16_000,
                            seed: int = 0) -> list[Path]:
    """Write `count` mono clips as `folder/synth_{i:05d}.wav` (16-bit PCM). Returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"synth_{i:05d}.wav"
        sf.write(path, synth_clip(rng, seconds, sample_rate).astype(np.float32), sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m corpus.tones",
                                     description="Write synthetic music-like wav files (tones, chords, noise).")
    parser.add_argument("folder", help="output folder (created if missing)")
    parser.add_argument("--count", type=int, default=32, help="number of clips")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each clip")
    parser.add_argument("--sample-rate", type=int, default=16_000, help="Hz")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    args = parser.parse_args(argv)
    paths = write_synthetic_dataset(args.folder, args.count, args.seconds, args.sample_rate, args.seed)
    print(f"wrote {len(paths)} clips of {args.seconds} s at {args.sample_rate} Hz to {args.folder}")


if __name__ == "__main__":
    main()

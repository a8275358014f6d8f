"""Part generators: bass lines, chord rhythms, melodies, riffs and drum grids over a chord progression.

Every generator has the signature `(ctx, rng, **settings) -> list[NoteEvent]`; a style fixes the settings with
`functools.partial`, so a clip only supplies its `Context` (key and one chord per bar) and its random generator.
Registers (`low`, `high`) are MIDI pitches; rhythms are `(onset, length)` pairs in beats within one bar.

Drum grids are one bar of sixteenth notes per GM drum sound, written the way drummers read them:

    {Drum.KICK: "x.....x.x.......", Drum.SNARE: "....X.......X...", Drum.CLOSED_HAT: "x.x.x.x.x.x.x.x."}

`X` is an accent, `x` a normal hit, `o` a ghost note, `.` a rest.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from corpus.arrange import BEATS_PER_BAR, Chord, NoteEvent, place, scale_pitches, voicing


class Drum(IntEnum):
    """General MIDI percussion sounds: the note numbers of the drum channel."""

    ACOUSTIC_KICK = 35
    KICK = 36
    SIDE_STICK = 37
    SNARE = 38
    CLAP = 39
    ELECTRIC_SNARE = 40
    CLOSED_HAT = 42
    PEDAL_HAT = 44
    LOW_TOM = 45
    OPEN_HAT = 46
    CRASH = 49
    HIGH_TOM = 50
    RIDE = 51
    TAMBOURINE = 54
    SHAKER = 70  # "Maracas"


GRID_VELOCITY = {"X": 118, "x": 92, "o": 48}

Rhythm = tuple[tuple[float, float], ...]  # (onset, length) in beats within one bar


@dataclass(frozen=True)
class Context:
    """What every part of a clip shares: the key and the chord of each bar."""

    tonic: int
    mode: str
    harmony: tuple[Chord, ...]  # one chord per bar

    @property
    def bars(self) -> int:
        return len(self.harmony)


Player = Callable[[Context, np.random.Generator], list[NoteEvent]]  # a generator with its settings fixed


def velocity(rng: np.random.Generator, base: int, spread: int = 6) -> int:
    """A slightly humanised MIDI velocity around `base`."""
    return int(np.clip(base + rng.integers(-spread, spread + 1), 1, 127))


# ---------------------------------------------------------------------------------------------------- bass lines


def bass_pulse(ctx: Context, rng: np.random.Generator, step: float, low: int, base: int = 96,
               octaves: bool = False) -> list[NoteEvent]:
    """The chord root repeated every `step` beats (rock and pop eighths); `octaves` alternates root and octave."""
    notes = []
    for bar, chord in enumerate(ctx.harmony):
        root = place(chord.root, low)
        for i in range(int(BEATS_PER_BAR / step)):
            pitch = root + 12 if octaves and i % 2 else root
            notes.append(NoteEvent(bar * BEATS_PER_BAR + i * step, step * 0.85, pitch, velocity(rng, base)))
    return notes


def bass_offbeat(ctx: Context, rng: np.random.Generator, low: int, base: int = 100) -> list[NoteEvent]:
    """Techno bass: short root notes on every off-beat eighth, between the kicks."""
    return [NoteEvent(bar * BEATS_PER_BAR + beat + 0.5, 0.35, place(chord.root, low), velocity(rng, base))
            for bar, chord in enumerate(ctx.harmony) for beat in range(BEATS_PER_BAR)]


def bass_root_fifth(ctx: Context, rng: np.random.Generator, low: int, base: int = 92) -> list[NoteEvent]:
    """Country "boom-chicka" bass: root on beat 1, fifth (below) on beat 3, quarter notes."""
    notes = []
    for bar, chord in enumerate(ctx.harmony):
        root, fifth = place(chord.root, low), place(chord.tones[2], low - 5)  # the fifth may dip a little lower
        notes.append(NoteEvent(bar * BEATS_PER_BAR, 0.9, root, velocity(rng, base)))
        notes.append(NoteEvent(bar * BEATS_PER_BAR + 2, 0.9, fifth, velocity(rng, base - 6)))
    return notes


def walking_bass(ctx: Context, rng: np.random.Generator, low: int, base: int = 90) -> list[NoteEvent]:
    """Jazz walking bass: four quarters a bar; root on 1, chord tones on 2 and 3, a half-step approach on 4."""
    notes = []
    for bar, chord in enumerate(ctx.harmony):
        following = ctx.harmony[(bar + 1) % ctx.bars]
        root = place(chord.root, low)
        middle = [place(int(t), root) for t in rng.permutation(chord.tones[1:])[:2]]
        target = place(following.root, low)
        approach = target + (1 if rng.random() < 0.5 else -1)
        for beat, pitch in enumerate([root, *middle, approach]):
            notes.append(NoteEvent(bar * BEATS_PER_BAR + beat, 0.95, pitch, velocity(rng, base - 8 * (beat % 2))))
    return notes


FUNK_BASS_RHYTHMS = (  # (onset in beats, interval above the root in semitones)
    ((0, 0), (0.75, 0), (1.5, 12), (2.0, 0), (2.75, 10), (3.5, 7)),
    ((0, 0), (0.5, 12), (1.25, 0), (2.0, 0), (2.5, 7), (3.0, 10), (3.75, 0)),
    ((0, 0), (0.75, 0), (1.0, 12), (2.25, 0), (3.0, 7), (3.5, 12)),
)


def funk_bass(ctx: Context, rng: np.random.Generator, low: int, base: int = 96) -> list[NoteEvent]:
    """A syncopated one-bar funk bass figure (root, octave, fifth, flat seventh), repeated on each bar's root."""
    figure = FUNK_BASS_RHYTHMS[rng.integers(len(FUNK_BASS_RHYTHMS))]
    return [NoteEvent(bar * BEATS_PER_BAR + onset, 0.3, place(chord.root, low) + interval, velocity(rng, base))
            for bar, chord in enumerate(ctx.harmony) for onset, interval in figure]


def bass_rhythm(ctx: Context, rng: np.random.Generator, rhythm: Rhythm, low: int, base: int = 88,
                fifths: bool = False) -> list[NoteEvent]:
    """The root on a fixed rhythm each bar (held notes for ballads, bossa); `fifths` plays every other on the fifth."""
    notes = []
    for bar, chord in enumerate(ctx.harmony):
        root, fifth = place(chord.root, low), place(chord.tones[2], low)
        for i, (onset, length) in enumerate(rhythm):
            pitch = fifth if fifths and i % 2 else root
            notes.append(NoteEvent(bar * BEATS_PER_BAR + onset, length, pitch, velocity(rng, base)))
    return notes


# ---------------------------------------------------------------------------------------------------- harmony


def chord_rhythm(ctx: Context, rng: np.random.Generator, rhythms: tuple[Rhythm, ...], low: int,
                 base: int = 80) -> list[NoteEvent]:
    """Block chords (close voicing above `low`) on one of `rhythms`, chosen per clip: pads hold the bar,
    stabs and comping hit and stop."""
    rhythm = rhythms[rng.integers(len(rhythms))]
    notes = []
    for bar, chord in enumerate(ctx.harmony):
        pitches = voicing(chord, low)
        for onset, length in rhythm:
            v = velocity(rng, base)
            notes.extend(NoteEvent(bar * BEATS_PER_BAR + onset, length, p, v) for p in pitches)
    return notes


def power_chords(ctx: Context, rng: np.random.Generator, low: int, base: int = 108) -> list[NoteEvent]:
    """Rock rhythm guitar: root, fifth and octave on every eighth note, the down-beats accented."""
    notes = []
    for bar, chord in enumerate(ctx.harmony):
        root = place(chord.root, low)
        for i in range(2 * BEATS_PER_BAR):
            v = velocity(rng, base + (10 if i % 2 == 0 else 0))
            notes.extend(NoteEvent(bar * BEATS_PER_BAR + i * 0.5, 0.45, p, v) for p in (root, root + 7, root + 12))
    return notes


def strum(ctx: Context, rng: np.random.Generator, rhythms: tuple[Rhythm, ...], low: int,
          base: int = 78) -> list[NoteEvent]:
    """Guitar strums on one of `rhythms`: six strings' worth of chord tones, each a little after the one before."""
    rhythm = rhythms[rng.integers(len(rhythms))]
    notes = []
    for bar, chord in enumerate(ctx.harmony):
        close = voicing(chord, low)
        strings = [*close[:3], *(p + 12 for p in close[:3])]
        for i, (onset, length) in enumerate(rhythm):
            order = strings if i % 2 == 0 else strings[::-1]  # down-strum, then up-strum
            v = velocity(rng, base - (12 if i % 2 else 0))
            for k, p in enumerate(order):
                notes.append(NoteEvent(bar * BEATS_PER_BAR + onset + 0.015 * k, length, p, v))
    return notes


def arpeggio(ctx: Context, rng: np.random.Generator, step: float, low: int, base: int = 70) -> list[NoteEvent]:
    """Broken chords (root, fifth, octave, tenth, ...) every `step` beats: a pianist's left hand."""
    notes = []
    for bar, chord in enumerate(ctx.harmony):
        root = place(chord.root, low)
        shape = [root, place(chord.tones[2], root), root + 12, place(chord.tones[1], root + 12)]
        shape = shape + shape[-2:0:-1]  # up then down: 1 5 8 10 8 5
        for i in range(int(BEATS_PER_BAR / step)):
            notes.append(NoteEvent(bar * BEATS_PER_BAR + i * step, 2 * step, shape[i % len(shape)],
                                   velocity(rng, base - (8 if i % 2 else 0))))
    return notes


# ---------------------------------------------------------------------------------------------------- melodies


def melody(ctx: Context, rng: np.random.Generator, cells: tuple[Rhythm, ...], low: int, high: int,
           base: int = 92) -> list[NoteEvent]:
    """A melody in two-bar phrases: each phrase's rhythm is played twice (call and answer), pitches walk the
    scale by small steps, and notes on the beat land on the nearest tone of the current chord."""
    pitches = scale_pitches(ctx.tonic, ctx.mode, low, high)
    index = len(pitches) // 2
    notes = []
    phrase: list[Rhythm] = []
    for bar, chord in enumerate(ctx.harmony):
        if bar % 4 == 0:  # a new rhythm every four bars, each used for two bars
            phrase = [cells[rng.integers(len(cells))] for _ in range(2)]
        for onset, length in phrase[bar % 2]:
            index = int(np.clip(index + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, len(pitches) - 1))
            if onset == int(onset):  # on the beat: snap to the closest chord tone in the scale
                tones = [i for i, p in enumerate(pitches) if p % 12 in chord.tones]
                index = min(tones, key=lambda i: abs(i - index))
            notes.append(NoteEvent(bar * BEATS_PER_BAR + onset, length, pitches[index], velocity(rng, base)))
    return notes


def riff(ctx: Context, rng: np.random.Generator, low: int, high: int, base: int = 96) -> list[NoteEvent]:
    """A repeating one-bar sixteenth-note riff in a high register (techno): the same rhythm and chord-tone
    shape every bar, moved to each bar's chord."""
    steps = [0] + [s for s in range(1, 16) if rng.random() < 0.55]
    shape = rng.integers(0, 5, size=16)  # which tone: root, third, fifth, octave, octave + third
    notes = []
    for bar, chord in enumerate(ctx.harmony):
        root = place(chord.root, low)
        tones = [root, place(chord.tones[1], root), place(chord.tones[2], root), root + 12,
                 place(chord.tones[1], root + 12)]
        for s in steps:
            pitch = tones[shape[s]]
            if pitch > high:  # an octave down rather than above the register
                pitch -= 12
            accent = 10 if s % 4 == 0 else 0
            notes.append(NoteEvent(bar * BEATS_PER_BAR + s * 0.25, 0.2, pitch, velocity(rng, base + accent)))
    return notes


# ---------------------------------------------------------------------------------------------------- drums


def drums(ctx: Context, rng: np.random.Generator, grids: tuple[dict[Drum, str], ...], crash_every: int = 0,
          gain: float = 1.0) -> list[NoteEvent]:
    """A drum groove: one of `grids`, chosen per clip, every bar; a crash on the first beat every `crash_every`
    bars (0: never). `gain` scales the velocities (soft brushes < 1 < loud rock)."""
    grid = grids[rng.integers(len(grids))]
    notes = []
    for bar in range(ctx.bars):
        if crash_every and bar % crash_every == 0:
            notes.append(NoteEvent(bar * BEATS_PER_BAR, 1.0, int(Drum.CRASH), velocity(rng, int(110 * gain))))
        for sound, hits in grid.items():
            for step, mark in enumerate(hits):
                if mark in GRID_VELOCITY:
                    v = velocity(rng, int(GRID_VELOCITY[mark] * gain))
                    notes.append(NoteEvent(bar * BEATS_PER_BAR + step * 0.25, 0.25, int(sound), v))
    return notes


def together(ctx: Context, rng: np.random.Generator, players: tuple[Player, ...]) -> list[NoteEvent]:
    """Several generators played by one instrument, e.g. a pianist's left-hand arpeggios and right-hand melody."""
    return [note for play in players for note in play(ctx, rng)]

"""A small symbolic arrangement: parts of notes placed in beats over a key and a chord progression.

An `Arrangement` is what a style generator produces and what a caption describes: tempo, key, and one `Part`
per instrument (a General MIDI program, or the drum kit). It becomes a MIDI score with `to_score()`, which is
what the SoundFont synthesizer renders.

    harmony = progression(tonic=9, mode="minor", degrees=(0, 5, 2, 6), bars=8, bars_per_chord=1, sevenths=False)
    harmony[0]                          # Chord(root=9, tones=(9, 0, 4)) -- A minor, as pitch classes
    place(9, low=36)                    # 45: the lowest A at or above C2

Times are in beats (quarter notes), 4 beats to the bar. Swing is applied when the score is written: with
`swing=0.62` and `swing_unit=1.0` an off-beat eighth note at beat 0.5 plays at beat 0.62 (jazz, country
shuffle); with `swing_unit=0.5` the same is done to sixteenth notes (lo-fi, funk).
"""

from dataclasses import dataclass, replace

from symusic import Note, Score, Tempo, TimeSignature, Track

TICKS_PER_BEAT = 480
BEATS_PER_BAR = 4

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}  # natural minor
# Spelling of each pitch class as a tonic: flats for the flat major keys, sharps for the sharp minor keys.
MAJOR_KEY_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


@dataclass(frozen=True)
class NoteEvent:
    """One note: onset and length in beats, MIDI pitch (the GM drum sound on a drum part), velocity 1-127."""

    start: float
    length: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Part:
    """The notes one instrument plays. `program` is the General MIDI program (0-127); ignored for drums."""

    role: str  # what it does in the arrangement: "bass", "chords", "melody", "drums", ...
    program: int
    is_drum: bool
    notes: tuple[NoteEvent, ...]
    level_db: float = 0.0  # loudness (RMS) of this part in the mix, relative to the others


@dataclass(frozen=True)
class Chord:
    """A chord as pitch classes: `root` (0-11) and `tones` (root first, then third, fifth, maybe seventh)."""

    root: int
    tones: tuple[int, ...]


@dataclass(frozen=True)
class Arrangement:
    """A whole piece: tempo in BPM (quarter notes per minute), key, swing, and its parts."""

    tempo: int
    tonic: int  # pitch class 0-11
    mode: str  # "major" or "minor"
    bars: int
    parts: tuple[Part, ...]
    swing: float = 0.5  # where the off-beat of each swing unit lands, as a fraction of the unit (0.5: straight)
    swing_unit: float = 1.0  # in beats: 1.0 swings eighth notes, 0.5 sixteenth notes

    @property
    def key(self) -> str:
        """The key as people write it, e.g. "F# minor"."""
        names = MAJOR_KEY_NAMES if self.mode == "major" else MINOR_KEY_NAMES
        return f"{names[self.tonic]} {self.mode}"

    @property
    def has_drums(self) -> bool:
        return any(part.is_drum for part in self.parts)

    def solo(self, part: Part) -> "Arrangement":
        """The same piece with only one part playing (a stem)."""
        return replace(self, parts=(part,))

    def to_score(self) -> Score:
        """The arrangement as a symusic MIDI score (ticks, one track per part, drums on the GM drum channel)."""
        score = Score(TICKS_PER_BEAT)
        score.tempos.append(Tempo(0, qpm=float(self.tempo)))
        score.time_signatures.append(TimeSignature(0, BEATS_PER_BAR, 4))
        for part in self.parts:
            track = Track(part.role, program=part.program, is_drum=part.is_drum)
            for note in part.notes:
                start = self.swung(note.start)
                end = max(self.swung(note.start + note.length), start + 0.05)
                track.notes.append(Note(ticks(start), ticks(end) - ticks(start), note.pitch, note.velocity))
            score.tracks.append(track)
        return score

    def swung(self, beat: float) -> float:
        """Move a time in beats by the swing: the first half of each unit stretches to `swing`, the rest shrinks.

        Example (swing=0.62, unit=1.0): 0.0 -> 0.0, 0.25 -> 0.31, 0.5 -> 0.62, 0.75 -> 0.81, 1.0 -> 1.0.
        """
        unit = self.swing_unit
        whole, frac = divmod(beat / unit, 1.0)
        early = frac < 0.5
        frac = frac / 0.5 * self.swing if early else self.swing + (frac - 0.5) / 0.5 * (1.0 - self.swing)
        return (whole + frac) * unit


def ticks(beats: float) -> int:
    return round(beats * TICKS_PER_BEAT)


def place(pitch_class: int, low: int) -> int:
    """The lowest MIDI pitch at or above `low` with this pitch class."""
    return low + (pitch_class - low) % 12


def diatonic_chord(tonic: int, mode: str, degree: int, sevenths: bool) -> Chord:
    """The chord built in thirds on a scale degree (0 = I, 4 = V, ...) of the key, so its quality is diatonic."""
    scale = SCALES[mode]
    steps = (0, 2, 4, 6) if sevenths else (0, 2, 4)
    tones = tuple((tonic + scale[(degree + s) % 7]) % 12 for s in steps)
    return Chord(root=tones[0], tones=tones)


def progression(
    tonic: int, mode: str, degrees: tuple[int, ...], bars: int, bars_per_chord: int, sevenths: bool
) -> list[Chord]:
    """One chord per bar: the degrees repeated, each held for `bars_per_chord` bars, cut to `bars`."""
    cycle = [diatonic_chord(tonic, mode, d, sevenths) for d in degrees for _ in range(bars_per_chord)]
    return [cycle[bar % len(cycle)] for bar in range(bars)]


def scale_pitches(tonic: int, mode: str, low: int, high: int) -> list[int]:
    """All MIDI pitches of the key's scale in [low, high], ascending."""
    classes = {(tonic + s) % 12 for s in SCALES[mode]}
    return [p for p in range(low, high + 1) if p % 12 in classes]


def voicing(chord: Chord, low: int) -> list[int]:
    """A close voicing of the chord, root position, root placed at the lowest pitch at or above `low`."""
    pitches = [place(chord.root, low)]
    for tone in chord.tones[1:]:
        pitches.append(place(tone, pitches[-1] + 1))
    return pitches

"""Real compositions for the corpus: J. S. Bach's four-part chorales from music21's bundled corpus.

Each chorale's soprano, alto, tenor and bass voices become four parts of an `Arrangement`, played by a quartet
of General MIDI instruments (`ENSEMBLES`) at a drawn tempo, from the first sung note (repeated if the clip is longer
than the chorale). The key in the caption is music21's key analysis (Krumhansl-Schmuckler), and a chorale is
used only when that key agrees with its written key signature, so the caption's key is not a guess; chorales
with instrumental passages (all four voices resting for more than MAX_REST_BEATS) are skipped too.

    chorale = read_chorale(chorale_paths()[0])       # None when it is not usable (see above)
    arrangement = chorale_arrangement(chorale, programs=(40, 40, 41, 42), tempo=72, seconds=10.0)
"""

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from music21 import chord, corpus, key

from corpus.arrange import BEATS_PER_BAR, Arrangement, NoteEvent, Part

VOICES = ("Soprano", "Alto", "Tenor", "Bass")
ENSEMBLES = {  # base caption -> GM programs for the soprano, alto, tenor and bass voices
    "Bach chorale for string quartet": (40, 40, 41, 42),  # Violin, Violin, Viola, Cello
    "Bach chorale played on a church organ": (19, 19, 19, 19),
    "Bach chorale for brass quartet": (56, 60, 57, 58),  # Trumpet, French Horn, Trombone, Tuba
    "Bach chorale for woodwind quartet": (73, 68, 71, 70),  # Flute, Oboe, Clarinet, Bassoon
}
TEMPO = (60, 84)  # BPM range drawn for chorales
MAX_REST_BEATS = 2.0  # longer silences of all four voices are instrumental passages (dropped here): skip those


@dataclass(frozen=True)
class Chorale:
    """The four voices of a chorale as notes in beats, its length in beats, and its key."""

    name: str
    voices: tuple[tuple[NoteEvent, ...], ...]  # soprano, alto, tenor, bass
    beats: float
    tonic: int
    mode: str


def chorale_paths() -> list[Path]:
    """The Bach scores in music21's corpus, sorted by name (most are four-part chorales)."""
    return sorted(corpus.getComposer("bach"), key=lambda p: p.name)


def read_chorale(path: Path) -> Chorale | None:
    """Parse a chorale; None if it lacks the four voices, its analysed key disagrees with its key signature, or
    its voices rest together for more than MAX_REST_BEATS."""
    score = corpus.parse(path)
    parts = {p.partName: p for p in score.parts}
    signatures = score.recurse().getElementsByClass(key.KeySignature)
    if any(v not in parts for v in VOICES) or not signatures:
        return None
    analysed = score.analyze("key")
    if analysed.sharps != signatures[0].sharps:
        return None
    voices = []
    for name in VOICES:
        notes = []
        for n in parts[name].stripTies().flatten().notes:
            pitches = n.pitches if isinstance(n, chord.Chord) else (n.pitch,)
            notes.extend(NoteEvent(float(n.offset), float(n.quarterLength), p.midi, 80) for p in pitches)
        voices.append(notes)
    if longest_rest(voices) > MAX_REST_BEATS:
        return None
    first = min(n.start for notes in voices for n in notes)  # start on the first sung note
    voices = [tuple(replace(n, start=n.start - first) for n in notes) for notes in voices]
    return Chorale(name=path.stem, voices=tuple(voices), beats=float(score.highestTime) - first,
                   tonic=analysed.tonic.pitchClass, mode=analysed.mode)


def longest_rest(voices: list[list[NoteEvent]]) -> float:
    """The longest time in beats, from beat 0 on, during which no voice sings."""
    longest, sounding_until = 0.0, 0.0
    for start, end in sorted((n.start, n.start + n.length) for notes in voices for n in notes):
        longest = max(longest, start - sounding_until)
        sounding_until = max(sounding_until, end)
    return longest


def chorale_arrangement(chorale: Chorale, programs: tuple[int, ...], tempo: int, seconds: float) -> Arrangement:
    """The chorale from its first beat on four GM programs at `tempo`, repeated to last at least `seconds`."""
    beats_needed = seconds * tempo / 60 + BEATS_PER_BAR  # a bar more: notes ring past the cut
    repeats = math.ceil(beats_needed / chorale.beats)
    parts = []
    for voice, notes, program in zip(VOICES, chorale.voices, programs, strict=True):
        repeated = tuple(NoteEvent(n.start + r * chorale.beats, n.length, n.pitch, n.velocity)
                         for r in range(repeats) for n in notes if n.start + r * chorale.beats < beats_needed)
        parts.append(Part(voice.lower(), program, False, repeated))
    return Arrangement(tempo=tempo, tonic=chorale.tonic, mode=chorale.mode,
                       bars=math.ceil(beats_needed / BEATS_PER_BAR), parts=tuple(parts))


def pick_chorales(count: int, seed: int) -> list[Chorale]:
    """`count` usable chorales in a seeded random order (cycling through them if the corpus has fewer)."""
    paths = chorale_paths()
    picked: list[Chorale] = []
    for i in np.random.default_rng(seed).permutation(len(paths)):
        if len(picked) == count:
            break
        chorale = read_chorale(paths[i])
        if chorale is not None:
            picked.append(chorale)
    return [picked[i % len(picked)] for i in range(count)] if picked else []


def arrange_chorale(chorale: Chorale, seconds: float, rng: np.random.Generator) -> tuple[Arrangement, str]:
    """Draw an ensemble and a tempo for a chorale: the arrangement and its base caption."""
    caption, programs = list(ENSEMBLES.items())[rng.integers(len(ENSEMBLES))]
    tempo = int(rng.integers(TEMPO[0], TEMPO[1] + 1))
    return chorale_arrangement(chorale, programs, tempo, seconds), caption

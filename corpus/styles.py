"""Music styles as small arrangement generators, and the captions that describe what they generated.

A `Style` is a base caption written the way people ask for music ("Lo-fi funk"), a tempo range, the modes and
chord progressions it uses, and its instruments: for each, the General MIDI programs a clip may pick and the
generator (from `corpus.parts`) that writes its notes. `arrange(style, seconds, rng)` draws one clip's
key, tempo, progression and instruments; `describe(style.caption, arrangement)` builds a caption from the base caption
and only those attributes, so every caption is true of its audio:

    "Lo-fi funk. Medium tempo, 88 BPM, in E minor (dark minor key), with drums.
     Instruments: Electric Piano 1, Slap Bass 1, Electric Guitar (muted)."
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from pretty_midi import program_to_instrument_name

from corpus.arrange import BEATS_PER_BAR, Arrangement, Part, progression
from corpus.effects import lofi
from corpus.grooves import (
    BOOM_BAP,
    BOOM_BAP_GHOSTS,
    BOOM_CHICKA,
    BOSSA_BASS,
    BOSSA_COMP,
    BOSSA_DRUMS,
    CHARLESTON,
    CHICKEN_SCRATCH,
    COUNTRY_STRUM,
    EIGHTHS,
    FOUR_ON_THE_FLOOR,
    FOUR_ON_THE_FLOOR_16THS,
    FUNK_STABS,
    PAD,
    POP_CELLS,
    POP_DRUMS,
    POP_STABS,
    POP_TOMS,
    ROCK_DRUMS,
    ROCK_RIDE,
    RUNNING_CELLS,
    SLOW_CELLS,
    SPARSE_CELLS,
    SWING_RIDE,
    TRAIN_BEAT,
    TWO_STEP,
)
from corpus.parts import (
    Context,
    Player,
    arpeggio,
    bass_offbeat,
    bass_pulse,
    bass_rhythm,
    bass_root_fifth,
    chord_rhythm,
    drums,
    funk_bass,
    melody,
    power_chords,
    riff,
    strum,
    together,
    walking_bass,
)

Effect = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]  # (audio [N], sample_rate, rng) -> [N]


@dataclass(frozen=True)
class Instrument:
    """One part of a style: the GM programs a clip picks one of, its note generator, how often it plays."""

    role: str
    programs: tuple[int, ...]  # General MIDI programs (0-127); (0,) for the drum kit
    play: Player
    level_db: float = 0.0  # loudness (RMS) in the mix, relative to the other parts
    chance: float = 1.0  # probability that a clip has this part
    is_drum: bool = False


@dataclass(frozen=True)
class Style:
    """A style: base caption, tempo range in BPM, modes, progressions (scale degrees, 0 = I), instruments."""

    name: str  # file-name prefix
    caption: str
    tempo: tuple[int, int]
    modes: tuple[str, ...]
    progressions: tuple[tuple[int, ...], ...]
    instruments: tuple[Instrument, ...]
    sevenths: bool = False
    bars_per_chord: int = 1
    swing: float = 0.5  # see Arrangement.swung
    swing_unit: float = 1.0
    effect: Effect | None = None  # audio processing after rendering (the lo-fi sound)


STYLES = (
    Style("pop80s", "80s pop track with bassy drums and synth", tempo=(100, 128), modes=("major", "minor"),
          progressions=((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4)), instruments=(
              Instrument("bass", (38, 39), partial(bass_pulse, step=0.5, low=33, octaves=True), level_db=-4),
              Instrument("chords", (90, 62, 63), partial(chord_rhythm, rhythms=(POP_STABS, PAD), low=55),
                         level_db=-6),
              Instrument("melody", (80, 81), partial(melody, cells=POP_CELLS, low=67, high=86), level_db=-5,
                         chance=0.7),
              Instrument("drums", (0,), partial(drums, grids=(POP_DRUMS, POP_TOMS), crash_every=4), is_drum=True),
          )),
    Style("rock90s", "90s rock song with loud guitars and heavy drums", tempo=(92, 140), modes=("major", "minor"),
          progressions=((0, 4, 5, 3), (0, 3, 5, 4), (0, 3, 0, 4), (5, 3, 0, 4)), instruments=(
              Instrument("guitar", (30, 29), partial(power_chords, low=40), level_db=-2),
              Instrument("bass", (33, 34), partial(bass_pulse, step=0.5, low=28, base=104), level_db=-6),
              Instrument("lead", (29, 30), partial(melody, cells=POP_CELLS, low=64, high=84, base=110), level_db=-4,
                         chance=0.5),
              Instrument("drums", (0,), partial(drums, grids=(ROCK_DRUMS, ROCK_RIDE), crash_every=4, gain=1.1),
                         is_drum=True),
          )),
    Style("techno", "Techno music with a strong, upbeat tempo and high melodic riffs", tempo=(124, 140),
          modes=("minor",), progressions=((0, 0, 5, 6), (0, 6, 5, 6), (0, 0, 3, 3)), bars_per_chord=2, instruments=(
              Instrument("bass", (38, 39), partial(bass_offbeat, low=33), level_db=-5),
              Instrument("riff", (80, 81, 87), partial(riff, low=72, high=93), level_db=-3),
              Instrument("pad", (89, 90), partial(chord_rhythm, rhythms=(PAD,), low=55, base=55), level_db=-10,
                         chance=0.5),
              Instrument("drums", (0,), partial(drums, grids=(FOUR_ON_THE_FLOOR, FOUR_ON_THE_FLOOR_16THS),
                                                crash_every=8), is_drum=True),
          )),
    Style("lofi_funk", "Lo-fi funk", tempo=(80, 96), modes=("minor", "major"),
          progressions=((0, 3), (1, 4, 0, 0), (0, 5, 1, 4)), sevenths=True, swing=0.58, swing_unit=0.5,
          effect=lofi, instruments=(
              Instrument("keys", (4, 7), partial(chord_rhythm, rhythms=(FUNK_STABS, POP_STABS), low=55, base=72),
                         level_db=-4),
              Instrument("bass", (33, 36), partial(funk_bass, low=28), level_db=-4),
              Instrument("guitar", (27, 28), partial(chord_rhythm, rhythms=(CHICKEN_SCRATCH,), low=60, base=64),
                         level_db=-9, chance=0.6),
              Instrument("drums", (0,), partial(drums, grids=(BOOM_BAP, BOOM_BAP_GHOSTS), gain=0.85), level_db=-2,
                         is_drum=True),
          )),
    Style("country", "Country instrumental", tempo=(92, 140), modes=("major",),
          progressions=((0, 3, 4, 0), (0, 0, 3, 4), (0, 4, 3, 0)), instruments=(
              Instrument("guitar", (25,), partial(strum, rhythms=(COUNTRY_STRUM, BOOM_CHICKA), low=52), level_db=-3),
              Instrument("bass", (32, 33), partial(bass_root_fifth, low=33), level_db=-6),
              Instrument("lead", (110, 105, 22), partial(melody, cells=RUNNING_CELLS, low=64, high=86), level_db=-3),
              Instrument("drums", (0,), partial(drums, grids=(TWO_STEP, TRAIN_BEAT), gain=0.85), level_db=-6,
                         chance=0.7, is_drum=True),
          )),
    Style("jazz", "An uplifting jazz song that makes your head shake", tempo=(126, 180), modes=("major",),
          progressions=((1, 4, 0, 5), (0, 5, 1, 4), (2, 5, 1, 4)), sevenths=True, swing=0.64, instruments=(
              Instrument("bass", (32,), partial(walking_bass, low=31), level_db=-4),
              Instrument("comping", (0, 26, 4), partial(chord_rhythm, rhythms=(CHARLESTON,), low=52, base=68),
                         level_db=-7),
              Instrument("lead", (56, 65, 66, 11), partial(melody, cells=RUNNING_CELLS, low=60, high=82), level_db=-3),
              Instrument("drums", (0,), partial(drums, grids=(SWING_RIDE,), gain=0.85), level_db=-6, is_drum=True),
          )),
    Style("piano_ballad", "Slow solo piano ballad", tempo=(58, 76), modes=("major", "minor"),
          progressions=((0, 4, 5, 3), (5, 3, 0, 4), (0, 2, 3, 4), (0, 5, 3, 4)), instruments=(
              Instrument("piano", (0, 1), partial(together, players=(
                  partial(arpeggio, step=0.5, low=40),  # left hand
                  partial(melody, cells=SLOW_CELLS, low=64, high=84, base=80)))),  # right hand
          )),
    Style("ambient", "Calm ambient pads", tempo=(56, 76), modes=("major", "minor"),
          progressions=((0, 3), (0, 5), (0, 3, 5, 4)), sevenths=True, bars_per_chord=2, instruments=(
              Instrument("pad", (88, 89, 91, 94, 95), partial(chord_rhythm, rhythms=(PAD,), low=52, base=64)),
              Instrument("drone", (48, 49, 92), partial(bass_rhythm, rhythm=PAD, low=36, base=56), level_db=-6,
                         chance=0.6),
              Instrument("bells", (8, 11, 14), partial(melody, cells=SPARSE_CELLS, low=72, high=91, base=56),
                         level_db=-8, chance=0.5),
          )),
    Style("orchestral", "Cinematic orchestral piece with strings and brass", tempo=(70, 100),
          modes=("minor",), progressions=((0, 5, 2, 6), (0, 3, 5, 4), (0, 4, 5, 3)), instruments=(
              Instrument("strings", (48, 49), partial(chord_rhythm, rhythms=(EIGHTHS, PAD), low=55, base=76),
                         level_db=-2),
              Instrument("low strings", (42, 43), partial(bass_pulse, step=1.0, low=36, base=88), level_db=-5),
              Instrument("brass", (60, 61, 57), partial(melody, cells=SLOW_CELLS, low=53, high=74, base=96),
                         level_db=-3),
          )),
    Style("bossa_nova", "Bossa nova with nylon guitar", tempo=(110, 140), modes=("major",),
          progressions=((1, 4, 0, 0), (0, 5, 1, 4), (0, 0, 1, 4)), sevenths=True, instruments=(
              Instrument("guitar", (24,), partial(chord_rhythm, rhythms=(BOSSA_COMP,), low=52, base=74), level_db=-3),
              Instrument("bass", (32,), partial(bass_rhythm, rhythm=BOSSA_BASS, low=33, fifths=True), level_db=-6),
              Instrument("lead", (73, 66, 71), partial(melody, cells=POP_CELLS, low=62, high=84, base=84), level_db=-4),
              Instrument("drums", (0,), partial(drums, grids=(BOSSA_DRUMS,), gain=0.8), level_db=-8, is_drum=True),
          )),
)
STYLES_BY_NAME = {style.name: style for style in STYLES}


def arrange(style: Style, seconds: float, rng: np.random.Generator) -> Arrangement:
    """Draw one clip of a style: key, tempo, progression, which optional parts play and on which programs."""
    tempo = int(rng.integers(style.tempo[0], style.tempo[1] + 1))
    mode = style.modes[rng.integers(len(style.modes))]
    tonic = int(rng.integers(12))
    bars = math.ceil(seconds * tempo / 60 / BEATS_PER_BAR) + 1  # one bar more: notes ring past the cut
    degrees = style.progressions[rng.integers(len(style.progressions))]
    harmony = progression(tonic, mode, degrees, bars, style.bars_per_chord, style.sevenths)
    ctx = Context(tonic=tonic, mode=mode, harmony=tuple(harmony))
    parts = []
    for instrument in style.instruments:
        if rng.random() >= instrument.chance:
            continue
        program = int(instrument.programs[rng.integers(len(instrument.programs))])
        notes = tuple(instrument.play(ctx, rng))
        parts.append(Part(instrument.role, program, instrument.is_drum, notes, instrument.level_db))
    return Arrangement(tempo=tempo, tonic=tonic, mode=mode, bars=bars, parts=tuple(parts), swing=style.swing,
                       swing_unit=style.swing_unit)


def tempo_word(bpm: int) -> str:
    """slow below 80 BPM, fast from 120 BPM, medium between."""
    return "slow" if bpm < 80 else "fast" if bpm >= 120 else "medium"


def instrument_names(arrangement: Arrangement) -> list[str]:
    """The General MIDI names of the pitched parts' programs, in part order, each once."""
    names = [program_to_instrument_name(p.program) for p in arrangement.parts if not p.is_drum]
    return list(dict.fromkeys(names))


def describe(base_caption: str, arrangement: Arrangement) -> str:
    """The caption: the base caption (a style's), then tempo, key, drums and instruments as they were drawn."""
    mood = "bright major key" if arrangement.mode == "major" else "dark minor key"
    drums_phrase = "with drums" if arrangement.has_drums else "no drums"
    return (f"{base_caption}. {tempo_word(arrangement.tempo).capitalize()} tempo, {arrangement.tempo} BPM, "
            f"in {arrangement.key} ({mood}), {drums_phrase}. "
            f"Instruments: {', '.join(instrument_names(arrangement))}.")

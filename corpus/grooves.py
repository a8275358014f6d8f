"""The rhythms the styles play: melody rhythm cells, chord rhythms and drum grids, one bar (4 beats) each.

Rhythms are `(onset, length)` pairs in beats. Drum grids are sixteenth-note steps per GM drum sound, read like a
drum machine: `X` accent, `x` hit, `o` ghost note, `.` rest (see `corpus.parts.drums`).
"""

from corpus.parts import Drum

# ---------------------------------------------------------------------------------------------------- melodies
POP_CELLS = (
    ((0, 1), (1, 0.5), (1.5, 0.5), (2, 1.5)),
    ((0, 0.5), (0.5, 0.5), (1, 1), (2.5, 0.5), (3, 1)),
    ((0, 1.5), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3, 1)),
    ((0, 2), (2.5, 0.5), (3, 1)),
)
RUNNING_CELLS = (  # eighth-note lines: fiddle, sax
    ((0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 1), (3, 0.5), (3.5, 0.5)),
    ((0, 1), (1, 0.5), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3, 1)),
    ((0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 1.5), (3.5, 0.5)),
)
SLOW_CELLS = (((0, 2), (2, 2)), ((0, 1), (1, 1), (2, 2)), ((0, 3), (3, 1)), ((0, 1.5), (1.5, 0.5), (2, 2)))
SPARSE_CELLS = (((0, 4),), ((0, 2), (2, 2)), ((1, 3),), ((0, 1), (2, 2)))

# ---------------------------------------------------------------------------------------------------- chords
PAD = ((0, 4),)
EIGHTHS = tuple((i * 0.5, 0.45) for i in range(8))
POP_STABS = ((0, 1.5), (1.5, 1), (2.5, 1.5))
FUNK_STABS = ((0, 0.5), (0.75, 0.25), (1.5, 0.5), (2.5, 0.25), (2.75, 0.5), (3.5, 0.25))
CHICKEN_SCRATCH = ((0.5, 0.15), (1.5, 0.15), (1.75, 0.15), (2.5, 0.15), (3.5, 0.15))
CHARLESTON = ((0, 1), (1.5, 0.5))
BOSSA_COMP = ((0, 0.5), (1.5, 0.5), (2.5, 0.5), (3, 0.75))
COUNTRY_STRUM = ((0, 1), (1, 0.5), (1.5, 0.5), (2, 1), (3, 0.5), (3.5, 0.5))
BOOM_CHICKA = ((1, 0.5), (3, 0.5))  # strums on 2 and 4, between the bass notes on 1 and 3
BOSSA_BASS = ((0, 1.5), (1.5, 0.5), (2, 1.5), (3.5, 0.5))

# ---------------------------------------------------------------------------------------------------- drums
# Steps:                     1...2...3...4...
POP_DRUMS = {
    Drum.ACOUSTIC_KICK:      "X.....x.X.....x.",  # two kick drums at once: the big 80s bass drum
    Drum.KICK:               "X.....x.X.....x.",
    Drum.ELECTRIC_SNARE:     "....X.......X...",
    Drum.CLOSED_HAT:         "x.x.x.x.x.x.x.x.",
}
POP_TOMS = {
    Drum.ACOUSTIC_KICK:      "X.......X.x.....",
    Drum.KICK:               "X.......X.x.....",
    Drum.ELECTRIC_SNARE:     "....X.......X...",
    Drum.CLOSED_HAT:         "x.x.x.x.x.x.x.x.",
    Drum.HIGH_TOM:           "..............x.",
    Drum.LOW_TOM:            "...............x",
}
ROCK_DRUMS = {
    Drum.KICK:               "X.....x.X.......",
    Drum.SNARE:              "....X.......X...",
    Drum.CLOSED_HAT:         "X.x.X.x.X.x.X.x.",
}
ROCK_RIDE = {
    Drum.KICK:               "X.x.....X.x.....",
    Drum.SNARE:              "....X.......X..o",
    Drum.RIDE:               "x.x.x.x.x.x.x.x.",
}
FOUR_ON_THE_FLOOR = {
    Drum.KICK:               "X...X...X...X...",
    Drum.CLAP:               "....x.......x...",
    Drum.OPEN_HAT:           "..x...x...x...x.",
}
FOUR_ON_THE_FLOOR_16THS = {
    Drum.KICK:               "X...X...X...X...",
    Drum.CLAP:               "....x.......x...",
    Drum.CLOSED_HAT:         "oxoxoxoxoxoxoxox",
}
BOOM_BAP = {
    Drum.KICK:               "x......x..x.....",
    Drum.SNARE:              "....x..o....x...",
    Drum.CLOSED_HAT:         "x.x.x.x.x.x.x.x.",
}
BOOM_BAP_GHOSTS = {
    Drum.KICK:               "x.....x...x..x..",
    Drum.SNARE:              "....x.o.o...x..o",
    Drum.CLOSED_HAT:         "xoxoxoxoxoxoxoxo",
}
TWO_STEP = {
    Drum.KICK:               "x.......x.......",
    Drum.SNARE:              "....x.......x...",
    Drum.CLOSED_HAT:         "x.x.x.x.x.x.x.x.",
}
TRAIN_BEAT = {
    Drum.KICK:               "x.......x.......",
    Drum.SNARE:              "o.ox.ox.o.ox.ox.",
    Drum.TAMBOURINE:         "....x.......x...",
}
SWING_RIDE = {  # played with swing: the off-beat eighths land late
    Drum.RIDE:               "x...x.x.x...x.x.",
    Drum.PEDAL_HAT:          "....x.......x...",
    Drum.KICK:               "o.......o.......",
}
BOSSA_DRUMS = {
    Drum.KICK:               "x..x....x..x....",
    Drum.SIDE_STICK:         "x..x..x...x..x..",
    Drum.SHAKER:             "oxoxoxoxoxoxoxox",
}

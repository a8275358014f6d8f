"""A captioned music corpus rendered offline, for training and testing MusicGen without downloading data.

`python -m corpus OUT_DIR --count 200 --seconds 10` renders clips of generated arrangements with a General MIDI
SoundFont, each with a caption that is true of its audio:
- `render.py`: the command, one clip from arrangement to audio, the files written;
- `styles.py`: the ten styles (key, tempo, progressions, instruments) and the captions that describe a clip;
- `parts.py`, `grooves.py`: the parts the styles play (bass lines, chords, melodies, drum grids) and their rhythms;
- `arrange.py`: the symbolic arrangement (notes in beats over a chord progression) and its MIDI score;
- `chorales.py`: Bach chorales from music21's corpus played by instrument quartets (`--chorales`);
- `effects.py`: peak normalisation and the lo-fi sound.

`tones.py` (`python -m corpus.tones`) is simpler: tones, chords and noise bursts, for codec tests and smoke runs.
"""

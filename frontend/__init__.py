"""The front ends' shared parts: the command line's and the web app's inputs checked before any model loads
(`cli_inputs`), and a clip written with its sidecar as one unit (`outputs`). `generate.py` and `app.py` are thin
scripts over these and the one pipeline (`inference.MusicGen`). Nothing here imports torch at import time, so
`--help` and argument errors answer at once."""

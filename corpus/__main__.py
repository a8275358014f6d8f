"""`python -m corpus OUT_DIR ...`: render the captioned corpus (see corpus/render.py)."""

from corpus.render import main

main()

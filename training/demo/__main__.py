"""`python -m training.demo`: build the demo model (see training/demo/recipe.py)."""

import sys

from training.demo.recipe import main

sys.exit(main())

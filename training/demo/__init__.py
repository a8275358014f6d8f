"""The bundled demo model's recipe and its evaluation.

`python -m training.demo` builds it (`recipe.py`: corpus -> codec -> LM -> model folder with a model card);
`python -m training.demo.evaluate` measures a model on the held-out corpus clips (`evaluate.py`, with the audio
descriptors of `audio_features.py`).
"""

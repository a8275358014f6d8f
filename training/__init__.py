"""Training code; Lightning lives here, never in the model packages. Codec training: `train.py codec` ->
`train_codec.py` (run), `codec.py` (LightningModule), `data.py`, `settings.py`, `checkpoints.py`, `plots.py`,
and `synth.py` (synthetic audio for tests and demos)."""

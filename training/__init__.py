"""Training with Lightning; Lightning lives here, never in the model packages.

`train.py codec` and `train.py lm` are two runs of one outline (`run.py`: callbacks, trainer, fit, the command;
`run_settings.py`: the settings and flags every run shares; `checkpoints.py`: atomic, code-free checkpoints):

| concept | codec (`train.py codec`) | language model (`train.py lm`) |
|---|---|---|
| the command and its outputs | `codec_train.py` | `lm_train.py` |
| settings and flags | `codec_settings.py` | `lm_settings.py` |
| data | `codec_data.py` (audio segments) | `lm_data.py` (token windows), `captions.py`, `lm_tokens.py` (token cache) |
| LightningModule | `codec_module.py` | `lm_module.py` |

`audio_files.py` finds and reads the audio both use; `plots.py` draws the loss curves. The demo model's recipe
and evaluation are in `training/demo/` (`python -m training.demo`); the synthetic corpus is the `corpus` package.
"""

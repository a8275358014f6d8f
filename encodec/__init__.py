"""EnCodec, the neural audio codec that turns audio into MusicGen's tokens and back."""

from checkpoint_io import CheckpointError
from encodec.config import PRESETS, EncodecConfig, get_preset
from encodec.loading import load_encodec, save_encodec
from encodec.model import EncodecModel, EncodecOutput

__all__ = ["PRESETS", "CheckpointError", "EncodecConfig", "EncodecModel", "EncodecOutput", "get_preset",
           "load_encodec", "save_encodec"]

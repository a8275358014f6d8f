"""The MusicGen language model: config presets, delay pattern, transformer, sampling and weight loading."""

from .config import LM_PRESETS, LMConfig, lm_config_from_hf, lm_preset
from .loading import StateDictMismatchError, build_lm_from_hf, convert_hf_state_dict, load_hf_state_dict
from .model import MusicGenLM
from .patterns import build_delay_pattern, delay_pattern_mask, revert_delay_logits, revert_delay_pattern
from .sampling import SamplingParams, classifier_free_guidance, sample_next_token
from .transformer import KVCache

__all__ = [
    "LM_PRESETS",
    "KVCache",
    "LMConfig",
    "MusicGenLM",
    "SamplingParams",
    "StateDictMismatchError",
    "build_delay_pattern",
    "build_lm_from_hf",
    "classifier_free_guidance",
    "convert_hf_state_dict",
    "delay_pattern_mask",
    "lm_config_from_hf",
    "lm_preset",
    "load_hf_state_dict",
    "revert_delay_logits",
    "revert_delay_pattern",
    "sample_next_token",
]

"""Inference: load published MusicGen checkpoints and generate music from text."""

from inference.pipeline import MusicGen, SamplingParams

__all__ = ["MusicGen", "SamplingParams"]

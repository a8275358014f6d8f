"""Inference: load published MusicGen checkpoints and generate music from text.

`MusicGen` and `SamplingParams` are imported on first use (PEP 562), so that the torch-free modules the command
line needs first (`inference.checks`, and `frontend/`) load without torch: `--help` and argument errors answer at
once.
"""

__all__ = ["MusicGen", "SamplingParams"]


def __getattr__(name: str):
    if name in __all__:
        from inference import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'inference' has no attribute {name!r}")

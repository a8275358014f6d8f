"""Inference: load published MusicGen checkpoints and generate music from text.

`MusicGen` and `SamplingParams` are imported on first use (PEP 562), so that the command line's torch-free
modules (`inference.checks`, `inference.cli_inputs`, `inference.outputs`) load without torch: `--help` and
argument errors answer at once.
"""

__all__ = ["MusicGen", "SamplingParams"]


def __getattr__(name: str):
    if name in __all__:
        from inference import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'inference' has no attribute {name!r}")

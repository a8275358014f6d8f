"""The one error type of checkpoint loading; its message names the culprit (file, field or tensor)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing file, unknown format, bad config, or tensors that do not fit."""


class ModelNotFoundError(CheckpointError):
    """The checkpoint is not here: no such local path, not cached, and the Hub cannot provide it."""

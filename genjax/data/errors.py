"""The data layer's one error type, in its own module so that every builder can raise it."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset cannot be loaded or prepared as asked.

    Unknown name or split, a set that is not prepared, features that are not an image set, or
    a source file (in TFDS's manual directory) that is missing, truncated or not in its
    documented format. The message is one line that names the file or the argument and says
    what to do.

    Example:
      >>> from genjax import data
      >>> issubclass(data.DatasetError, ValueError)
      True
      >>> data.load("ring8", "val")
      Traceback (most recent call last):
          ...
      genjax.data.errors.DatasetError: unknown split 'val' for 'ring8'; available: train, test
    """

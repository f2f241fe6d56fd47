"""The base of genjax's own TFDS builders (``digits`` and the builders of ``manual.py``)."""

from __future__ import annotations

import tensorflow_datasets as tfds
from etils import epath


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A TFDS builder defined inside genjax: array_record files unless asked otherwise.

    Example:
      >>> import tempfile
      >>> from genjax.data import Digits, Mnist
      >>> from genjax.data.local_builder import LocalBuilder
      >>> issubclass(Digits, LocalBuilder), issubclass(Mnist, LocalBuilder)
      (True, True)
      >>> Digits(data_dir=tempfile.mkdtemp()).info.file_format.value  # the default file format
      'array_record'
    """

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """A file of this package (TFDS looks for a ``checksums.tsv`` beside it; there is none).

        TFDS derives the default from the top-level package's resources, which fails when
        ``genjax`` is imported as a namespace package (e.g. some editable installs).
        """
        return epath.Path(__file__)

    def __init__(self, **kwargs):
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

"""genjax's builders for real datasets, by the name :func:`genjax.data.load` serves them under.

    load name         TFDS name                splits                                  image

    mnist             genjax_mnist             train 60,000 / test 10,000              28x28x1
    fashion_mnist     genjax_fashion_mnist     train 60,000 / test 10,000              28x28x1
    binarized_mnist   genjax_binarized_mnist   train 50,000 / validation 10,000 /      28x28x1
                                               test 10,000 (pixels 0/1, no labels)
    cifar10           genjax_cifar10           train 50,000 / test 10,000              32x32x3
    celeb_a_64        genjax_celeb_a_64        train 162,770 / validation 19,867 /     64x64x3
                                               test 19,962 (no labels)

Each is prepared from its original files in ``<data_dir>/downloads/manual/`` (``manual.py``
says where and what is checked; ``mnist.py``, ``cifar10.py`` and ``celeb_a.py`` give each
format). The TFDS names carry a ``genjax_`` prefix because TFDS's catalog has its own builders
called ``mnist``, ``cifar10``, ... with other features (PNG-encoded images) and other folders;
the prefix keeps both kinds apart in one data directory and keeps TFDS's registry free of
clashes. A copy that TFDS itself prepared (``tfds build mnist``) is still read by
:func:`genjax.data.load` when genjax's is not there and no original files are given.
"""

from __future__ import annotations

import os

from genjax.data.celeb_a import CelebA64
from genjax.data.cifar10 import Cifar10
from genjax.data.digits import prepare_digits
from genjax.data.errors import DatasetError
from genjax.data.manual import ManualBuilder, prepare_builder
from genjax.data.mnist import BinarizedMnist, FashionMnist, Mnist

__all__ = ["BUILDERS", "prepare"]

#: The builders that :func:`prepare` and :func:`genjax.data.load` know, by ``load`` name.
BUILDERS: dict[str, type[ManualBuilder]] = {
    cls.GENJAX_NAME: cls for cls in (Mnist, FashionMnist, BinarizedMnist, Cifar10, CelebA64)
}


def prepare(name: str, data_dir: str | os.PathLike | None = None, *, force: bool = False):
    """Prepares one of genjax's own TFDS sets in ``data_dir``, if it is not there yet.

    :func:`genjax.data.load` calls this on first use; call it directly to prepare ahead of a
    run, or with ``force=True`` to rebuild after replacing the original files.

    Args:
      name: ``"digits"`` or a name of :data:`BUILDERS` (``"mnist"``, ``"fashion_mnist"``,
        ``"binarized_mnist"``, ``"cifar10"``, ``"celeb_a_64"``).
      data_dir: TFDS data directory; None means TFDS's default (``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``). The original files are read from
        ``<data_dir>/downloads/manual/`` (or its ``<name>/`` subfolder).
      force: rebuild even if prepared. The new copy replaces the old one only once it is
        complete; on any error the old copy is left as it was. (``digits`` is always
        prepared from the same scikit-learn data and takes no ``force``.)

    Returns:
      The prepared TFDS builder (``builder.as_data_source(split)`` reads it).

    Raises:
      DatasetError: unknown name, or a missing or malformed original file.

    Example:
      >>> import contextlib, io, tempfile
      >>> from genjax import data
      >>> with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints where it prepares
      ...     builder = data.prepare("digits", tempfile.mkdtemp())
      >>> builder.is_prepared(), len(builder.as_data_source("test"))
      (True, 355)
      >>> sorted(data.BUILDERS)  # the others, prepared from files in <data_dir>/downloads/manual/
      ['binarized_mnist', 'celeb_a_64', 'cifar10', 'fashion_mnist', 'mnist']
    """
    if name == "digits":
        if force:
            raise DatasetError("prepare('digits', force=True): digits never needs rebuilding")
        return prepare_digits(data_dir)
    if name not in BUILDERS:
        raise DatasetError(
            f"prepare: unknown dataset {name!r}; genjax prepares digits, {', '.join(BUILDERS)}"
        )
    return prepare_builder(BUILDERS[name], data_dir, force=force)

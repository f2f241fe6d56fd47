"""genjax's TFDS builder for CIFAR-10, from the original "python version" tarball.

``cifar10`` (TFDS name ``genjax_cifar10``)
    File: ``cifar-10-python.tar.gz`` (Krizhevsky 2009; https://www.cs.toronto.edu/~kriz/cifar.html),
    in TFDS's manual directory (see ``manual.py``). The gzip tarball holds the folder
    ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, each a
    pickled dict (written by Python 2) with, among others, ``b"data"``: a uint8 NumPy array
    ``[10000, 3072]`` whose row is one 32x32 colour image as three channel planes R, G, B of
    1,024 bytes each, row-major within a plane; and ``b"labels"``: a list of 10,000 ints 0..9.
    Splits: ``train`` (50,000) = data batches 1..5 in order, ``test`` (10,000) = ``test_batch``,
    records in file order. Features: ``image`` uint8 ``[32, 32, 3]`` (pixel ``[r, c, k]`` =
    ``data[i, 1024 * k + 32 * r + c]``), ``label`` ``ClassLabel`` with the ten class names of
    ``batches.meta`` (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).

The pickles are read with an unpickler that accepts only what a CIFAR batch contains (NumPy
arrays and dtypes), so a damaged or malicious file cannot run code. Official size and MD5 are
the ones on the CIFAR page (the release publishes MD5 only); TFDS's own ``cifar10`` builder
reads the "binary version", a different file.
"""

from __future__ import annotations

import os
import pickle
import tarfile
import zlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from genjax.data.errors import DatasetError
from genjax.data.manual import ArrayExamples, ManualBuilder, SourceFile

__all__ = ["BATCHES", "Cifar10", "read_cifar_batches"]

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
#: The pickled batches of each split, in record order.
BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_PIXELS = 32 * 32 * 3


def _array_reconstructor():
    # NumPy's array-unpickling helper, obtained from NumPy itself rather than by module path
    # (it moved from numpy.core to numpy._core in NumPy 2; Python 2 pickles name the old one).
    return np.ndarray((0,), dtype=np.uint8).__reduce__()[0]


class _BatchUnpickler(pickle.Unpickler):
    """Resolves only the globals that a pickled CIFAR batch refers to."""

    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _array_reconstructor(),
        ("numpy._core.multiarray", "_reconstruct"): _array_reconstructor(),
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which a CIFAR batch never contains"
            )
        return self._ALLOWED[(module, name)]


def _load_batch(tar: tarfile.TarFile, member: str, *, where: str) -> Any:
    try:
        info = tar.getmember(member)
    except KeyError:
        raise DatasetError(
            f"cifar10: {where} has no {member}: it is not CIFAR-10's python version "
            f"({ARCHIVE}); download it again"
        ) from None
    f = tar.extractfile(info)
    if f is None:
        raise DatasetError(f"cifar10: {member} in {where} is not a regular file")
    try:
        with f:
            return _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as error:  # fmt: skip
        raise DatasetError(
            f"cifar10: {member} in {where} is not a readable CIFAR batch ({error}); download "
            "the archive again"
        ) from None


def _batch_arrays(batch: Any, member: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validates one unpickled batch; returns ``(data uint8 [n, 3072], labels int64 [n])``."""
    what = f"cifar10: {member} in {where}"
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(f"{what} is not a CIFAR batch: expected a dict with b'data' and "
                           f"b'labels', got {keys}")  # fmt: skip
    data = batch[b"data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _PIXELS):  # fmt: skip
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DatasetError(f"{what}: b'data' is {dtype} {shape}, expected uint8 [n, 3072]")
    try:
        labels = np.asarray(batch[b"labels"])
    except (TypeError, ValueError):
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{what}: b'labels' is not a list of integers")
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(f"{what}: {data.shape[0]:,} images but {labels.shape[0]:,} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        bad = int(np.argmax((labels < 0) | (labels >= 10)))
        raise DatasetError(f"{what}: label {labels[bad]} at record {bad}, expected 0..9")
    return data, labels.astype(np.int64)


def read_cifar_batches(path: os.PathLike | str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads CIFAR-10's python-version tarball.

    Args:
      path: ``cifar-10-python.tar.gz``.

    Returns:
      ``{"train": (images, labels), "test": (images, labels)}``: images uint8
      ``[N, 32, 32, 3]`` (HWC, from the channel-major rows), labels int64 ``[N]``.

    Raises:
      DatasetError: not a gzip tarball, truncated, a batch missing, a pickle that is not a
        CIFAR batch, or shapes/labels out of format.

    Example:
      >>> import io, os, pickle, tarfile, tempfile
      >>> import numpy as np
      >>> from genjax.data.cifar10 import BATCHES, read_cifar_batches
      >>> batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 5]}  # 2 images
      >>> batch = pickle.dumps(batch, protocol=4)
      >>> path = os.path.join(tempfile.mkdtemp(), "cifar-10-python.tar.gz")  # a small stand-in
      >>> with tarfile.open(path, "w:gz") as tar:
      ...     for name in BATCHES["train"] + BATCHES["test"]:
      ...         member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      ...         member.size = len(batch)
      ...         tar.addfile(member, io.BytesIO(batch))
      >>> {split: (images.shape, labels.tolist()[:2]) for split, (images, labels)
      ...  in read_cifar_batches(path).items()}
      {'train': ((10, 32, 32, 3), [3, 5]), 'test': ((2, 32, 32, 3), [3, 5])}
    """
    where = os.fspath(path)
    out = {}
    try:
        with tarfile.open(where, "r:gz") as tar:
            for split, members in BATCHES.items():
                data, labels = [], []
                for batch_name in members:
                    member = f"{FOLDER}/{batch_name}"
                    d, lb = _batch_arrays(_load_batch(tar, member, where=where), member, where)
                    data.append(d)
                    labels.append(lb)
                rows = np.concatenate(data)
                images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                out[split] = (np.ascontiguousarray(images), np.concatenate(labels))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DatasetError(
            f"cifar10: {where} cannot be read as a gzip tar archive ({error}): it is truncated "
            "or damaged; download it again"
        ) from None
    return out


class Cifar10(ManualBuilder):
    """CIFAR-10 from ``cifar-10-python.tar.gz`` (``load("cifar10", ...)``); see the module
    docstring.

    Example:
      >>> import tempfile
      >>> from genjax.data import Cifar10
      >>> Cifar10.GENJAX_NAME, [f.name for f in Cifar10.FILES], dict(Cifar10.SPLIT_SIZES)
      ('cifar10', ['cifar-10-python.tar.gz'], {'train': 50000, 'test': 10000})
      >>> builder = Cifar10(data_dir=tempfile.mkdtemp())  # its file not there yet
      >>> builder.is_prepared(), builder.info.features["label"].names[:3]
      (False, ['airplane', 'automobile', 'bird'])
    """

    name = "genjax_cifar10"
    GENJAX_NAME = "cifar10"
    TFDS_CATALOG_NAME = "cifar10"
    FILES = (
        SourceFile(ARCHIVE, "https://www.cs.toronto.edu/~kriz/" + ARCHIVE,
                   170_498_071, md5="c58f30108f718f92721af3b95e74349a"),
    )  # fmt: skip
    SPLIT_SIZES: ClassVar[Mapping[str, int]] = {"train": 50_000, "test": 10_000}
    IMAGE_SHAPE = (32, 32, 3)
    LABEL_NAMES = (
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
    DESCRIPTION = (
        "CIFAR-10 (50,000 train / 10,000 test 32x32 colour images, 10 classes), prepared by "
        "genjax from the python-version tarball without TensorFlow; raw uint8 pixels, HWC."
    )
    CITATION = """\
@techreport{krizhevsky2009learning,
  author = {Krizhevsky, Alex},
  title = {Learning Multiple Layers of Features from Tiny Images},
  institution = {University of Toronto}, year = {2009}
}"""

    def read_splits(self, paths):
        arrays = read_cifar_batches(paths[ARCHIVE])
        return {split: ArrayExamples(images, labels) for split, (images, labels) in arrays.items()}

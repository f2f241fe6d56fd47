"""The project's own TFDS builder: scikit-learn's bundled 8x8 handwritten digits.

``digits`` is the small image set every test and demo of genjax can train on offline: the
1,797 8x8 images that scikit-learn ships inside its wheel (``sklearn.datasets.load_digits``,
the test set of the UCI "Optical Recognition of Handwritten Digits" data, 4x4 blocks of
32x32 bitmaps counted into 17 grey levels 0..16). Nothing is downloaded: the builder reads the
arrays from scikit-learn and writes them as a regular TFDS dataset (``array_record`` files), so
``tfds.data_source("digits", data_dir=...)`` and :func:`genjax.data.load` read it like any
other TFDS dataset, without TensorFlow.

Features
    ``image``: ``uint8 [8, 8, 1]``, the raw grey levels 0..16 (NOT rescaled to 0..255; the
    maximum value 16 is stored as ``info.metadata["image_max"]`` for the preprocessing).
    ``label``: ``ClassLabel(num_classes=10)``, the digit.

Split (fixed, stratified, no randomness)
    Within each class, take the examples in scikit-learn's order; the 5th, 10th, 15th, ...
    of them (class-local position ``p`` with ``p % 5 == 4``) go to ``test``, all others to
    ``train``. This gives 355 test / 1,442 train examples, every class in both splits in
    the same 4:1 proportion (up to rounding). Records are written in scikit-learn's order
    (shuffling on write is disabled), so ``train[i]`` is scikit-learn's image
    ``train_indices()[i]``.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from genjax.data.local_builder import LocalBuilder

__all__ = ["IMAGE_MAX", "TEST_EVERY", "Digits", "prepare_digits", "split_indices"]

#: Largest grey level in the data (each pixel counts set bits in a 4x4 block).
IMAGE_MAX = 16
#: Every ``TEST_EVERY``-th example of each class goes to the test split.
TEST_EVERY = 5

_DESCRIPTION = """\
scikit-learn's bundled 8x8 handwritten digits (1,797 images, grey levels 0..16, 10 classes),
prepared locally without download. Stratified split: within each class, every 5th example
(class-local positions 4, 9, 14, ...) is in `test`, the rest in `train` (1,442 / 355).
Images keep the raw 0..16 values; metadata["image_max"] = 16."""

_CITATION = """\
@misc{alpaydin1998optdigits,
  author = {Alpaydin, E. and Kaynak, C.},
  title = {Optical Recognition of Handwritten Digits},
  year = {1998},
  howpublished = {UCI Machine Learning Repository},
  doi = {10.24432/C50P49}
}"""


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed stratified split of the digits data.

    Args:
      labels: int ``[N]``, the class of each example, in scikit-learn's order.

    Returns:
      ``{"train": int64 [N_train], "test": int64 [N_test]}``: sorted indices into ``labels``.
      Within each class, the example at class-local position ``p`` is in ``test`` iff
      ``p % TEST_EVERY == TEST_EVERY - 1``.

    Example:
      >>> import numpy as np
      >>> from genjax.data.digits import split_indices
      >>> split_indices(np.array([0] * 5 + [1] * 5))  # the 5th example of each class is test
      {'train': array([0, 1, 2, 3, 5, 6, 7, 8]), 'test': array([4, 9])}
    """
    labels = np.asarray(labels)
    is_test = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        is_test[members[TEST_EVERY - 1 :: TEST_EVERY]] = True
    return {"train": np.flatnonzero(~is_test), "test": np.flatnonzero(is_test)}


def _load_sklearn() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(uint8 [1797, 8, 8, 1], int64 [1797])``."""
    from sklearn.datasets import load_digits  # local import: only needed to prepare

    raw = load_digits()
    images = raw.images
    # The values are integral counts stored as float64; the cast below must be exact.
    if not (np.all(images == np.round(images)) and images.min() >= 0):
        raise ValueError("scikit-learn's digits are expected to hold integers 0..16")
    if images.max() > IMAGE_MAX:
        raise ValueError(f"scikit-learn's digits exceed {IMAGE_MAX}: max {images.max()}")
    return images.astype(np.uint8)[..., None], raw.target.astype(np.int64)


class Digits(LocalBuilder):
    """TFDS builder for scikit-learn's 8x8 digits (dataset name ``"digits"``).

    Prepared from the copy inside scikit-learn, so ``download_and_prepare`` needs no network.
    The default file format is ``array_record`` (random access, readable with
    ``tfds.data_source`` and no TensorFlow); pass ``file_format=...`` to override.

    Example:
      >>> import contextlib, io, tempfile
      >>> from genjax.data import Digits
      >>> builder = Digits(data_dir=tempfile.mkdtemp())
      >>> with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints where it prepares
      ...     builder.download_and_prepare()
      >>> train = builder.as_data_source(split="train")
      >>> len(train), sorted(train[0]), train[0]["image"].shape, builder.info.metadata["image_max"]
      (1442, ['image', 'label'], (8, 8, 1), 16)
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "First release: raw 0..16 images, stratified 1,442/355 split."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        # Built directly rather than with `dataset_info_from_configs`, which looks for
        # metadata files inside a TFDS package directory that this builder does not have.
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(image_max=IMAGE_MAX),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        images, labels = _load_sklearn()
        return {
            name: self._generate_examples(images, labels, indices)
            for name, indices in split_indices(labels).items()
        }

    def _generate_examples(self, images, labels, indices):
        # Keys are scikit-learn's indices; with shuffling disabled, records keep this order.
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}


def prepare_digits(data_dir: str | os.PathLike | None = None) -> Digits:
    """Prepares ``digits`` in ``data_dir`` if it is not there yet, and returns the builder.

    Args:
      data_dir: TFDS data directory; ``None`` means TFDS's default (``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).

    Returns:
      The prepared :class:`Digits` builder (``builder.as_data_source(split)`` reads it).

    Example:
      >>> import contextlib, io, tempfile
      >>> from genjax import data
      >>> data_dir = tempfile.mkdtemp()
      >>> with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints where it prepares
      ...     builder = data.prepare_digits(data_dir)
      >>> len(builder.as_data_source("train")), len(builder.as_data_source("test"))
      (1442, 355)
      >>> data.prepare_digits(data_dir).is_prepared()  # already there: nothing to do
      True
    """
    builder = Digits(data_dir=data_dir)
    if builder.is_prepared():
        return builder
    try:
        builder.download_and_prepare()
    except OSError:
        # Several processes (hosts of one run) may prepare a shared directory at once: TFDS
        # writes to a temporary folder and renames it, and the later rename fails. The copy
        # that landed first is as good as ours.
        if not Digits(data_dir=data_dir).is_prepared():
            raise
        return Digits(data_dir=data_dir)
    return builder

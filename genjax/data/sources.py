"""Datasets by name, held in host memory as NumPy arrays.

:func:`load` is the one entry point::

    train = load("digits", "train")          # prepared from scikit-learn on first use
    test = load("mnist", "test")             # any TFDS image dataset prepared in the data dir
    ring = load("ring8", "train")            # synthetic 2-D mixtures (see ``synthetic.py``)

Names:
  ``digits``   the project's own TFDS builder (``digits.py``); prepared into the data
               directory on first use, with no download.
  ``mnist``, ``fashion_mnist``, ``binarized_mnist``, ``cifar10``, ``celeb_a_64``
               genjax's TFDS builders for real datasets (``builders.py``), prepared on first
               use from the original files in ``<data_dir>/downloads/manual/``. When genjax's
               copy is not prepared and none of the files is there, a copy that TFDS's own
               catalog builder of the same name prepared is read instead (not for
               ``celeb_a_64``, which TFDS does not have).
  ``ring8``, ``grid25``   the 2-D Gaussian mixtures of ``synthetic.py`` (fixed finite sets).
  anything else            a TFDS dataset that is already prepared (``array_record`` files) in
               the data directory, read with TFDS's random-access ``data_source`` API (no
               TensorFlow), e.g. ``svhn_cropped``, ``cifar100``. Its features must
               include an ``image`` (fixed shape, uint8); a ``ClassLabel`` named ``label`` is
               read when present.

The data directory is, in order: the ``data_dir`` argument, the ``GENJAX_DATA_DIR`` environment
variable, TFDS's default (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

A TFDS split is read whole into memory once (:func:`read_into_memory`), which suits the
mnist/cifar-sized sets this library trains on (cifar10 train is 150 MB of uint8). A set too
large for host memory would need a lazy :class:`Dataset` whose ``get`` reads records from the
data source on demand (``source.__getitems__(indices)``); reading is kept in its own function so
such a variant can be added without touching the batcher, which only calls ``get``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genjax.data import synthetic
from genjax.data.errors import DatasetError

__all__ = [
    "DATA_DIR_ENV",
    "KNOWN_DATASETS",
    "Dataset",
    "DatasetError",
    "load",
    "read_into_memory",
    "resolve_data_dir",
]

#: Environment variable that overrides TFDS's default data directory.
DATA_DIR_ENV = "GENJAX_DATA_DIR"
#: The names of genjax's builders (``builders.BUILDERS``, in its order), known without
#: importing TFDS: training on in-memory arrays needs neither TFDS nor array_record.
BUILDER_NAMES = ("mnist", "fashion_mnist", "binarized_mnist", "cifar10", "celeb_a_64")
#: Names that :func:`load` serves without a prepared TFDS dataset.
KNOWN_DATASETS = ("digits", *BUILDER_NAMES, *synthetic.MIXTURES)


def _tfds():
    """``tensorflow_datasets``, imported on first use; a :class:`DatasetError` if missing."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DatasetError(
            "reading a TFDS dataset needs the packages tensorflow-datasets and array-record "
            "(pip install tensorflow-datasets array-record); in-memory arrays need neither"
        ) from error
    return tfds


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset, as NumPy arrays in host memory.

    Attributes:
      name: the dataset name given to :func:`load`.
      split: the split name (TFDS split syntax, e.g. ``"train[:90%]"``, is kept as given).
      features: read-only arrays with the same leading size ``N``. Image sets:
        ``"image"`` uint8 ``[N, H, W, C]`` and, if labelled, ``"label"`` int32 ``[N]``.
        Synthetic sets: ``"x"`` float32 ``[N, 2]`` and ``"label"`` int32 ``[N]`` (mode index).
      num_classes: number of label values (the number of modes for synthetic sets), or None
        if there is no label.
      image_max: the largest possible pixel value (16 for digits, 1 for binarized_mnist, 255
        for other uint8 TFDS images), which the preprocessing divides by; None for the
        synthetic sets.

    Example:
      >>> import numpy as np
      >>> from genjax import data
      >>> features = {"x": np.zeros((4, 2), np.float32), "label": np.array([0, 1, 1, 0], np.int32)}
      >>> ds = data.Dataset("toy", "train", features, num_classes=2)
      >>> ds, len(ds), ds.input_key
      (Dataset('toy', split='train', {x: float32[4, 2], label: int32[4]}), 4, 'x')
      >>> ds.get([2, 0])["label"], ds.features["x"].flags.writeable  # read-only copies
      (array([1, 0], dtype=int32), False)
    """

    name: str
    split: str
    features: Mapping[str, np.ndarray]
    num_classes: int | None = None
    image_max: int | None = None

    def __post_init__(self):
        if ("image" in self.features) == ("x" in self.features):
            raise DatasetError(
                f"dataset {self.name!r} must have exactly one input feature, 'image' or 'x'; "
                f"it has {sorted(self.features)}"
            )
        sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in self.features.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise DatasetError(f"features of {self.name!r} differ in leading size: {sizes}")
        frozen = {}
        for key, value in self.features.items():
            array = np.array(value, copy=True)
            array.setflags(write=False)
            frozen[key] = array
        object.__setattr__(self, "features", types.MappingProxyType(frozen))

    @property
    def input_key(self) -> str:
        """``"image"`` for image sets, ``"x"`` for the synthetic vector sets."""
        return "image" if "image" in self.features else "x"

    @property
    def num_examples(self) -> int:
        """``N``, the number of examples in the split."""
        return int(self.features[self.input_key].shape[0])

    def __len__(self) -> int:
        return self.num_examples

    def get(self, indices: Any) -> dict[str, np.ndarray]:
        """Gathers rows on the host.

        Args:
          indices: int array of any shape ``S`` (NumPy or JAX), values in ``[0, N)``.

        Returns:
          ``{key: array [*S, ...]}`` for every feature, e.g. ``image`` uint8 ``[*S, H, W, C]``.
        """
        idx = np.asarray(indices)
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        return {key: value[idx] for key, value in self.features.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self.features.items())
        return f"Dataset({self.name!r}, split={self.split!r}, {{{shapes}}})"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> str | None:
    """``data_dir`` if given, else ``$GENJAX_DATA_DIR``, else None (TFDS's own default).

    Example:
      >>> from genjax import data
      >>> data.resolve_data_dir("/data/tfds")  # an explicit directory wins
      '/data/tfds'
      >>> data.DATA_DIR_ENV  # else this environment variable, else None (TFDS's default)
      'GENJAX_DATA_DIR'
    """
    if data_dir:
        return os.fspath(data_dir)
    return os.environ.get(DATA_DIR_ENV) or None


def load(name: str, split: str, *, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Loads one split of a dataset by name into host memory.

    Args:
      name: ``"digits"``, one of genjax's builders (``"mnist"``, ``"fashion_mnist"``,
        ``"binarized_mnist"``, ``"cifar10"``, ``"celeb_a_64"``), ``"ring8"``, ``"grid25"``, or
        the name of a TFDS image dataset prepared in the data directory.
      split: split name, e.g. ``"train"`` or ``"test"``; TFDS sets also accept TFDS's slicing
        syntax (``"train[:90%]"``).
      data_dir: TFDS data directory; default ``$GENJAX_DATA_DIR``, else TFDS's default.

    Returns:
      The split as a :class:`Dataset`.

    Raises:
      DatasetError: unknown name or split, TFDS dataset not prepared in the data directory,
        an original file of genjax's builders missing or malformed, or features that are not
        an image/``x`` set.

    Example:
      >>> import contextlib, io, tempfile
      >>> from genjax import data
      >>> with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints where it prepares digits
      ...     train = data.load("digits", "train", data_dir=tempfile.mkdtemp())
      >>> train, train.num_classes, train.image_max
      (Dataset('digits', split='train', {image: uint8[1442, 8, 8, 1], label: int32[1442]}), 10, 16)
      >>> data.load("ring8", "test")  # the synthetic sets need no data directory
      Dataset('ring8', split='test', {x: float32[10000, 2], label: int32[10000]})
    """
    if not isinstance(name, str) or not name:
        raise DatasetError(f"dataset name must be a non-empty string, got {name!r}")
    if not isinstance(split, str) or not split:
        raise DatasetError(f"split must be a non-empty string, got {split!r}")
    if name in synthetic.MIXTURES:
        return _load_mixture(name, split)
    data_dir = resolve_data_dir(data_dir)
    if name == "digits":
        _tfds()
        from genjax.data.digits import prepare_digits

        prepare_digits(data_dir)
    elif name in BUILDER_NAMES:
        return _load_manual(name, split, data_dir)
    return _load_tfds(name, split, data_dir)


def _load_manual(name: str, split: str, data_dir: str | None) -> Dataset:
    _tfds()
    from genjax.data import builders
    from genjax.data.manual import manual_root

    cls = builders.BUILDERS[name]
    builder = cls(data_dir=data_dir)
    if not builder.is_prepared():
        catalog = cls.TFDS_CATALOG_NAME
        no_files = not cls.has_files(manual_root(builder))
        if catalog and no_files and _catalog_copy_prepared(catalog, data_dir):
            return _load_tfds(catalog, split, data_dir, default_image_max=cls.IMAGE_MAX)
        builder = builders.prepare(name, data_dir)
    return _read_prepared(builder, name, split, default_image_max=cls.IMAGE_MAX)


def _catalog_copy_prepared(catalog: str, data_dir: str | None) -> bool:
    """Whether TFDS's own builder ``catalog`` has a prepared copy in the data directory."""
    tfds = _tfds()
    try:
        return tfds.builder(catalog, data_dir=data_dir).is_prepared()
    except tfds.core.registered.DatasetNotFoundError:
        return False


def _load_mixture(name: str, split: str) -> Dataset:
    spec = synthetic.MIXTURES[name]
    if split not in synthetic.SPLIT_SIZES:
        raise DatasetError(
            f"unknown split {split!r} for {name!r}; available: {', '.join(synthetic.SPLIT_SIZES)}"
        )
    features = synthetic.mixture_dataset(spec, split)
    return Dataset(name, split, features, num_classes=spec.num_modes, image_max=None)


def _load_tfds(
    name: str, split: str, data_dir: str | None, *, default_image_max: int = 255
) -> Dataset:
    builder = _tfds_builder(name, data_dir)
    root = os.fspath(builder.data_dir_root)
    if not builder.is_prepared():
        raise DatasetError(
            f"TFDS dataset {name!r} is not prepared in {root}: run `tfds build {name} "
            f"--data_dir {root} --file_format array_record` (needs TensorFlow and a network), "
            f"or copy a prepared array_record copy ({name}/<version>/) into {root}"
        )
    return _read_prepared(builder, name, split, default_image_max=default_image_max)


def _read_prepared(builder, name: str, split: str, *, default_image_max: int) -> Dataset:
    """Reads one split of a prepared TFDS builder into memory (``name`` for messages)."""
    root = os.fspath(builder.data_dir_root)
    _check_split(builder, name, split)
    features = builder.info.features
    image_max, num_classes = _check_features(
        features, name, builder.info.metadata, default_image_max
    )
    try:
        source = builder.as_data_source(split=split)
    except NotImplementedError:
        raise DatasetError(
            f"TFDS dataset {name!r} in {root} is stored as {builder.info.file_format}, which "
            f"has no random access: rebuild it with `tfds build {name} --data_dir {root} "
            "--file_format array_record`"
        ) from None
    except (ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise DatasetError(f"cannot read split {split!r} of {name!r}: {first_line}") from error
    keys = ["image", "label"] if num_classes is not None else ["image"]
    arrays = read_into_memory(source, keys)
    if arrays["image"].shape[0] == 0:
        raise DatasetError(f"split {split!r} of {name!r} is empty")
    arrays["image"] = arrays["image"].astype(np.uint8, copy=False)
    if "label" in arrays:
        arrays["label"] = arrays["label"].astype(np.int32)
    return Dataset(name, split, arrays, num_classes=num_classes, image_max=image_max)


def _tfds_builder(name: str, data_dir: str | None):
    tfds = _tfds()
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        where = data_dir or "the TFDS data directory"
        raise DatasetError(
            f"unknown dataset {name!r}: known are {', '.join(KNOWN_DATASETS)}, and any TFDS "
            f"dataset prepared in {where}"
        ) from None


def _check_split(builder, name: str, split: str) -> None:
    available = list(builder.info.splits.keys())
    if not available:  # no split metadata (e.g. mocked builders): let TFDS decide
        return
    # TFDS split syntax: "train", "train[:90%]", "train+test", "train[10:20]".
    parts = {re.sub(r"\[.*?\]", "", part).strip() for part in split.split("+")}
    if not parts <= set(available):
        raise DatasetError(
            f"unknown split {split!r} for {name!r}; available: {', '.join(available)}"
        )


def _check_features(
    features, name: str, metadata, default_image_max: int = 255
) -> tuple[int, int | None]:
    """Validates an image dataset's features; returns ``(image_max, num_classes or None)``.

    ``image_max`` is ``metadata["image_max"]`` when the builder records it (genjax's builders
    do), else ``default_image_max``: 255 for uint8 images, 1 for TFDS's own
    ``binarized_mnist``, whose images hold 0/1 and whose metadata says nothing.
    """
    if "image" not in features:
        raise DatasetError(
            f"dataset {name!r} has no 'image' feature (it has {sorted(features.keys())}); "
            "genjax reads image sets (key 'image') and the synthetic 2-D sets (key 'x')"
        )
    image = features["image"]
    shape = tuple(image.shape)
    if len(shape) != 3 or any(d is None for d in shape):
        raise DatasetError(
            f"dataset {name!r}: 'image' must have a fixed shape [H, W, C], got {shape}"
        )
    if np.dtype(image.np_dtype) != np.uint8:
        raise DatasetError(f"dataset {name!r}: 'image' must be uint8, got {image.np_dtype}")
    image_max = default_image_max
    if metadata is not None and "image_max" in metadata:
        image_max = int(metadata["image_max"])
    label = dict(features.items()).get("label")  # FeaturesDict has no .get
    is_class_label = isinstance(label, _tfds().features.ClassLabel)
    num_classes = label.num_classes if is_class_label else None
    return image_max, num_classes


def read_into_memory(
    source: Sequence[Mapping[str, Any]], keys: Sequence[str], *, chunk_size: int = 4096
) -> dict[str, np.ndarray]:
    """Reads every record of a random-access source into stacked NumPy arrays.

    Args:
      source: a ``tfds.data_source``-like sequence: ``len(source)`` records, each a dict of
        arrays/scalars; ``source.__getitems__(list_of_indices)`` is used when present.
      keys: the record keys to keep.
      chunk_size: records read per call.

    Returns:
      ``{key: array [len(source), ...]}`` in record order.

    Example:
      >>> import numpy as np
      >>> from genjax import data
      >>> source = [{"image": np.full((2, 2, 1), i, np.uint8), "label": i} for i in range(5)]
      >>> arrays = data.read_into_memory(source, ["image", "label"], chunk_size=2)
      >>> arrays["image"].shape, arrays["label"].tolist()
      ((5, 2, 2, 1), [0, 1, 2, 3, 4])
    """
    n = len(source)
    out: dict[str, np.ndarray] = {}
    get_many = getattr(source, "__getitems__", None)
    for start in range(0, n, chunk_size):
        indices = list(range(start, min(start + chunk_size, n)))
        records = get_many(indices) if get_many else [source[i] for i in indices]
        for key in keys:
            column = np.stack([np.asarray(r[key]) for r in records])
            if key not in out:
                out[key] = np.empty((n, *column.shape[1:]), dtype=column.dtype)
            out[key][start : start + len(indices)] = column
    if n == 0:
        out = {key: np.empty((0,)) for key in keys}
    return out

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
mnist/cifar-sized sets this library trains on (cifar10 train is 150 MB of uint8), or streamed:
``load(..., streaming=True)`` returns a :class:`StreamingDataset`, whose ``get`` reads only the
requested records from TFDS's random-access data source (``source.__getitems__``), so host
memory holds a batch, not the split. ``streaming="auto"`` (the default) streams a split whose
arrays would exceed ``streaming_above_mb`` megabytes. Both kinds give bitwise the same rows for
the same indices, so the batcher, which only calls ``get``, does not tell them apart.
"""

from __future__ import annotations

import dataclasses
import math
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
    "STREAMING_ABOVE_MB",
    "Dataset",
    "DatasetError",
    "FeatureSpec",
    "StreamingDataset",
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
#: ``streaming="auto"`` streams a split whose arrays would take more than this many
#: megabytes (2**20 bytes) of host memory.
STREAMING_ABOVE_MB = 2048.0
#: The values :func:`load`'s ``streaming`` takes (``True``/``False`` are also accepted).
STREAMING_VALUES = ("auto", "true", "false")


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


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The shape and dtype of one feature of a split, without its values.

    Attributes:
      shape: the full shape, leading size ``N`` first, e.g. ``(N, H, W, C)``.
      dtype: the NumPy dtype of the rows ``get`` returns.

    Example:
      >>> import numpy as np
      >>> from genjax import data
      >>> data.FeatureSpec((4, 2), np.dtype(np.float32))
      FeatureSpec(shape=(4, 2), dtype=dtype('float32'))
    """

    shape: tuple[int, ...]
    dtype: np.dtype


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
    def feature_specs(self) -> dict[str, FeatureSpec]:
        """``{key: FeatureSpec}``: each feature's full shape and dtype (as a
        :class:`StreamingDataset` gives them)."""
        return {k: FeatureSpec(tuple(v.shape), v.dtype) for k, v in self.features.items()}

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


class StreamingDataset:
    """One split of a TFDS dataset whose rows are read from disk when asked for.

    The same interface as :class:`Dataset` minus ``features``: ``get(indices)`` reads only
    the requested records through the random-access data source
    (``source.__getitems__(sorted unique indices)``, then reordered), so host memory holds
    the rows of a batch, never the split. For the same indices it returns bitwise what the
    in-memory :class:`Dataset` of the same split holds (same dtypes: ``image`` uint8,
    ``label`` int32). ``feature_specs`` gives the shapes and dtypes without reading.

    Args:
      name: the dataset name given to :func:`load`.
      split: the split name.
      source: a ``tfds.data_source``-like sequence of records (dicts of arrays/scalars),
        with ``__getitems__(list_of_indices)`` (``source[i]`` is used if it has none).
        It must be safe to read from several threads (TFDS's array_record source is).
      feature_specs: ``{key: FeatureSpec}`` of the features kept, each of leading size
        ``len(source)``; must hold exactly one of ``"image"`` / ``"x"``.
      num_classes: as for :class:`Dataset`.
      image_max: as for :class:`Dataset`.
      chunk_size: records read per ``__getitems__`` call.

    Example:
      >>> import numpy as np
      >>> from genjax import data
      >>> source = [{"image": np.full((2, 2, 1), i, np.uint8), "label": i} for i in range(6)]
      >>> specs = {"image": data.FeatureSpec((6, 2, 2, 1), np.dtype(np.uint8)),
      ...          "label": data.FeatureSpec((6,), np.dtype(np.int32))}
      >>> ds = data.StreamingDataset("toy", "train", source, specs, num_classes=6, image_max=255)
      >>> ds
      StreamingDataset('toy', split='train', {image: uint8[6, 2, 2, 1], label: int32[6]})
      >>> len(ds), ds.input_key, ds.nbytes  # 6 * 4 image bytes + 6 * 4 label bytes
      (6, 'image', 48)
      >>> ds.get(np.array([[4, 1], [4, 0]]))["label"]  # any index shape, repeats allowed
      array([[4, 1],
             [4, 0]], dtype=int32)
    """

    def __init__(
        self,
        name: str,
        split: str,
        source: Sequence[Mapping[str, Any]],
        feature_specs: Mapping[str, FeatureSpec],
        *,
        num_classes: int | None = None,
        image_max: int | None = None,
        chunk_size: int = 4096,
    ):
        specs = {
            k: FeatureSpec(tuple(int(d) for d in v.shape), np.dtype(v.dtype))
            for k, v in feature_specs.items()
        }
        if ("image" in specs) == ("x" in specs):
            raise DatasetError(
                f"dataset {name!r} must have exactly one input feature, 'image' or 'x'; "
                f"it has {sorted(specs)}"
            )
        n = len(source)
        sizes = {k: v.shape[0] if v.shape else None for k, v in specs.items()}
        if set(sizes.values()) != {n}:
            raise DatasetError(
                f"features of {name!r} must all have leading size {n} (the records), got {sizes}"
            )
        self.name = name
        self.split = split
        self.source = source
        self.num_classes = num_classes
        self.image_max = image_max
        self.chunk_size = int(chunk_size)
        self._specs = types.MappingProxyType(specs)

    @property
    def features(self):
        """Not available: the split is not held in memory (a one-line ``DatasetError``)."""
        raise DatasetError(
            f"split {self.split!r} of {self.name!r} is streamed from disk and holds no "
            "in-memory features: use get(indices) or feature_specs, or load it with "
            "streaming=False (data.streaming=false)"
        )

    @property
    def feature_specs(self) -> Mapping[str, FeatureSpec]:
        """``{key: FeatureSpec}``: each feature's full shape ``[N, ...]`` and dtype."""
        return self._specs

    @property
    def input_key(self) -> str:
        """``"image"`` for image sets, ``"x"`` for vector sets."""
        return "image" if "image" in self._specs else "x"

    @property
    def num_examples(self) -> int:
        """``N``, the number of records in the split."""
        return int(self._specs[self.input_key].shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes the split's arrays would take in memory (what streaming saves)."""
        return split_nbytes(self._specs)

    def __len__(self) -> int:
        return self.num_examples

    def get(self, indices: Any) -> dict[str, np.ndarray]:
        """Reads rows from disk.

        Args:
          indices: int array of any shape ``S`` (NumPy or JAX), values in ``[-N, N)``
          (negative values count from the end, as in NumPy indexing).

        Returns:
          ``{key: array [*S, ...]}`` for every feature, equal to the in-memory gather
          ``features[key][indices]``. Each distinct record is read once.
        """
        idx = np.asarray(indices)
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        n = self.num_examples
        flat = idx.reshape(-1).astype(np.int64)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            bad = flat[(flat < -n) | (flat >= n)][0]
            raise IndexError(f"index {bad} is out of bounds for a split of {n} records")
        flat = np.where(flat < 0, flat + n, flat)
        unique, inverse = np.unique(flat, return_inverse=True)
        rows = _read_records(self.source, unique, self._specs, self.chunk_size)
        if not np.array_equal(unique, flat):
            rows = {key: value[inverse.reshape(-1)] for key, value in rows.items()}
        return {key: value.reshape(*idx.shape, *value.shape[1:]) for key, value in rows.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self._specs.items())
        return f"StreamingDataset({self.name!r}, split={self.split!r}, {{{shapes}}})"


def split_nbytes(specs: Mapping[str, FeatureSpec]) -> int:
    """Bytes of the arrays described by ``specs`` (``sum(prod(shape) * itemsize)``)."""
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in specs.values())


def _read_records(
    source, indices: np.ndarray, specs: Mapping[str, FeatureSpec], chunk_size: int
) -> dict[str, np.ndarray]:
    """Records ``indices`` (1-D ints) of ``source`` as ``{key: [len(indices), ...]}`` arrays of
    the dtypes in ``specs`` (values cast as ``astype`` does)."""
    out = {k: np.empty((len(indices), *v.shape[1:]), v.dtype) for k, v in specs.items()}
    get_many = getattr(source, "__getitems__", None)
    for start in range(0, len(indices), chunk_size):
        chunk = [int(i) for i in indices[start : start + chunk_size]]
        records = get_many(chunk) if get_many else [source[i] for i in chunk]
        for key, array in out.items():
            column = np.stack([np.asarray(r[key]) for r in records])
            array[start : start + len(chunk)] = column.astype(array.dtype, copy=False)
    return out


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


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    streaming: str | bool = "auto",
    streaming_above_mb: float = STREAMING_ABOVE_MB,
) -> Dataset | StreamingDataset:
    """Loads one split of a dataset by name, into host memory or streamed from disk.

    Args:
      name: ``"digits"``, one of genjax's builders (``"mnist"``, ``"fashion_mnist"``,
        ``"binarized_mnist"``, ``"cifar10"``, ``"celeb_a_64"``), ``"ring8"``, ``"grid25"``, or
        the name of a TFDS image dataset prepared in the data directory.
      split: split name, e.g. ``"train"`` or ``"test"``; TFDS sets also accept TFDS's slicing
        syntax (``"train[:90%]"``).
      data_dir: TFDS data directory; default ``$GENJAX_DATA_DIR``, else TFDS's default.
      streaming: ``"false"``/``False``: read the split into memory (a :class:`Dataset`);
        ``"true"``/``True``: stream it (a :class:`StreamingDataset`; TFDS-backed sets only,
        which includes ``digits``, not the synthetic mixtures); ``"auto"``: stream a
        TFDS-backed split whose arrays would take more than ``streaming_above_mb``.
      streaming_above_mb: the ``"auto"`` threshold in megabytes (2**20 bytes), >= 0.

    Returns:
      The split as a :class:`Dataset`, or a :class:`StreamingDataset` when streamed.

    Raises:
      DatasetError: unknown name or split, TFDS dataset not prepared in the data directory,
        an original file of genjax's builders missing or malformed, features that are not
        an image/``x`` set, a bad ``streaming`` value, or ``streaming=True`` for a synthetic
        set.

    Example:
      >>> import contextlib, io, tempfile
      >>> from genjax import data
      >>> tmp = tempfile.mkdtemp()
      >>> with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints where it prepares digits
      ...     train = data.load("digits", "train", data_dir=tmp)
      >>> train, train.num_classes, train.image_max
      (Dataset('digits', split='train', {image: uint8[1442, 8, 8, 1], label: int32[1442]}), 10, 16)
      >>> data.load("ring8", "test")  # the synthetic sets need no data directory
      Dataset('ring8', split='test', {x: float32[10000, 2], label: int32[10000]})
      >>> data.load("digits", "train", data_dir=tmp, streaming=True)  # read from disk on demand
      StreamingDataset('digits', split='train', {image: uint8[1442, 8, 8, 1], label: int32[1442]})
    """
    if not isinstance(name, str) or not name:
        raise DatasetError(f"dataset name must be a non-empty string, got {name!r}")
    if not isinstance(split, str) or not split:
        raise DatasetError(f"split must be a non-empty string, got {split!r}")
    mode = streaming_mode(streaming)
    limit = _check_threshold(streaming_above_mb)
    if name in synthetic.MIXTURES:
        if mode == "true":
            raise DatasetError(
                f"streaming=true (data.streaming) needs a TFDS-backed dataset; {name!r} is a "
                "synthetic mixture held in memory (use streaming auto or false)"
            )
        return _load_mixture(name, split)
    data_dir = resolve_data_dir(data_dir)
    read = _Read(mode, limit)
    if name == "digits":
        _tfds()
        from genjax.data.digits import prepare_digits

        prepare_digits(data_dir)
    elif name in BUILDER_NAMES:
        return _load_manual(name, split, data_dir, read)
    return _load_tfds(name, split, data_dir, read)


def streaming_mode(value: Any) -> str:
    """``streaming`` as ``"auto"``, ``"true"`` or ``"false"`` (bools accepted); else a
    one-line :class:`DatasetError`.

    Example:
      >>> from genjax.data.sources import streaming_mode
      >>> streaming_mode(True), streaming_mode("auto")
      ('true', 'auto')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in STREAMING_VALUES:
        return value.strip().lower()
    raise DatasetError(
        f"data.streaming (load's streaming) must be 'auto', 'true' or 'false', got {value!r}"
    )


def _check_threshold(value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    if not ok or value != value:
        raise DatasetError(
            f"data.streaming_above_mb (load's streaming_above_mb) must be a number >= 0, "
            f"got {value!r}"
        )
    return float(value)


@dataclasses.dataclass(frozen=True)
class _Read:
    """How a TFDS split is read: ``mode`` of :func:`streaming_mode`, the ``auto`` limit."""

    mode: str = "false"
    above_mb: float = STREAMING_ABOVE_MB

    def streams(self, nbytes: int) -> bool:
        if self.mode == "auto":
            return nbytes > self.above_mb * 2**20
        return self.mode == "true"


def _load_manual(name: str, split: str, data_dir: str | None, read: _Read) -> Dataset:
    _tfds()
    from genjax.data import builders
    from genjax.data.manual import manual_root

    cls = builders.BUILDERS[name]
    builder = cls(data_dir=data_dir)
    if not builder.is_prepared():
        catalog = cls.TFDS_CATALOG_NAME
        no_files = not cls.has_files(manual_root(builder))
        if catalog and no_files and _catalog_copy_prepared(catalog, data_dir):
            return _load_tfds(catalog, split, data_dir, read, default_image_max=cls.IMAGE_MAX)
        builder = builders.prepare(name, data_dir)
    return _read_prepared(builder, name, split, read, default_image_max=cls.IMAGE_MAX)


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
    name: str, split: str, data_dir: str | None, read: _Read, *, default_image_max: int = 255
) -> Dataset:
    builder = _tfds_builder(name, data_dir)
    root = os.fspath(builder.data_dir_root)
    if not builder.is_prepared():
        raise DatasetError(
            f"TFDS dataset {name!r} is not prepared in {root}: run `tfds build {name} "
            f"--data_dir {root} --file_format array_record` (needs TensorFlow and a network), "
            f"or copy a prepared array_record copy ({name}/<version>/) into {root}"
        )
    return _read_prepared(builder, name, split, read, default_image_max=default_image_max)


def _read_prepared(
    builder, name: str, split: str, read: _Read, *, default_image_max: int
) -> Dataset | StreamingDataset:
    """One split of a prepared TFDS builder, read into memory or streamed as ``read`` says
    (``name`` for messages)."""
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
    n = len(source)
    specs = {"image": FeatureSpec((n, *features["image"].shape), np.dtype(np.uint8))}
    if num_classes is not None:
        specs["label"] = FeatureSpec((n,), np.dtype(np.int32))
    if read.streams(split_nbytes(specs)):
        if n == 0:
            raise DatasetError(f"split {split!r} of {name!r} is empty")
        return StreamingDataset(
            name, split, source, specs, num_classes=num_classes, image_max=image_max
        )
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

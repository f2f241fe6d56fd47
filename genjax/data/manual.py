"""The base of genjax's TFDS builders that prepare a set from its original files, offline.

TFDS's own builders for MNIST, CIFAR-10 or CelebA download their archives and encode images
with TensorFlow. genjax's builders (``mnist.py``, ``cifar10.py``, ``celeb_a.py``) read the same
original files from TFDS's *manual directory* instead, store images as raw ``uint8`` tensors
and write ``array_record`` files, so neither preparing nor reading needs TensorFlow or a
network. :func:`genjax.data.load` prepares such a set on first use, as it does ``digits``.

Where the files go
    ``<data_dir>/downloads/manual/``, under their original names (``<data_dir>`` is the
    TFDS data directory, see :func:`genjax.data.resolve_data_dir`). If the folder
    ``<data_dir>/downloads/manual/<name>/`` exists (``<name>`` as given to ``load``, e.g.
    ``fashion_mnist``), that set's files are taken from it instead: MNIST and Fashion-MNIST
    use the same file names, so keeping both needs one folder each.

What is checked, in this order (each failure is a :class:`DatasetError` of one line that names
the file and says what to do)
    1. every file is present;
    2. its format, strictly: magic numbers, dimensions, line lengths, pickled keys and
       shapes, archive members, and that the files of a split agree with each other
       (images vs labels);
    3. the number of records of every split against :attr:`ManualBuilder.SPLIT_SIZES`;
    4. each file's size and digest against the official release (:attr:`ManualBuilder.FILES`).
    With the default attributes only the official files pass. ``FILES`` and ``SPLIT_SIZES`` are
    class attributes so that a copy that differs on purpose (the small archives of the tests)
    can be prepared by a subclass or a patch that overrides them; a ``SourceFile`` with
    ``num_bytes``/``sha256``/``md5`` set to None skips that check.

Nothing prepared is damaged: TFDS writes a new set into a temporary folder and renames it into
place when complete, and :func:`prepare_builder` with ``force=True`` builds the replacement in a
temporary data directory and swaps it in only once it is complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from genjax.data.errors import DatasetError
from genjax.data.local_builder import LocalBuilder

__all__ = [
    "ArrayExamples",
    "ManualBuilder",
    "SourceFile",
    "file_digest",
    "manual_root",
    "prepare_builder",
]


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One original file of a dataset release.

    Attributes:
      name: the file name as distributed; the manual directory must hold it under this name.
      url: where the release publishes it (where TFDS's download manager would fetch it from,
        given a network).
      num_bytes: the official size in bytes, or None (not checked).
      sha256: the official SHA-256 digest (hex), or None.
      md5: the official MD5 digest (hex), for releases that publish only MD5; or None.

    Example:
      >>> from genjax.data.manual import SourceFile
      >>> source = SourceFile("a.gz", "https://x.org/a.gz", num_bytes=3, md5="0" * 32)
      >>> source.unchecked()  # the format is still checked, the size and digest no longer
      SourceFile(name='a.gz', url='https://x.org/a.gz', num_bytes=None, sha256=None, md5=None)
    """

    name: str
    url: str
    num_bytes: int | None = None
    sha256: str | None = None
    md5: str | None = None

    def unchecked(self) -> SourceFile:
        """This file with its size and digests dropped (format checks only)."""
        return SourceFile(self.name, self.url)


def file_digest(path: epath.PathLike, algorithm: str) -> str:
    """Hex digest of a file's bytes (``algorithm``: ``"sha256"`` or ``"md5"``), read in 8 MiB
    chunks.

    Example:
      >>> import os, tempfile
      >>> from genjax.data.manual import file_digest
      >>> path = os.path.join(tempfile.mkdtemp(), "abc.txt")
      >>> with open(path, "wb") as f:
      ...     _ = f.write(b"abc")
      >>> file_digest(path, "md5")
      '900150983cd24fb0d6963f7d28e17f72'
    """
    digest = hashlib.new(algorithm)
    with open(os.fspath(path), "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ArrayExamples:
    """The records of one split held as arrays: ``image`` uint8 ``[N, H, W, C]`` and, if
    given, ``label`` int ``[N]``. Record ``i`` has key ``i``.

    Example:
      >>> import numpy as np
      >>> from genjax.data.manual import ArrayExamples
      >>> records = ArrayExamples(np.zeros((2, 28, 28, 1), np.uint8), np.array([3, 7]))
      >>> len(records), [(key, record["label"]) for key, record in records]
      (2, [(0, 3), (1, 7)])
    """

    def __init__(self, image: np.ndarray, label: np.ndarray | None = None):
        self.image = image
        self.label = label

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for i in range(len(self)):
            record: dict[str, Any] = {"image": self.image[i]}
            if self.label is not None:
                record["label"] = int(self.label[i])
            yield i, record


class ManualBuilder(LocalBuilder, skip_registration=True):
    """A TFDS builder that prepares a set from its original files in the manual directory.

    Subclasses set the class attributes below and implement :meth:`read_splits`, which reads
    and validates the files and returns the records of every split. The records are written
    in the order :meth:`read_splits` gives them (shuffling on write is disabled), so record
    ``i`` of a split is the ``i``-th example of the original files.

    Features: ``image`` ``Tensor(IMAGE_SHAPE, uint8)`` and, when ``LABEL_NAMES`` is set,
    ``label`` ``ClassLabel(names=LABEL_NAMES)``; ``info.metadata["image_max"]`` is
    ``IMAGE_MAX``, the largest possible pixel value, which preprocessing divides by.

    Example:
      >>> import os, tempfile
      >>> from genjax.data import Cifar10, Mnist
      >>> from genjax.data.manual import ManualBuilder
      >>> issubclass(Mnist, ManualBuilder), Cifar10.where_from()
      (True, 'https://www.cs.toronto.edu/~kriz/')
      >>> manual_dir = tempfile.mkdtemp()  # an empty manual directory
      >>> Mnist.has_files(manual_dir)
      False
      >>> os.makedirs(os.path.join(manual_dir, "mnist"))  # a folder of the set's own name
      >>> Mnist.source_dir(manual_dir).name  # is where its files are then looked for
      'mnist'
    """

    #: The name :func:`genjax.data.load` serves the set under (the TFDS name is ``name``).
    GENJAX_NAME: ClassVar[str]
    #: The name of TFDS's own catalog builder for the same data, if any: a copy prepared by
    #: TFDS (``tfds build NAME``) is still read when genjax's is not there.
    TFDS_CATALOG_NAME: ClassVar[str | None] = None
    #: The original files, with the official sizes and digests.
    FILES: ClassVar[tuple[SourceFile, ...]]
    #: The official number of records of each split.
    SPLIT_SIZES: ClassVar[Mapping[str, int]]
    IMAGE_SHAPE: ClassVar[tuple[int, int, int]]
    IMAGE_MAX: ClassVar[int] = 255
    LABEL_NAMES: ClassVar[tuple[str, ...] | None] = None
    DESCRIPTION: ClassVar[str]
    CITATION: ClassVar[str]
    HOMEPAGE: ClassVar[str]
    #: Extra words for a digest mismatch (e.g. which other set uses the same file names).
    MISMATCH_HINT: ClassVar[str] = ""

    VERSION = tfds.core.Version("1.0.0")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if getattr(cls, "FILES", None) and "GENJAX_NAME" in cls.__dict__:
            cls.MANUAL_DOWNLOAD_INSTRUCTIONS = (
                f"Put {', '.join(f.name for f in cls.FILES)} (from {cls.where_from()}) in "
                f"<data_dir>/downloads/manual/ or <data_dir>/downloads/manual/{cls.GENJAX_NAME}/."
            )

    @classmethod
    def where_from(cls) -> str:
        """Where the files are published: their URLs' folders, or the homepage for download
        links that are not plain paths (CelebA's Google Drive links)."""
        if any("?" in f.url for f in cls.FILES):
            return cls.HOMEPAGE
        return ", ".join(dict.fromkeys(f.url.rsplit("/", 1)[0] + "/" for f in cls.FILES))

    def _info(self) -> tfds.core.DatasetInfo:
        features: dict[str, Any] = {
            "image": tfds.features.Tensor(shape=self.IMAGE_SHAPE, dtype=np.uint8)
        }
        if self.LABEL_NAMES is not None:
            features["label"] = tfds.features.ClassLabel(names=list(self.LABEL_NAMES))
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "label") if self.LABEL_NAMES is not None else None,
            disable_shuffling=True,
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            metadata=tfds.core.MetadataDict(image_max=self.IMAGE_MAX, **self.extra_metadata()),
        )

    def extra_metadata(self) -> dict[str, Any]:
        """More ``info.metadata`` entries (JSON-serialisable); none by default."""
        return {}

    # -- the files ---------------------------------------------------------------------

    @classmethod
    def source_dir(cls, manual_dir: epath.PathLike) -> epath.Path:
        """``manual_dir/<GENJAX_NAME>/`` if that folder exists, else ``manual_dir``."""
        manual_dir = epath.Path(manual_dir)
        own = manual_dir / cls.GENJAX_NAME
        return own if own.is_dir() else manual_dir

    @classmethod
    def has_files(cls, manual_dir: epath.PathLike) -> bool:
        """Whether at least one of the set's files is in its manual folder."""
        folder = cls.source_dir(manual_dir)
        return any((folder / f.name).is_file() for f in cls.FILES)

    @classmethod
    def locate(cls, manual_dir: epath.PathLike) -> dict[str, epath.Path]:
        """The path of every file of ``FILES``, by file name.

        Raises:
          DatasetError: a file is missing (the message names it, where it goes and its URL).
        """
        folder = cls.source_dir(manual_dir)
        paths = {f.name: folder / f.name for f in cls.FILES}
        missing = [f for f in cls.FILES if not paths[f.name].is_file()]
        if not missing:
            return paths
        if len(missing) == len(cls.FILES):
            raise DatasetError(cls._nothing_there_message(epath.Path(manual_dir)))
        listing = ", ".join(f"{f.name} (from {f.url})" for f in missing)
        raise DatasetError(
            f"{cls.GENJAX_NAME}: {listing} missing from {folder}: put "
            f"{'it' if len(missing) == 1 else 'them'} there beside the set's other files"
        )

    @classmethod
    def _nothing_there_message(cls, manual_dir: epath.Path) -> str:
        root = manual_dir.parent.parent
        names = ", ".join(f.name for f in cls.FILES)
        folder = cls.source_dir(manual_dir)
        if folder == manual_dir:
            where = f"{manual_dir}/ (or {manual_dir / cls.GENJAX_NAME}/)"
        else:
            where = f"{folder}/ (that folder exists, so they are read from it, not {manual_dir}/)"
        message = (
            f"dataset {cls.GENJAX_NAME!r} is not prepared in {root}: put its original files "
            f"{names} (from {cls.where_from()}) in {where} and genjax prepares it on first use"
        )
        if cls.TFDS_CATALOG_NAME:
            message += (
                f"; or prepare TFDS's own copy with `tfds build {cls.TFDS_CATALOG_NAME} "
                f"--data_dir {root} --file_format array_record` (needs TensorFlow and a network)"
            )
        return message

    @classmethod
    def verify_file(cls, path: epath.Path, source: SourceFile) -> None:
        """Checks a file's size and digests against the official ones (those not None).

        Raises:
          DatasetError: the size or a digest differs.
        """
        size = os.path.getsize(os.fspath(path))
        if source.num_bytes is not None and size != source.num_bytes:
            raise DatasetError(
                f"{cls.GENJAX_NAME}: {path} is {size:,} bytes, but the official {source.name} "
                f"is {source.num_bytes:,}: it is truncated or another file; download it again "
                f"from {source.url}"
            )
        for algorithm in ("sha256", "md5"):
            want = getattr(source, algorithm)
            if want is None:
                continue
            got = file_digest(path, algorithm)
            if got != want.lower():
                raise DatasetError(
                    f"{cls.GENJAX_NAME}: {path} has {algorithm} {got}, not the official "
                    f"{want} of {source.name}: it is another file{cls.MISMATCH_HINT}; "
                    f"download it again from {source.url}"
                )

    def read_splits(self, paths: Mapping[str, epath.Path]) -> dict[str, Any]:
        """Reads and validates the files; returns ``{split: records}``.

        Args:
          paths: the path of every file of ``FILES``, by file name.

        Returns:
          For every split of ``SPLIT_SIZES``, a sized iterable of ``(key, record)`` pairs
          (e.g. :class:`ArrayExamples`). Checks that need a whole pass (decoding every image)
          may be left to the iteration; they raise :class:`DatasetError` there.
        """
        raise NotImplementedError

    # -- TFDS's hooks --------------------------------------------------------------------

    def _split_generators(self, dl_manager):
        paths = self.locate(dl_manager.manual_dir)
        splits = self.read_splits(paths)
        if set(splits) != set(self.SPLIT_SIZES):
            raise AssertionError(f"read_splits returned {sorted(splits)}")
        for split, expected in self.SPLIT_SIZES.items():
            if len(splits[split]) != expected:
                raise DatasetError(
                    f"{self.GENJAX_NAME}: the {split} split of the files in "
                    f"{self.source_dir(dl_manager.manual_dir)} has {len(splits[split]):,} "
                    f"records, but the official release has {expected:,}: the files are "
                    "incomplete or from another release; download them again"
                )
        for source in self.FILES:
            self.verify_file(paths[source.name], source)
        return {split: self._generate_examples(records) for split, records in splits.items()}

    def _generate_examples(self, records):
        yield from records


def manual_root(builder: tfds.core.DatasetBuilder) -> epath.Path:
    """TFDS's default manual directory of a builder: ``<data_dir>/downloads/manual``.

    Example:
      >>> import os, tempfile
      >>> from genjax.data import Mnist
      >>> from genjax.data.manual import manual_root
      >>> data_dir = tempfile.mkdtemp()
      >>> os.path.relpath(manual_root(Mnist(data_dir=data_dir)), data_dir)
      'downloads/manual'
    """
    return epath.Path(builder.data_dir_root) / "downloads" / "manual"


def prepare_builder(
    cls: type[ManualBuilder],
    data_dir: str | os.PathLike | None = None,
    *,
    force: bool = False,
) -> ManualBuilder:
    """Prepares a :class:`ManualBuilder` set from the manual directory, unless it is there.

    Args:
      cls: the builder class.
      data_dir: TFDS data directory (None: TFDS's default).
      force: rebuild even if prepared (e.g. after replacing the files). The new copy is built
        in a temporary data directory beside the old one and swapped in when complete; if
        anything fails, the old copy is left as it was.

    Returns:
      The prepared builder.

    Raises:
      DatasetError: a file is missing or not in its documented format.

    Example:
      >>> import tempfile
      >>> from genjax.data import Mnist
      >>> from genjax.data.manual import prepare_builder
      >>> # No files in the manual directory: reported before TFDS starts.
      >>> prepare_builder(Mnist, tempfile.mkdtemp())  # doctest: +ELLIPSIS
      Traceback (most recent call last):
          ...
      genjax.data.errors.DatasetError: dataset 'mnist' is not prepared in ...: put its original ...
    """
    builder = cls(data_dir=data_dir)
    prepared = builder.is_prepared()
    if prepared and not force:
        return builder
    manual_dir = manual_root(builder)
    cls.locate(manual_dir)  # a missing file is reported before TFDS starts
    config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir), try_download_gcs=False)
    if not prepared:
        try:
            builder.download_and_prepare(download_config=config)
        except OSError:
            # Another process (a host of the same run) prepared the same directory first and
            # TFDS's final rename failed; the copy that landed is as good as ours.
            if not cls(data_dir=data_dir).is_prepared():
                raise
        return cls(data_dir=data_dir)
    _rebuild(cls, builder, config)
    return cls(data_dir=data_dir)


def _rebuild(cls: type[ManualBuilder], builder: ManualBuilder, config) -> None:
    """Builds a fresh copy in a temporary data directory, then swaps it for the old one."""
    root = epath.Path(builder.data_dir_root)
    staging = epath.Path(tempfile.mkdtemp(prefix=f".{cls.name}-rebuild-", dir=os.fspath(root)))
    try:
        fresh = cls(data_dir=staging)
        fresh.download_and_prepare(download_config=config)
        target = os.fspath(builder.data_path)
        retired = os.fspath(staging / f"replaced-{uuid.uuid4().hex}")
        os.rename(target, retired)
        try:
            os.rename(os.fspath(fresh.data_path), target)
        except OSError:
            os.rename(retired, target)
            raise
    finally:
        shutil.rmtree(os.fspath(staging), ignore_errors=True)

"""genjax's TFDS builders for MNIST, Fashion-MNIST and the fixed binarisation of MNIST.

All three read the original files from TFDS's manual directory (see ``manual.py`` for where
they go and what is checked) and write ``array_record`` files with no TensorFlow.

``mnist`` / ``fashion_mnist`` (TFDS names ``genjax_mnist`` / ``genjax_fashion_mnist``)
    Files: ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``: gzip-compressed IDX files
    (LeCun et al. 1998; the format is described on http://yann.lecun.com/exdb/mnist/). An IDX
    file is a big-endian header, ``0x00 0x00 <type> <ndim>`` (read as one uint32, the magic
    number) followed by ``ndim`` uint32 sizes, then the data in row-major order. Images:
    magic 2051 (type 0x08 = unsigned byte, 3 dimensions ``[N, 28, 28]``), pixel 0 = background;
    labels: magic 2049 (unsigned byte, 1 dimension ``[N]``), values 0..9.
    Splits: ``train`` (60,000) from ``train-*``, ``test`` (10,000) from ``t10k-*``, in file
    order. Features: ``image`` uint8 ``[28, 28, 1]`` (0..255, ``image_max`` 255), ``label``
    ``ClassLabel(10)``. Fashion-MNIST (Xiao et al. 2017) has the same layout and file names;
    its classes are T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag,
    Ankle boot.

``binarized_mnist`` (TFDS name ``genjax_binarized_mnist``)
    The fixed binarisation of MNIST of Larochelle & Murray (2011), the benchmark of
    density-estimation papers (NADE, IWAE, ...): ``binarized_mnist_train.amat``,
    ``binarized_mnist_valid.amat``, ``binarized_mnist_test.amat``, text files with one image
    per line, 784 values ``0``/``1`` separated by single spaces in row-major order, each line
    ended by ``\\n`` (so every line is exactly 1,568 bytes). Splits: ``train`` (50,000),
    ``validation`` (10,000), ``test`` (10,000), in file order. Features: ``image`` uint8
    ``[28, 28, 1]`` with values in {0, 1}, and ``info.metadata["image_max"] = 1`` so that
    scaling by ``image_max`` leaves them binary. The files carry no labels, so neither does
    the set.

Official sizes and SHA-256 digests are those TFDS's own catalog builders (``mnist``,
``fashion_mnist``, ``binarized_mnist``) record for the same files.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Iterable, Mapping
from typing import ClassVar

import numpy as np
from etils import epath

from genjax.data.errors import DatasetError
from genjax.data.manual import ArrayExamples, ManualBuilder, SourceFile

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "BinarizedMnist",
    "FashionMnist",
    "Mnist",
    "read_amat",
    "read_idx",
]

#: IDX magic number of an image file: unsigned bytes (0x08), 3 dimensions.
IDX_IMAGES_MAGIC = 0x00000803  # 2051
#: IDX magic number of a label file: unsigned bytes (0x08), 1 dimension.
IDX_LABELS_MAGIC = 0x00000801  # 2049
_IDX_KIND = {IDX_IMAGES_MAGIC: "an image file", IDX_LABELS_MAGIC: "a label file"}

#: Bytes per line of a ``.amat`` file: 784 digits, 783 spaces and the newline.
AMAT_LINE_BYTES = 28 * 28 * 2


def _open_error(dataset: str, path, error: Exception) -> DatasetError:
    return DatasetError(
        f"{dataset}: {path} cannot be read ({type(error).__name__}: {error}): the file is "
        "damaged or not what its name says; download it again"
    )


def read_idx(path: epath.PathLike, magic: int, *, dataset: str) -> np.ndarray:
    """Reads one gzip-compressed IDX file of unsigned bytes.

    Args:
      path: the ``.gz`` file.
      magic: the expected magic number (:data:`IDX_IMAGES_MAGIC` or :data:`IDX_LABELS_MAGIC`);
        its low byte is the number of dimensions.
      dataset: the dataset name, for messages.

    Returns:
      A read-only uint8 array with the header's shape (``[N, rows, cols]`` or ``[N]``).

    Raises:
      DatasetError: not gzip, truncated, another magic number, or a data size that differs
        from the header's dimensions.

    Example:
      >>> import gzip, os, struct, tempfile
      >>> from genjax.data.mnist import IDX_LABELS_MAGIC, read_idx
      >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
      >>> with gzip.open(path, "wb") as f:  # header: magic, then the size of each dimension
      ...     _ = f.write(struct.pack(">II", IDX_LABELS_MAGIC, 3) + bytes([7, 0, 9]))
      >>> read_idx(path, IDX_LABELS_MAGIC, dataset="mnist")
      array([7, 0, 9], dtype=uint8)
    """
    path = os.fspath(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except EOFError:
        raise DatasetError(
            f"{dataset}: {path} is truncated (the gzip stream ends early); download it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as error:
        raise _open_error(dataset, path, error) from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) >= 4:
        got = int.from_bytes(raw[:4], "big")
        if got != magic:
            kind = _IDX_KIND.get(got, "not an IDX file of unsigned bytes")
            raise DatasetError(
                f"{dataset}: {path} has IDX magic number {got} ({kind}), expected {magic} "
                f"({_IDX_KIND[magic]}): check that the file is the one its name says"
            )
    if len(raw) < header:
        raise DatasetError(
            f"{dataset}: {path} is truncated: {len(raw)} bytes after decompression, shorter "
            f"than the {header}-byte IDX header; download it again"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims)
    held = len(raw) - header
    if held != expected:
        what = "is truncated" if held < expected else "has trailing bytes"
        raise DatasetError(
            f"{dataset}: {path} {what}: its header says {' x '.join(map(str, dims))} = "
            f"{expected:,} bytes of data, the file holds {held:,}; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_amat(path: epath.PathLike, *, dataset: str) -> np.ndarray:
    """Reads one ``.amat`` file of the binarised MNIST.

    Args:
      path: the text file: one image per line, 784 values ``0``/``1`` separated by single
        spaces, each line ended by ``\\n``.
      dataset: the dataset name, for messages.

    Returns:
      uint8 ``[N, 28, 28, 1]`` with values in {0, 1}, the line order kept.

    Raises:
      DatasetError: empty file, a line with another number of values or another separator,
        a value that is not 0 or 1, or a last line without its newline (truncated); the
        message gives the first such line.

    Example:
      >>> import os, tempfile
      >>> from genjax.data.mnist import read_amat
      >>> path = os.path.join(tempfile.mkdtemp(), "binarized_mnist_test.amat")
      >>> with open(path, "w", newline="") as f:  # two images, pixel 0 on
      ...     _ = f.write((" ".join(["1"] + ["0"] * 783) + "\\n") * 2)
      >>> images = read_amat(path, dataset="binarized_mnist")
      >>> images.shape, images[:, 0, 0, 0].tolist(), int(images.sum())
      ((2, 28, 28, 1), [1, 1], 2)
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise _open_error(dataset, path, error) from None
    if not raw:
        raise DatasetError(f"{dataset}: {path} is empty; download it again")
    if len(raw) % AMAT_LINE_BYTES == 0:
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, AMAT_LINE_BYTES)
        values = rows[:, 0::2]  # 784 columns: the digits
        gaps = rows[:, 1::2]  # 784 columns: 783 spaces, then the newline
        if (
            np.all((values == ord("0")) | (values == ord("1")))
            and np.all(gaps[:, :-1] == ord(" "))
            and np.all(gaps[:, -1] == ord("\n"))
        ):
            return (values - ord("0")).reshape(-1, 28, 28, 1)
    raise DatasetError(f"{dataset}: {path} {_amat_problem(raw)}; download it again")


def _amat_problem(raw: bytes) -> str:
    """Describes the first malformed line of an ``.amat`` file."""
    lines = raw.split(b"\n")
    complete = lines[-1] == b""
    if complete:
        lines = lines[:-1]
    for number, line in enumerate(lines, start=1):
        if number == len(lines) and not complete:
            return f"is truncated: its last line ({number}) has no newline"
        if line.endswith(b"\r"):
            return f"has a Windows line ending on line {number}; expected '\\n' only"
        values = line.split(b" ")
        if len(values) != 28 * 28:
            return f"has {len(values)} space-separated values on line {number}, expected 784"
        bad = next((v for v in values if v not in (b"0", b"1")), None)
        if bad is not None:
            shown = bad.decode(errors="replace")
            return f"has the value {shown!r} on line {number}, expected 0 or 1"
    return "is not in the .amat format (784 values 0/1 per line)"


_MNIST_HOME = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_FASHION_HOME = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_AMAT_HOME = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"

#: The IDX files of each split: (images, labels) file names.
IDX_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: The IDX file names in the order of ``FILES``: each split's images, then its labels.
_IDX_FILES = tuple(name for pair in IDX_SPLIT_FILES.values() for name in pair)


def _published(
    home: str, names: Iterable[str], *official: tuple[int, str]
) -> tuple[SourceFile, ...]:
    """``SourceFile(name, home + name, num_bytes, sha256)`` for each of ``names``, in order,
    with its ``official`` ``(num_bytes, sha256)``."""
    return tuple(
        SourceFile(name, home + name, num_bytes, sha256)
        for name, (num_bytes, sha256) in zip(names, official, strict=True)
    )


class _IdxBuilder(ManualBuilder, skip_registration=True):
    """MNIST-layout sets: four IDX files, 28x28 grey images and labels 0..9."""

    SPLIT_SIZES: ClassVar[Mapping[str, int]] = {"train": 60_000, "test": 10_000}
    IMAGE_SHAPE = (28, 28, 1)
    MISMATCH_HINT = (
        " (MNIST and Fashion-MNIST use the same file names: keep each set's files in "
        "downloads/manual/mnist/ and downloads/manual/fashion_mnist/)"
    )

    def read_splits(self, paths):
        name = self.GENJAX_NAME
        splits = {}
        for split, (image_file, label_file) in IDX_SPLIT_FILES.items():
            images = read_idx(paths[image_file], IDX_IMAGES_MAGIC, dataset=name)
            if images.shape[1:] != (28, 28):
                raise DatasetError(
                    f"{name}: {paths[image_file]} holds {images.shape[1]}x{images.shape[2]} "
                    "images, expected 28x28: it is not an MNIST-layout file"
                )
            labels = read_idx(paths[label_file], IDX_LABELS_MAGIC, dataset=name)
            if labels.shape[0] != images.shape[0]:
                raise DatasetError(
                    f"{name}: {paths[image_file]} holds {images.shape[0]:,} images but "
                    f"{paths[label_file]} {labels.shape[0]:,} labels: the two files are from "
                    "different releases or one is incomplete"
                )
            if labels.size and labels.max() >= 10:
                at = int(np.argmax(labels >= 10))
                raise DatasetError(
                    f"{name}: {paths[label_file]} has label {labels[at]} at record {at}, "
                    "expected 0..9"
                )
            splits[split] = ArrayExamples(images[..., None], labels)
        return splits


class Mnist(_IdxBuilder):
    """MNIST from its original IDX files (``load("mnist", ...)``); see the module docstring.

    Example:
      >>> import tempfile
      >>> from genjax.data import Mnist
      >>> Mnist.GENJAX_NAME, Mnist.name, dict(Mnist.SPLIT_SIZES)  # load name, TFDS name, splits
      ('mnist', 'genjax_mnist', {'train': 60000, 'test': 10000})
      >>> [f.name for f in Mnist.FILES][:2]  # put the four files in <data_dir>/downloads/manual/
      ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz']
      >>> builder = Mnist(data_dir=tempfile.mkdtemp())
      >>> builder.is_prepared(), builder.info.features["image"].shape
      (False, (28, 28, 1))
    """

    name = "genjax_mnist"
    GENJAX_NAME = "mnist"
    TFDS_CATALOG_NAME = "mnist"
    FILES = _published(
        _MNIST_HOME,
        _IDX_FILES,
        (9_912_422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        (28_881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        (1_648_877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        (4_542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    )
    LABEL_NAMES = tuple(str(d) for d in range(10))
    HOMEPAGE = "http://yann.lecun.com/exdb/mnist/"
    DESCRIPTION = (
        "MNIST handwritten digits (60,000 train / 10,000 test, 28x28 grey, labels 0..9), "
        "prepared by genjax from the original IDX files without TensorFlow; raw uint8 pixels."
    )
    CITATION = """\
@article{lecun1998gradient,
  author = {LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and Haffner, Patrick},
  title = {Gradient-Based Learning Applied to Document Recognition},
  journal = {Proceedings of the IEEE},
  volume = {86}, number = {11}, pages = {2278--2324}, year = {1998}
}"""


class FashionMnist(_IdxBuilder):
    """Fashion-MNIST from its original IDX files (``load("fashion_mnist", ...)``).

    Example:
      >>> import tempfile
      >>> from genjax.data import FashionMnist
      >>> FashionMnist.GENJAX_NAME, FashionMnist.LABEL_NAMES[:3]
      ('fashion_mnist', ('T-shirt/top', 'Trouser', 'Pullover'))
      >>> FashionMnist(data_dir=tempfile.mkdtemp()).is_prepared()  # its files not there yet
      False
    """

    name = "genjax_fashion_mnist"
    GENJAX_NAME = "fashion_mnist"
    TFDS_CATALOG_NAME = "fashion_mnist"
    FILES = _published(
        _FASHION_HOME,
        _IDX_FILES,
        (26_421_880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        (29_515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        (4_422_102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        (5_148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    )
    LABEL_NAMES = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
    HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
    DESCRIPTION = (
        "Fashion-MNIST (Zalando article images; 60,000 train / 10,000 test, 28x28 grey, "
        "10 classes), prepared by genjax from the original IDX files without TensorFlow."
    )
    CITATION = """\
@article{xiao2017fashion,
  author = {Xiao, Han and Rasul, Kashif and Vollgraf, Roland},
  title = {Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms},
  journal = {arXiv preprint arXiv:1708.07747}, year = {2017}
}"""


#: The ``.amat`` file of each split of ``binarized_mnist``.
AMAT_SPLIT_FILES = {
    "train": "binarized_mnist_train.amat",
    "validation": "binarized_mnist_valid.amat",
    "test": "binarized_mnist_test.amat",
}


class BinarizedMnist(ManualBuilder):
    """Larochelle & Murray's fixed binarisation of MNIST (``load("binarized_mnist", ...)``).

    Images are uint8 in {0, 1} with ``image_max`` 1; there are no labels.

    Example:
      >>> import tempfile
      >>> from genjax.data import BinarizedMnist
      >>> dict(BinarizedMnist.SPLIT_SIZES), BinarizedMnist.IMAGE_MAX
      ({'train': 50000, 'validation': 10000, 'test': 10000}, 1)
      >>> sorted(BinarizedMnist(data_dir=tempfile.mkdtemp()).info.features)  # no labels
      ['image']
    """

    name = "genjax_binarized_mnist"
    GENJAX_NAME = "binarized_mnist"
    TFDS_CATALOG_NAME = "binarized_mnist"
    FILES = _published(
        _AMAT_HOME,
        AMAT_SPLIT_FILES.values(),
        (78_400_000, "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
        (15_680_000, "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
        (15_680_000, "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
    )
    SPLIT_SIZES: ClassVar[Mapping[str, int]] = {
        "train": 50_000,
        "validation": 10_000,
        "test": 10_000,
    }
    IMAGE_SHAPE = (28, 28, 1)
    IMAGE_MAX = 1
    HOMEPAGE = "https://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
    DESCRIPTION = (
        "The fixed binarisation of MNIST of Larochelle & Murray (2011): 50,000 train / 10,000 "
        "validation / 10,000 test 28x28 images with pixels in {0, 1} (image_max 1), no labels; "
        "prepared by genjax from the original .amat files without TensorFlow."
    )
    CITATION = """\
@inproceedings{larochelle2011neural,
  author = {Larochelle, Hugo and Murray, Iain},
  title = {The Neural Autoregressive Distribution Estimator},
  booktitle = {Proceedings of the Fourteenth International Conference on Artificial
               Intelligence and Statistics (AISTATS)},
  pages = {29--37}, year = {2011}
}"""

    def read_splits(self, paths):
        return {
            split: ArrayExamples(read_amat(paths[file], dataset=self.GENJAX_NAME))
            for split, file in AMAT_SPLIT_FILES.items()
        }

"""genjax's TFDS builder for CelebA at 64x64: aligned faces, center-cropped and resized.

``celeb_a_64`` (TFDS name ``genjax_celeb_a_64``)
    Files (Liu et al. 2015; https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html), in TFDS's manual
    directory (see ``manual.py``):
    ``img_align_celeba.zip``: the 202,599 aligned and cropped JPEGs, 178 wide x 218 high, RGB,
    stored as ``img_align_celeba/000001.jpg`` .. ``img_align_celeba/202599.jpg``;
    ``list_eval_partition.txt``: one line per image, ``"<file> <code>"`` (e.g.
    ``000001.jpg 0``; the official file ends its lines with ``\\r\\n``, ``\\n`` is accepted
    too), code 0 = train, 1 = validation, 2 = test.
    Splits: ``train`` (162,770), ``validation`` (19,867), ``test`` (19,962), each in the order
    of the partition file. Features: ``image`` uint8 ``[64, 64, 3]`` (RGB, ``image_max`` 255);
    no labels.

The 64x64 images
    The preprocessing of the PyTorch-VAE benchmark (A. K. Subramanian, 2020,
    https://github.com/AntixK/PyTorch-VAE, ``dataset.py``), used by many VAE papers'
    reimplementations: torchvision's ``CenterCrop(148)`` then ``Resize(64)`` on the decoded PIL
    image. The crop keeps rows 35..182 and columns 15..162 (offsets ``round((218 - 148) / 2)``
    and ``round((178 - 148) / 2)``), i.e. the box ``(15, 35, 163, 183)``; the resize is Pillow's
    ``Image.resize((64, 64), BILINEAR)``, whose filter is widened by the downscale factor
    (antialiased). That pipeline's random horizontal flip is training augmentation and is not
    applied here. (Other pipelines crop 108x108 or 140x140 instead; those would be other sets.)
    JPEG decoding and resampling are Pillow's, so the stored pixels are exact for a given
    Pillow build; another libjpeg may differ by a grey level here and there.

Official sizes and SHA-256 digests are those TFDS's own ``celeb_a`` builder records for the
same two files.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from genjax.data.errors import DatasetError
from genjax.data.manual import ManualBuilder, SourceFile

__all__ = ["CROP_BOX", "CelebA64", "center_crop_resize", "read_partition"]

ARCHIVE = "img_align_celeba.zip"
PARTITION = "list_eval_partition.txt"
FOLDER = "img_align_celeba"
#: (width, height) of the aligned JPEGs.
SOURCE_SIZE = (178, 218)
CROP = 148
SIZE = 64
#: The 148x148 center crop as a PIL box (left, upper, right, lower).
CROP_BOX = (
    round((SOURCE_SIZE[0] - CROP) / 2),
    round((SOURCE_SIZE[1] - CROP) / 2),
    round((SOURCE_SIZE[0] - CROP) / 2) + CROP,
    round((SOURCE_SIZE[1] - CROP) / 2) + CROP,
)
SPLIT_CODES = {"0": "train", "1": "validation", "2": "test"}
_LINE = re.compile(r"(\d{6}\.jpg) ([012])")


def read_partition(path: os.PathLike | str) -> dict[str, list[str]]:
    """Reads ``list_eval_partition.txt``.

    Returns:
      ``{"train": [file, ...], "validation": [...], "test": [...]}``, in file order.

    Raises:
      DatasetError: a line that is not ``"NNNNNN.jpg C"`` with C in 0/1/2, or a file listed
        twice.

    Example:
      >>> import os, tempfile
      >>> from genjax.data.celeb_a import read_partition
      >>> path = os.path.join(tempfile.mkdtemp(), "list_eval_partition.txt")
      >>> with open(path, "w", newline="") as f:
      ...     _ = f.write("000001.jpg 0\\r\\n000002.jpg 2\\r\\n000003.jpg 0\\r\\n")
      >>> read_partition(path)
      {'train': ['000001.jpg', '000003.jpg'], 'validation': [], 'test': ['000002.jpg']}
    """
    where = os.fspath(path)
    try:
        with open(where, "rb") as f:
            text = f.read().decode("ascii")
    except UnicodeDecodeError:
        raise DatasetError(f"celeb_a_64: {where} is not a text file; download it again") from None
    except OSError as error:
        raise DatasetError(f"celeb_a_64: {where} cannot be read ({error})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines = lines[:-1]
    out: dict[str, list[str]] = {split: [] for split in SPLIT_CODES.values()}
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        match = _LINE.fullmatch(line.removesuffix("\r"))
        if match is None:
            raise DatasetError(
                f"celeb_a_64: line {number} of {where} is {line[:40]!r}, expected "
                "'NNNNNN.jpg C' with C = 0 (train), 1 (validation) or 2 (test)"
            )
        name, code = match.groups()
        if name in seen:
            raise DatasetError(f"celeb_a_64: {where} lists {name} twice (line {number})")
        seen.add(name)
        out[SPLIT_CODES[code]].append(name)
    if not seen:
        raise DatasetError(f"celeb_a_64: {where} is empty; download it again")
    return out


def center_crop_resize(image: Any) -> np.ndarray:
    """The 148x148 center crop of a 178x218 PIL image, resized to 64x64 (Pillow bilinear).

    Args:
      image: a ``PIL.Image.Image`` of size 178x218, mode RGB.

    Returns:
      uint8 ``[64, 64, 3]``.

    Example:
      >>> from PIL import Image
      >>> from genjax.data.celeb_a import CROP_BOX, center_crop_resize
      >>> image = Image.new("RGB", (178, 218), (255, 0, 0))  # an aligned CelebA JPEG's size
      >>> face = center_crop_resize(image)
      >>> CROP_BOX, face.shape, face.dtype, face[32, 32].tolist()
      ((15, 35, 163, 183), (64, 64, 3), dtype('uint8'), [255, 0, 0])
    """
    from PIL import Image  # local import: needed only to prepare this set

    return np.asarray(image.crop(CROP_BOX).resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def _decode(data: bytes, entry: str, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    what = f"celeb_a_64: {entry} in {where}"
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG":
                raise DatasetError(f"{what} is {image.format}, expected a JPEG")
            if image.size != SOURCE_SIZE or image.mode != "RGB":
                raise DatasetError(
                    f"{what} is {image.size[0]}x{image.size[1]} {image.mode}, expected the "
                    f"aligned {SOURCE_SIZE[0]}x{SOURCE_SIZE[1]} RGB: it is not from "
                    f"{ARCHIVE}"
                )
            image.load()
            return center_crop_resize(image)
    except UnidentifiedImageError:
        raise DatasetError(f"{what} is not an image; download the archive again") from None
    except OSError as error:
        raise DatasetError(
            f"{what} cannot be decoded ({error}); download the archive again"
        ) from None


class _CelebAExamples:
    """The records of one split, decoded from the zip while they are written."""

    def __init__(self, archive: str, names: Sequence[str]):
        self.archive = archive
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        with zipfile.ZipFile(self.archive) as zf:
            for name in self.names:
                entry = f"{FOLDER}/{name}"
                try:
                    data = zf.read(entry)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
                    raise DatasetError(
                        f"celeb_a_64: {entry} in {self.archive} cannot be read ({error}): the "
                        "archive is damaged; download it again"
                    ) from None
                yield int(name[:6]), {"image": _decode(data, entry, self.archive)}


class CelebA64(ManualBuilder):
    """Aligned CelebA, 148x148 center crop resized to 64x64 (``load("celeb_a_64", ...)``);
    see the module docstring.

    Example:
      >>> import tempfile
      >>> from genjax.data import CelebA64
      >>> CelebA64.GENJAX_NAME, CelebA64.IMAGE_SHAPE, dict(CelebA64.SPLIT_SIZES)
      ('celeb_a_64', (64, 64, 3), {'train': 162770, 'validation': 19867, 'test': 19962})
      >>> [f.name for f in CelebA64.FILES]  # put them in <data_dir>/downloads/manual/
      ['img_align_celeba.zip', 'list_eval_partition.txt']
      >>> CelebA64(data_dir=tempfile.mkdtemp()).is_prepared()
      False
    """

    name = "genjax_celeb_a_64"
    GENJAX_NAME = "celeb_a_64"
    _DRIVE = "https://drive.google.com/uc?export=download&id="
    FILES = (
        SourceFile(ARCHIVE, _DRIVE + "0B7EVK8r0v71pZjFTYXZWM3FlRnM", 1_443_490_838,
                   "46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74"),
        SourceFile(PARTITION, _DRIVE + "0B7EVK8r0v71pY0NSMzRuSXJEVkk", 2_836_386,
                   "fc955bcb3ef8fbdf7d5640d9a8693a8431b5f2ee291a5c1449a1549e7e073fe7"),
    )  # fmt: skip
    SPLIT_SIZES: ClassVar[Mapping[str, int]] = {
        "train": 162_770,
        "validation": 19_867,
        "test": 19_962,
    }
    IMAGE_SHAPE = (SIZE, SIZE, 3)
    HOMEPAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
    DESCRIPTION = (
        "Aligned CelebA faces (162,770 train / 19,867 validation / 19,962 test, the official "
        "partition), 148x148 center crop of the 178x218 JPEGs resized to 64x64 with Pillow's "
        "bilinear filter (the PyTorch-VAE preprocessing); uint8 RGB, no labels; prepared by "
        "genjax without TensorFlow."
    )
    CITATION = """\
@inproceedings{liu2015faceattributes,
  author = {Liu, Ziwei and Luo, Ping and Wang, Xiaogang and Tang, Xiaoou},
  title = {Deep Learning Face Attributes in the Wild},
  booktitle = {Proceedings of International Conference on Computer Vision (ICCV)},
  year = {2015}
}"""

    def extra_metadata(self) -> dict[str, Any]:
        return {
            "source_size": list(SOURCE_SIZE),
            "crop_box": list(CROP_BOX),
            "resize": "PIL.Image.resize((64, 64), BILINEAR)",
        }

    def read_splits(self, paths):
        partition = read_partition(paths[PARTITION])
        archive = os.fspath(paths[ARCHIVE])
        try:
            with zipfile.ZipFile(archive) as zf:
                members = zf.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise DatasetError(
                f"celeb_a_64: {archive} cannot be read as a zip archive ({error}): it is "
                "truncated or damaged; download it again"
            ) from None
        jpegs = {m for m in members if m.startswith(f"{FOLDER}/") and m.endswith(".jpg")}
        listed = [name for names in partition.values() for name in names]
        absent = [name for name in listed if f"{FOLDER}/{name}" not in jpegs]
        if absent:
            raise DatasetError(
                f"celeb_a_64: {archive} has no {FOLDER}/{absent[0]} ({len(absent):,} of the "
                f"{len(listed):,} images of {PARTITION} are missing): the archive is not the "
                "aligned CelebA, or is incomplete"
            )
        if len(jpegs) != len(listed):
            raise DatasetError(
                f"celeb_a_64: {archive} holds {len(jpegs):,} JPEGs in {FOLDER}/ but "
                f"{paths[PARTITION]} lists {len(listed):,}: the two files are from different "
                "releases"
            )
        return {split: _CelebAExamples(archive, names) for split, names in partition.items()}

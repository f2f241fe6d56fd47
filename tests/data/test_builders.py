"""genjax's builders for MNIST, Fashion-MNIST, binarised MNIST, CIFAR-10 and CelebA-64.

The tests write small archives in exactly the original formats with writers of their own
(struct-packed IDX headers, py2-style pickles, text .amat lines, JPEGs in a zip), prepare them
from a manual directory under tmp_path through `genjax.data.load`, and compare the decoded
arrays with what they wrote (the oracle). The archives are small, so each test overrides the
builder's official `FILES` (sizes/digests) and `SPLIT_SIZES` (record counts) with the honest
values of its own archive; other tests check that the official values are enforced.
"""

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from genjax import data
from genjax.data import (
    BinarizedMnist,
    CelebA64,
    Cifar10,
    DatasetError,
    FashionMnist,
    Mnist,
    Preprocess,
    load,
    prepare,
)
from genjax.data.manual import SourceFile

# --------------------------------------------------------------------------------------
# Writers of the original formats (independent of the builders' readers).


def idx_bytes(magic, array):
    """An IDX file: big-endian uint32 magic, one big-endian uint32 per dimension, the bytes."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_gz(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(payload)


IDX_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def write_idx_set(folder, sizes=None, seed=0):
    """Writes the four MNIST-layout files into folder; returns {split: (images, labels)}."""
    sizes = sizes or {"train": 300, "test": 100}
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in sizes.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        image_file, label_file = IDX_NAMES[split]
        write_gz(folder / image_file, idx_bytes(2051, images))
        write_gz(folder / label_file, idx_bytes(2049, labels))
        written[split] = (images, labels)
    return written


def amat_text(images):
    """One line per image: 784 values 0/1 separated by single spaces, then a newline."""
    return "".join(" ".join(str(int(v)) for v in im.reshape(-1)) + "\n" for im in images)


AMAT_NAMES = {
    "train": "binarized_mnist_train.amat",
    "validation": "binarized_mnist_valid.amat",
    "test": "binarized_mnist_test.amat",
}


def write_amat_set(folder, sizes=None, seed=1):
    sizes = sizes or {"train": 200, "validation": 60, "test": 50}
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in sizes.items():
        images = (rng.random((n, 28, 28)) < 0.3).astype(np.uint8)
        (folder / AMAT_NAMES[split]).write_text(amat_text(images))
        written[split] = images
    return written


class Py2Pickler(pickle._Pickler):
    """Pickles like Python 2's cPickle at protocol 2, as the CIFAR batches were written:
    every string (text or bytes) is a py2 `str` opcode (SHORT_BINSTRING / BINSTRING)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def py2_pickle(obj):
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    # Python 2's NumPy named its array reconstructor numpy.core.multiarray._reconstruct.
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_rows(images):
    """CIFAR's row layout, written plane by plane: 1,024 R bytes, then G, then B."""
    n = images.shape[0]
    planes = [images[:, :, :, k].reshape(n, 32 * 32) for k in range(3)]
    return np.concatenate(planes, axis=1)


def cifar_batch(images, labels, label="training batch"):
    return {
        "batch_label": label,
        "labels": [int(v) for v in labels],
        "data": cifar_rows(images),
        "filenames": [f"img_{i:05d}.png" for i in range(len(labels))],
    }


def write_tar(path, members):
    """A gzip tarball with the given {member name: bytes}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def write_cifar(folder, train_per_batch=40, n_test=60, seed=2, edit=None):
    """cifar-10-python.tar.gz with 5 train batches and a test batch; returns the arrays.

    edit: optional function(members dict) -> members dict, to damage the archive.
    """
    rng = np.random.default_rng(seed)
    members, written = {}, {"train": ([], []), "test": ([], [])}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else train_per_batch
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        members[f"cifar-10-batches-py/{name}"] = py2_pickle(cifar_batch(images, labels))
        split = "test" if name == "test_batch" else "train"
        written[split][0].append(images)
        written[split][1].append(labels)
    classes = ["airplane", "automobile", "bird", "cat", "deer"]
    classes += ["dog", "frog", "horse", "ship", "truck"]
    members["cifar-10-batches-py/batches.meta"] = py2_pickle(
        {"label_names": classes, "num_cases_per_batch": train_per_batch, "num_vis": 3072}
    )
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    if edit is not None:
        members = edit(members)
    write_tar(folder / "cifar-10-python.tar.gz", members)
    return {s: (np.concatenate(i), np.concatenate(lb)) for s, (i, lb) in written.items()}


def face_jpeg(seed, size=(178, 218), fmt="JPEG"):
    """A smooth random 178x218 RGB picture, JPEG-encoded."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    picture = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, fmt, quality=90) if fmt == "JPEG" else picture.save(buffer, fmt)
    return buffer.getvalue()


#: 20 images: codes of list_eval_partition.txt, interleaved to check the split by code.
CELEBA_CODES = [0, 0, 1, 0, 2, 0, 0, 1, 0, 2, 0, 0, 0, 1, 0, 2, 0, 0, 1, 2]


def write_celeba(folder, codes=CELEBA_CODES, jpegs=None, partition_lines=None, extra=None):
    """img_align_celeba.zip and list_eval_partition.txt (CRLF lines, as the official file)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.jpg" for i in range(1, len(codes) + 1)]
    jpegs = jpegs or {name: face_jpeg(i) for i, name in enumerate(names)}
    with zipfile.ZipFile(folder / "img_align_celeba.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("img_align_celeba/", b"")
        for name, payload in jpegs.items():
            zf.writestr(f"img_align_celeba/{name}", payload)
        for name, payload in (extra or {}).items():
            zf.writestr(name, payload)
    lines = partition_lines or [f"{n} {c}" for n, c in zip(names, codes, strict=True)]
    (folder / "list_eval_partition.txt").write_bytes("".join(f"{ln}\r\n" for ln in lines).encode())
    return names, jpegs


# --------------------------------------------------------------------------------------
# Fixtures and helpers.


@pytest.fixture()
def data_dir(tmp_path):
    return tmp_path / "tfds"


def manual(data_dir, sub=None):
    folder = data_dir / "downloads" / "manual"
    return folder / sub if sub else folder


def allow_test_archives(monkeypatch, cls, sizes, files=None):
    """Overrides the official sizes/digests and record counts with the test archive's."""
    monkeypatch.setattr(cls, "FILES", files or tuple(f.unchecked() for f in cls.FILES))
    monkeypatch.setattr(cls, "SPLIT_SIZES", dict(sizes))


def one_line_error(call, *fragments):
    with pytest.raises(DatasetError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not in {message!r}"
    return message


def nothing_prepared(data_dir, tfds_name):
    """No version folder and no temporary folder of a set is left behind."""
    folder = data_dir / tfds_name
    leftovers = [p.name for p in folder.iterdir()] if folder.exists() else []
    staging = (
        [p.name for p in data_dir.iterdir() if "rebuild" in p.name] if data_dir.exists() else []
    )
    return leftovers == [] and staging == []


# --------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST.


@pytest.mark.parametrize("cls", [Mnist, FashionMnist])
def test_idx_set_bit_for_bit(data_dir, monkeypatch, cls):
    written = write_idx_set(manual(data_dir), seed=3)
    allow_test_archives(monkeypatch, cls, {"train": 300, "test": 100})
    name = cls.GENJAX_NAME
    for split, (images, labels) in written.items():
        ds = load(name, split, data_dir=data_dir)
        assert (ds.name, ds.split, len(ds)) == (name, split, images.shape[0])
        assert ds.image_max == 255 and ds.num_classes == 10
        assert ds.features["image"].shape == (images.shape[0], 28, 28, 1)
        assert ds.features["image"].dtype == np.uint8
        np.testing.assert_array_equal(ds.features["image"][..., 0], images)
        np.testing.assert_array_equal(ds.features["label"], labels)
    builder = cls(data_dir=data_dir)
    assert builder.info.name == f"genjax_{name}"
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    assert {s: builder.info.splits[s].num_examples for s in ("train", "test")} == {
        "train": 300,
        "test": 100,
    }
    if cls is FashionMnist:
        assert builder.info.features["label"].int2str(9) == "Ankle boot"


def test_prepared_once_and_read_by_tfds(data_dir, monkeypatch):
    written = write_idx_set(manual(data_dir))
    allow_test_archives(monkeypatch, Mnist, {"train": 300, "test": 100})
    load("mnist", "test", data_dir=data_dir)
    info_file = data_dir / "genjax_mnist" / "1.0.0" / "dataset_info.json"
    stamp = info_file.stat().st_mtime_ns
    for path in manual(data_dir).iterdir():  # the originals are no longer needed
        path.unlink()
    again = load("mnist", "train", data_dir=data_dir)
    assert prepare("mnist", data_dir).is_prepared()
    assert info_file.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.features["image"][..., 0], written["train"][0])
    # A regular TFDS dataset: TFDS reads it by its TFDS name, without genjax's loader.
    source = tfds.data_source("genjax_mnist", split="test", data_dir=os.fspath(data_dir))
    assert len(source) == 100
    np.testing.assert_array_equal(source[7]["image"][..., 0], written["test"][0][7])
    assert source[7]["label"] == written["test"][1][7]


def test_mnist_and_fashion_in_their_own_folders(data_dir, monkeypatch):
    digits_ = write_idx_set(manual(data_dir, "mnist"), seed=10)
    fashion = write_idx_set(manual(data_dir, "fashion_mnist"), {"train": 120, "test": 40}, seed=11)
    allow_test_archives(monkeypatch, Mnist, {"train": 300, "test": 100})
    allow_test_archives(monkeypatch, FashionMnist, {"train": 120, "test": 40})
    a = load("mnist", "test", data_dir=data_dir)
    b = load("fashion_mnist", "test", data_dir=data_dir)
    np.testing.assert_array_equal(a.features["image"][..., 0], digits_["test"][0])
    np.testing.assert_array_equal(b.features["image"][..., 0], fashion["test"][0])


def test_official_sizes_and_digests_are_enforced(data_dir, monkeypatch):
    folder = manual(data_dir)
    write_idx_set(folder)
    monkeypatch.setattr(Mnist, "SPLIT_SIZES", {"train": 300, "test": 100})
    # The official FILES: a 300-image archive is not the official 9,912,422-byte file.
    one_line_error(
        lambda: load("mnist", "train", data_dir=data_dir),
        folder / "train-images-idx3-ubyte.gz",
        "9,912,422",
        "storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
    )
    assert nothing_prepared(data_dir, "genjax_mnist")

    # Sizes and digests that match (computed here with hashlib) pass ...
    def entry(f, **change):
        path = folder / f.name
        real = {"num_bytes": path.stat().st_size}
        real["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        real.update(change)
        return SourceFile(f.name, f.url, **real)

    wrong = [entry(f) for f in Mnist.FILES]
    wrong[3] = entry(Mnist.FILES[3], sha256="0" * 64)  # ... and one wrong digest does not.
    monkeypatch.setattr(Mnist, "FILES", tuple(wrong))
    message = one_line_error(
        lambda: load("mnist", "train", data_dir=data_dir),
        "t10k-labels-idx1-ubyte.gz",
        "not the official " + "0" * 64,
        "downloads/manual/fashion_mnist/",
    )
    assert hashlib.sha256((folder / "t10k-labels-idx1-ubyte.gz").read_bytes()).hexdigest() in (
        message
    )
    monkeypatch.setattr(Mnist, "FILES", tuple(entry(f) for f in Mnist.FILES))
    assert len(load("mnist", "train", data_dir=data_dir)) == 300


def test_official_record_counts_are_enforced(data_dir, monkeypatch):
    write_idx_set(manual(data_dir))
    allow_test_archives(monkeypatch, Mnist, {"train": 60_000, "test": 100})
    one_line_error(
        lambda: load("mnist", "train", data_dir=data_dir),
        "train split",
        "has 300 records, but the official release has 60,000",
    )
    assert nothing_prepared(data_dir, "genjax_mnist")


def test_missing_files(data_dir, monkeypatch):
    folder = manual(data_dir)
    # None of the files: where they go, where they come from, and TFDS's own alternative.
    one_line_error(
        lambda: load("mnist", "train", data_dir=data_dir),
        "not prepared",
        f"{folder}/",
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        f"tfds build mnist --data_dir {data_dir}",
    )
    # One of them: that one, named with its URL.
    write_idx_set(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    allow_test_archives(monkeypatch, Mnist, {"train": 300, "test": 100})
    message = one_line_error(
        lambda: load("mnist", "train", data_dir=data_dir),
        "t10k-labels-idx1-ubyte.gz (from https://storage.googleapis.com/",
        f"missing from {folder}",
    )
    assert "train-labels" not in message
    assert nothing_prepared(data_dir, "genjax_mnist")
    # A set's own folder, once it exists, is where its files are looked for.
    manual(data_dir, "mnist").mkdir()
    one_line_error(
        lambda: load("mnist", "train", data_dir=data_dir),
        f"{manual(data_dir, 'mnist')}/ (that folder exists",
    )


def idx_damage_cases():
    good_images = np.zeros((300, 28, 28), np.uint8)
    good_labels = np.zeros(300, np.uint8)
    full = gzip.compress(idx_bytes(2051, good_images))
    return {
        "truncated gzip": (
            "train-images-idx3-ubyte.gz",
            full[: len(full) // 2],
            ["truncated (the gzip stream ends early)"],
        ),
        "truncated data": (
            "train-images-idx3-ubyte.gz",
            gzip.compress(idx_bytes(2051, good_images)[:-5]),
            ["is truncated", "300 x 28 x 28 = 235,200 bytes", "holds 235,195"],
        ),
        "trailing data": (
            "train-labels-idx1-ubyte.gz",
            gzip.compress(idx_bytes(2049, good_labels) + b"\0"),
            ["has trailing bytes"],
        ),
        "labels as images": (
            "train-images-idx3-ubyte.gz",
            gzip.compress(idx_bytes(2049, good_labels)),
            ["magic number 2049 (a label file), expected 2051 (an image file)"],
        ),
        "not an idx file": (
            "t10k-labels-idx1-ubyte.gz",
            gzip.compress(b"PK\x03\x04 this is no IDX file"),
            ["magic number", "not an IDX file", "expected 2049"],
        ),
        "not gzip": (
            "train-labels-idx1-ubyte.gz",
            idx_bytes(2049, good_labels),
            ["cannot be read (BadGzipFile"],
        ),
        "32x32 images": (
            "train-images-idx3-ubyte.gz",
            gzip.compress(idx_bytes(2051, np.zeros((300, 32, 32), np.uint8))),
            ["holds 32x32 images, expected 28x28"],
        ),
        "fewer labels": (
            "train-labels-idx1-ubyte.gz",
            gzip.compress(idx_bytes(2049, good_labels[:299])),
            ["300 images but", "299 labels"],
        ),
        "label 10": (
            "train-labels-idx1-ubyte.gz",
            gzip.compress(idx_bytes(2049, np.where(np.arange(300) == 17, 10, 0))),
            ["label 10 at record 17, expected 0..9"],
        ),
    }


@pytest.mark.parametrize("case", list(idx_damage_cases()))
def test_damaged_idx_files(data_dir, monkeypatch, case):
    file, payload, fragments = idx_damage_cases()[case]
    folder = manual(data_dir)
    write_idx_set(folder)
    (folder / file).write_bytes(payload)
    allow_test_archives(monkeypatch, Mnist, {"train": 300, "test": 100})
    message = one_line_error(lambda: load("mnist", "test", data_dir=data_dir), *fragments)
    assert file in message and message.startswith("mnist: ")
    assert nothing_prepared(data_dir, "genjax_mnist")


def test_failed_rebuild_keeps_the_prepared_set(data_dir, monkeypatch):
    folder = manual(data_dir)
    first = write_idx_set(folder, seed=4)
    allow_test_archives(monkeypatch, Mnist, {"train": 300, "test": 100})
    prepare("mnist", data_dir)
    # New files, one of them truncated: the forced rebuild fails and changes nothing.
    write_idx_set(folder, seed=5)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    one_line_error(lambda: prepare("mnist", data_dir, force=True), "truncated")
    kept = load("mnist", "test", data_dir=data_dir)
    np.testing.assert_array_equal(kept.features["image"][..., 0], first["test"][0])
    assert not [p for p in data_dir.iterdir() if "rebuild" in p.name]
    assert [p.name for p in (data_dir / "genjax_mnist").iterdir()] == ["1.0.0"]
    # With good files the rebuild replaces the set.
    second = write_idx_set(folder, seed=6)
    prepare("mnist", data_dir, force=True)
    fresh = load("mnist", "test", data_dir=data_dir)
    np.testing.assert_array_equal(fresh.features["image"][..., 0], second["test"][0])
    assert not [p for p in data_dir.iterdir() if "rebuild" in p.name]


def test_failed_first_prepare_leaves_nothing_and_can_be_retried(data_dir, monkeypatch):
    folder = manual(data_dir)
    written = write_idx_set(folder)
    good = (folder / "train-labels-idx1-ubyte.gz").read_bytes()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(good[:20])
    allow_test_archives(monkeypatch, Mnist, {"train": 300, "test": 100})
    one_line_error(lambda: load("mnist", "train", data_dir=data_dir), "truncated")
    assert not Mnist(data_dir=data_dir).is_prepared()
    assert nothing_prepared(data_dir, "genjax_mnist")
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(good)
    ds = load("mnist", "train", data_dir=data_dir)
    np.testing.assert_array_equal(ds.features["label"], written["train"][1])


def test_prepare_names():
    one_line_error(lambda: prepare("svhn"), "unknown dataset 'svhn'", "mnist, fashion_mnist")
    one_line_error(lambda: prepare("digits", force=True), "never needs rebuilding")
    assert set(data.BUILDERS) <= set(data.KNOWN_DATASETS)


def test_prepare_and_load_without_tensorflow(tmp_path, run_without_tensorflow):
    folder = tmp_path / "tfds" / "downloads" / "manual"
    images = write_idx_set(folder)["test"][0]
    np.save(tmp_path / "expected.npy", images)
    run_without_tensorflow(
        f"""
        import numpy as np
        from genjax.data import Mnist, load
        Mnist.FILES = tuple(f.unchecked() for f in Mnist.FILES)
        Mnist.SPLIT_SIZES = {{"train": 300, "test": 100}}
        ds = load("mnist", "test", data_dir={os.fspath(tmp_path / "tfds")!r})
        expected = np.load({os.fspath(tmp_path / "expected.npy")!r})
        assert np.array_equal(ds.features["image"][..., 0], expected)
        """
    )


# --------------------------------------------------------------------------------------
# binarized_mnist.

AMAT_SIZES = {"train": 200, "validation": 60, "test": 50}


def test_binarized_mnist_bit_for_bit(data_dir, monkeypatch):
    written = write_amat_set(manual(data_dir))
    allow_test_archives(monkeypatch, BinarizedMnist, AMAT_SIZES)
    for split, images in written.items():
        ds = load("binarized_mnist", split, data_dir=data_dir)
        assert len(ds) == AMAT_SIZES[split]
        assert ds.image_max == 1 and ds.num_classes is None
        assert set(ds.features) == {"image"}
        assert ds.features["image"].dtype == np.uint8
        np.testing.assert_array_equal(ds.features["image"][..., 0], images)
    # Scaling by image_max leaves the pixels binary: x is exactly the 0/1 image.
    raw = ds.get(np.arange(10))
    x = np.asarray(data.preprocess(raw, None, Preprocess(scale=True), ds.image_max)["x"])
    np.testing.assert_array_equal(x[..., 0], written["test"][:10].astype(np.float32))


def amat_damage_cases():
    line = " ".join(["0"] * 784)
    return {
        "short line": (line + "\n" + " ".join(["1"] * 783) + "\n", ["783", "line 2", "784"]),
        "value 2": (line.replace("0", "2", 1) + "\n", ["value '2' on line 1, expected 0 or 1"]),
        "double space": (line.replace(" ", "  ", 1) + "\n", ["line 1"]),
        "windows lines": (line + "\r\n", ["Windows line ending on line 1"]),
        "no final newline": (line + "\n" + line, ["truncated", "last line (2)"]),
        "empty": ("", ["is empty"]),
    }


@pytest.mark.parametrize("case", list(amat_damage_cases()))
def test_damaged_amat_files(data_dir, monkeypatch, case):
    text, fragments = amat_damage_cases()[case]
    folder = manual(data_dir)
    write_amat_set(folder)
    (folder / "binarized_mnist_valid.amat").write_text(text, newline="")
    allow_test_archives(monkeypatch, BinarizedMnist, AMAT_SIZES)
    one_line_error(
        lambda: load("binarized_mnist", "train", data_dir=data_dir),
        "binarized_mnist: ",
        folder / "binarized_mnist_valid.amat",
        *fragments,
    )
    assert nothing_prepared(data_dir, "genjax_binarized_mnist")


def test_binarized_mnist_record_count(data_dir, monkeypatch):
    write_amat_set(manual(data_dir))
    allow_test_archives(monkeypatch, BinarizedMnist, {**AMAT_SIZES, "validation": 10_000})
    one_line_error(
        lambda: load("binarized_mnist", "test", data_dir=data_dir),
        "validation split",
        "has 60 records, but the official release has 10,000",
    )


def test_binarized_mnist_from_tfds_catalog_copy_keeps_image_max_1(tmp_path):
    # A copy prepared by TFDS's own `binarized_mnist` (0/1 pixels, no image_max in its
    # metadata) is read when genjax's is absent, and scaled by 1, not by 255.
    builder = tfds.builder("binarized_mnist", data_dir=tmp_path, file_format="array_record")
    builder.info.set_splits(
        tfds.core.SplitDict([tfds.core.SplitInfo(name="test", shard_lengths=[5], num_bytes=0)])
    )
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)
    images = (np.arange(5 * 28 * 28).reshape(5, 28, 28, 1) % 3 == 0).astype(np.uint8)

    def records(builder, split, **kwargs):
        return [{"image": im} for im in images]

    with tfds.testing.mock_data(
        policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path), as_data_source_fn=records
    ):
        ds = load("binarized_mnist", "test", data_dir=tmp_path)
    assert ds.image_max == 1 and ds.num_classes is None
    np.testing.assert_array_equal(ds.features["image"], images)


# --------------------------------------------------------------------------------------
# cifar10.

CIFAR_SIZES = {"train": 200, "test": 60}


def test_cifar10_bit_for_bit(data_dir, monkeypatch):
    written = write_cifar(manual(data_dir))
    allow_test_archives(monkeypatch, Cifar10, CIFAR_SIZES)
    for split, (images, labels) in written.items():
        ds = load("cifar10", split, data_dir=data_dir)
        assert len(ds) == CIFAR_SIZES[split]
        assert ds.image_max == 255 and ds.num_classes == 10
        assert ds.features["image"].shape == (CIFAR_SIZES[split], 32, 32, 3)
        np.testing.assert_array_equal(ds.features["image"], images)
        np.testing.assert_array_equal(ds.features["label"], labels)
    # The documented layout, pixel by pixel: image[r, c, k] = data[i, 1024 k + 32 r + c].
    rows = cifar_rows(written["test"][0])
    got = load("cifar10", "test", data_dir=data_dir).features["image"]
    rng = np.random.default_rng(0)
    for i, r, c, k in zip(*(rng.integers(0, m, 50) for m in (60, 32, 32, 3)), strict=True):
        assert got[i, r, c, k] == rows[i, 1024 * k + 32 * r + c]
    info = Cifar10(data_dir=data_dir).info
    assert info.features["label"].int2str(0) == "airplane"
    assert info.features["label"].int2str(9) == "truck"


def test_cifar10_official_md5(data_dir, monkeypatch):
    write_cifar(manual(data_dir))
    monkeypatch.setattr(Cifar10, "SPLIT_SIZES", CIFAR_SIZES)
    one_line_error(lambda: load("cifar10", "train", data_dir=data_dir), "170,498,071")
    path = manual(data_dir) / "cifar-10-python.tar.gz"
    size, md5 = path.stat().st_size, hashlib.md5(path.read_bytes()).hexdigest()
    official = Cifar10.FILES[0]
    wrong = SourceFile(official.name, official.url, size, md5="f" * 32)
    monkeypatch.setattr(Cifar10, "FILES", (wrong,))
    one_line_error(
        lambda: load("cifar10", "train", data_dir=data_dir),
        f"has md5 {md5}, not the official " + "f" * 32,
    )
    monkeypatch.setattr(Cifar10, "FILES", (SourceFile(official.name, official.url, size, md5=md5),))
    assert len(load("cifar10", "train", data_dir=data_dir)) == 200


def _without(name):
    return lambda members: {k: v for k, v in members.items() if not k.endswith(name)}


def _replace(name, payload):
    return lambda members: {**members, f"cifar-10-batches-py/{name}": payload}


def cifar_damage_cases(marker):
    images = np.zeros((40, 32, 32, 3), np.uint8)
    labels = np.zeros(40, int)
    narrow = cifar_batch(images, labels)
    narrow["data"] = narrow["data"][:, :-1]

    class Runs:  # a pickle that would call os.mkdir(marker) if unpickled naively
        def __reduce__(self):
            return (os.mkdir, (os.fspath(marker),))

    return {
        "missing batch": (_without("data_batch_3"), ["has no cifar-10-batches-py/data_batch_3"]),
        "narrow rows": (_replace("data_batch_2", py2_pickle(narrow)), ["uint8 (40, 3071)"]),
        "fewer labels": (
            _replace("test_batch", py2_pickle(cifar_batch(images, labels[:39]))),
            ["test_batch", "40 images but 39 labels"],
        ),
        "label 10": (
            _replace("data_batch_5", py2_pickle(cifar_batch(images, labels + 10))),
            ["label 10 at record 0, expected 0..9"],
        ),
        "not a batch": (
            _replace("data_batch_1", py2_pickle({"labels": [0]})),
            ["data_batch_1", "expected a dict with b'data' and b'labels'"],
        ),
        "truncated pickle": (
            _replace("data_batch_4", py2_pickle(cifar_batch(images, labels))[:5000]),
            ["data_batch_4", "not a readable CIFAR batch"],
        ),
        "code in pickle": (
            _replace("data_batch_1", pickle.dumps({b"data": Runs()}, protocol=4)),
            ["refers to", "mkdir", "which a CIFAR batch never contains"],
        ),
    }


@pytest.mark.parametrize("case", list(cifar_damage_cases("unused")))
def test_damaged_cifar_archive(data_dir, monkeypatch, tmp_path, case):
    marker = tmp_path / "pickle-ran-code"
    edit, fragments = cifar_damage_cases(marker)[case]
    write_cifar(manual(data_dir), edit=edit)
    allow_test_archives(monkeypatch, Cifar10, CIFAR_SIZES)
    one_line_error(lambda: load("cifar10", "test", data_dir=data_dir), "cifar10: ", *fragments)
    assert not marker.exists()
    assert nothing_prepared(data_dir, "genjax_cifar10")


def test_truncated_cifar_tarball(data_dir, monkeypatch):
    write_cifar(manual(data_dir))
    path = manual(data_dir) / "cifar-10-python.tar.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    allow_test_archives(monkeypatch, Cifar10, CIFAR_SIZES)
    one_line_error(
        lambda: load("cifar10", "train", data_dir=data_dir),
        f"{path} cannot be read as a gzip tar archive",
        "truncated or damaged",
    )


# --------------------------------------------------------------------------------------
# celeb_a_64.


def celeba_sizes(codes=CELEBA_CODES):
    return {s: codes.count(c) for c, s in enumerate(("train", "validation", "test"))}


def oracle_64(jpeg):
    """Pillow's decode, the 148x148 center crop by NumPy slicing, Pillow's bilinear resize."""
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    assert pixels.shape == (218, 178, 3)
    top, left = (218 - 148) // 2, (178 - 148) // 2
    crop = pixels[top : top + 148, left : left + 148]
    return np.asarray(Image.fromarray(crop).resize((64, 64), Image.Resampling.BILINEAR))


def test_celeb_a_64_bit_for_bit(data_dir, monkeypatch):
    names, jpegs = write_celeba(manual(data_dir))
    allow_test_archives(monkeypatch, CelebA64, celeba_sizes())
    for code, split in enumerate(("train", "validation", "test")):
        members = [n for n, c in zip(names, CELEBA_CODES, strict=True) if c == code]
        ds = load("celeb_a_64", split, data_dir=data_dir)
        assert len(ds) == len(members)
        assert ds.image_max == 255 and ds.num_classes is None and set(ds.features) == {"image"}
        assert ds.features["image"].shape == (len(members), 64, 64, 3)
        expected = np.stack([oracle_64(jpegs[n]) for n in members])
        np.testing.assert_array_equal(ds.features["image"], expected)
    assert CelebA64(data_dir=data_dir).info.metadata["crop_box"] == [15, 35, 163, 183]


def test_celeb_a_64_missing_files(data_dir, monkeypatch):
    one_line_error(
        lambda: load("celeb_a_64", "train", data_dir=data_dir),
        "not prepared",
        "img_align_celeba.zip, list_eval_partition.txt (from https://mmlab.ie.cuhk.edu.hk/",
        f"{manual(data_dir)}/",
    )
    write_celeba(manual(data_dir))
    (manual(data_dir) / "list_eval_partition.txt").unlink()
    one_line_error(
        lambda: load("celeb_a_64", "train", data_dir=data_dir),
        "list_eval_partition.txt (from https://drive.google.com/",
        "missing from",
    )


def celeba_damage_cases():
    names = [f"{i:06d}.jpg" for i in range(1, 21)]
    lines = [f"{n} {c}" for n, c in zip(names, CELEBA_CODES, strict=True)]
    good = {name: face_jpeg(i) for i, name in enumerate(names)}
    return {
        "code 3": ({"partition_lines": [*lines[:4], "000005.jpg 3", *lines[5:]]}, ["line 5"]),
        "listed twice": (
            {"partition_lines": [*lines[:19], "000003.jpg 0"]},
            ["lists 000003.jpg twice (line 20)"],
        ),
        "image absent": (
            {"jpegs": {n: j for n, j in good.items() if n != "000007.jpg"}},
            ["has no img_align_celeba/000007.jpg", "1 of the 20"],
        ),
        "unlisted image": (
            {"extra": {"img_align_celeba/000021.jpg": face_jpeg(21)}},
            ["holds 21 JPEGs", "lists 20"],
        ),
        "wrong size": (
            {"jpegs": {**good, "000004.jpg": face_jpeg(4, size=(64, 64))}},
            ["img_align_celeba/000004.jpg", "is 64x64 RGB, expected the aligned 178x218 RGB"],
        ),
        "png": (
            {"jpegs": {**good, "000009.jpg": face_jpeg(9, fmt="PNG")}},
            ["img_align_celeba/000009.jpg", "is PNG, expected a JPEG"],
        ),
        "truncated jpeg": (
            {"jpegs": {**good, "000002.jpg": good["000002.jpg"][:600]}},
            ["img_align_celeba/000002.jpg", "cannot be decoded"],
        ),
    }


@pytest.mark.parametrize("case", list(celeba_damage_cases()))
def test_damaged_celeb_a(data_dir, monkeypatch, case):
    kwargs, fragments = celeba_damage_cases()[case]
    write_celeba(manual(data_dir), **kwargs)
    allow_test_archives(monkeypatch, CelebA64, celeba_sizes())
    one_line_error(
        lambda: load("celeb_a_64", "test", data_dir=data_dir), "celeb_a_64: ", *fragments
    )
    assert nothing_prepared(data_dir, "genjax_celeb_a_64")


def test_truncated_celeb_a_zip(data_dir, monkeypatch):
    write_celeba(manual(data_dir))
    path = manual(data_dir) / "img_align_celeba.zip"
    path.write_bytes(path.read_bytes()[:-30])
    allow_test_archives(monkeypatch, CelebA64, celeba_sizes())
    one_line_error(
        lambda: load("celeb_a_64", "test", data_dir=data_dir),
        f"{path} cannot be read as a zip archive",
    )


def test_celeb_a_64_official_split_sizes(data_dir, monkeypatch):
    write_celeba(manual(data_dir))
    monkeypatch.setattr(CelebA64, "FILES", tuple(f.unchecked() for f in CelebA64.FILES))
    one_line_error(
        lambda: load("celeb_a_64", "test", data_dir=data_dir),
        f"has {celeba_sizes()['train']} records, but the official release has 162,770",
    )

"""The `digits` TFDS builder against scikit-learn's own copy of the data (the oracle)."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from genjax.data import Digits, load, prepare_digits


@pytest.fixture(scope="module")
def sk():
    raw = load_digits()
    return raw.images, raw.target


def expected_test_mask(target):
    """Oracle of the documented split: the 5th, 10th, ... example of each class is test."""
    seen = {}
    mask = np.zeros(len(target), dtype=bool)
    for i, c in enumerate(target):
        seen[c] = seen.get(c, 0) + 1
        mask[i] = seen[c] % 5 == 0
    return mask


def read_split(data_dir, split):
    source = tfds.data_source("digits", split=split, data_dir=os.fspath(data_dir))
    records = [source[i] for i in range(len(source))]
    return np.stack([r["image"] for r in records]), np.array([r["label"] for r in records])


def test_info(digits_dir):
    builder = Digits(data_dir=digits_dir)
    assert builder.is_prepared()
    info = builder.info
    assert info.name == "digits"
    assert info.features["image"].shape == (8, 8, 1)
    assert info.features["image"].np_dtype == np.uint8
    assert info.features["label"].num_classes == 10
    assert info.metadata["image_max"] == 16
    assert info.supervised_keys == ("image", "label")
    assert info.file_format == tfds.core.FileFormat.ARRAY_RECORD


def test_split_sizes_and_stratification(digits_dir, sk):
    _, target = sk
    test_mask = expected_test_mask(target)
    builder = Digits(data_dir=digits_dir)
    assert builder.info.splits["train"].num_examples == 1442 == (~test_mask).sum()
    assert builder.info.splits["test"].num_examples == 355 == test_mask.sum()
    _, train_labels = read_split(digits_dir, "train")
    _, test_labels = read_split(digits_dir, "test")
    for c in range(10):
        n_c = int((target == c).sum())
        n_test = int((test_labels == c).sum())
        assert n_test == n_c // 5 > 0
        assert int((train_labels == c).sum()) == n_c - n_c // 5 > 0
        # Stratified: every class's test share is within rounding of 1/5.
        assert abs(n_test / n_c - 0.2) < 1 / n_c


@pytest.mark.parametrize("split", ["train", "test"])
def test_images_equal_sklearn(digits_dir, sk, split):
    images, target = sk
    mask = expected_test_mask(target)
    rows = np.flatnonzero(mask if split == "test" else ~mask)
    got_images, got_labels = read_split(digits_dir, split)
    assert got_images.dtype == np.uint8
    assert got_images.max() == 16  # raw grey levels, not rescaled to 0..255
    np.testing.assert_array_equal(got_images[..., 0], images[rows])
    np.testing.assert_array_equal(got_labels, target[rows])


def test_load_digits_matches_sklearn(digits_dir, sk):
    images, target = sk
    rows = np.flatnonzero(expected_test_mask(target))
    ds = load("digits", "test", data_dir=digits_dir)
    assert ds.num_examples == len(ds) == 355
    assert ds.image_max == 16 and ds.num_classes == 10
    assert ds.features["image"].shape == (355, 8, 8, 1)
    assert ds.features["label"].dtype == np.int32
    np.testing.assert_array_equal(ds.features["image"][..., 0], images[rows])
    np.testing.assert_array_equal(ds.features["label"], target[rows])


def test_load_digits_uses_env_data_dir(monkeypatch, digits_dir):
    # The prepared copy is found through the environment variable and not prepared again.
    info_file = digits_dir / "digits" / "1.0.0" / "dataset_info.json"
    stamp = info_file.stat().st_mtime_ns
    monkeypatch.setenv("GENJAX_DATA_DIR", os.fspath(digits_dir))
    assert len(load("digits", "train")) == 1442
    assert info_file.stat().st_mtime_ns == stamp


def test_tfds_split_slicing(digits_dir):
    full = load("digits", "train", data_dir=digits_dir)
    part = load("digits", "train[:10%]", data_dir=digits_dir)
    assert 140 <= len(part) <= 150
    np.testing.assert_array_equal(part.features["image"], full.features["image"][: len(part)])


def test_load_without_tensorflow(digits_dir, run_without_tensorflow):
    run_without_tensorflow(
        f"""
        from genjax.data import load
        ds = load("digits", "train", data_dir={os.fspath(digits_dir)!r})
        assert len(ds) == 1442, len(ds)
        """
    )


def test_prepare_tolerates_a_concurrent_preparer(tmp_path, monkeypatch):
    # Simulate another process finishing first: the real preparation runs, then the final
    # rename "fails" as it does when the target folder already exists.
    original = Digits.download_and_prepare

    def prepared_elsewhere(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise OSError("Directory not empty")

    monkeypatch.setattr(Digits, "download_and_prepare", prepared_elsewhere)
    builder = prepare_digits(tmp_path)
    assert builder.is_prepared()
    assert builder.info.splits["test"].num_examples == 355

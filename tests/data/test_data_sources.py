"""`load` by name: the TFDS path (mocked offline), the synthetic sets, and the errors."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from genjax.data import Dataset, DatasetError, load

MNIST_SPLITS = {"train": 60_000, "test": 10_000}


def write_metadata(data_dir, name, splits):
    """Writes the metadata files of a prepared TFDS dataset (no records) into data_dir."""
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.info.set_splits(
        tfds.core.SplitDict(
            [tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0) for s, n in splits.items()]
        )
    )
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)


def fake_mnist_records(split, n=40):
    """Deterministic mnist-like records that the test knows in advance (the oracle)."""
    offset = 0 if split == "train" else 1000
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
    labels = (np.arange(n) + offset) % 10
    return images, labels


def fake_as_data_source(builder, split, **kwargs):
    """Stands in for `builder.as_data_source`: a list of records, as TFDS's mock allows."""
    images, labels = fake_mnist_records(split)
    return [{"image": im, "label": np.int64(lb)} for im, lb in zip(images, labels, strict=True)]


@pytest.fixture()
def mock_mnist(tmp_path):
    # Real mnist metadata (features, split names) in a data dir, records served by the mock.
    # tfds 4.9.10's default mocked ArrayRecord source sets `__getitems__` on a MagicMock
    # instance without binding `self`, so batched reads fail; the documented
    # `as_data_source_fn` hook is used instead, which also lets the test know the records.
    write_metadata(tmp_path, "mnist", MNIST_SPLITS)
    with tfds.testing.mock_data(
        policy=tfds.testing.MockPolicy.USE_FILES,
        data_dir=str(tmp_path),
        as_data_source_fn=fake_as_data_source,
    ):
        yield tmp_path


@pytest.mark.parametrize("split", ["train", "test"])
def test_tfds_image_dataset(mock_mnist, split):
    images, labels = fake_mnist_records(split)
    ds = load("mnist", split, data_dir=mock_mnist)
    assert (ds.name, ds.split, len(ds)) == ("mnist", split, 40)
    assert ds.image_max == 255 and ds.num_classes == 10
    assert ds.features["image"].dtype == np.uint8
    assert ds.features["label"].dtype == np.int32
    np.testing.assert_array_equal(ds.features["image"], images)
    np.testing.assert_array_equal(ds.features["label"], labels)


def test_tfds_unknown_split_lists_available(mock_mnist):
    with pytest.raises(DatasetError, match=r"unknown split 'validation'.*train, test"):
        load("mnist", "validation", data_dir=mock_mnist)


def test_tfds_dataset_without_image(tmp_path):
    write_metadata(tmp_path, "imdb_reviews", {"train": 25_000})
    with (
        tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path)),
        pytest.raises(DatasetError, match=r"no 'image' feature.*\['label', 'text'\]"),
    ):
        load("imdb_reviews", "train", data_dir=tmp_path)


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
    with pytest.raises(DatasetError) as info:
        load("mnist", "train", data_dir=tmp_path)
    message = str(info.value)
    assert "not prepared" in message
    assert f"tfds build mnist --data_dir {tmp_path}" in message
    assert "array_record" in message and "\n" not in message


def test_unknown_name_lists_known(tmp_path):
    with pytest.raises(DatasetError) as info:
        load("no_such_dataset", "train", data_dir=tmp_path)
    message = str(info.value)
    for known in ("digits", "ring8", "grid25", "any TFDS dataset prepared in"):
        assert known in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_unknown_split(digits_dir):
    with pytest.raises(DatasetError, match=r"unknown split 'valid'.*train, test"):
        load("digits", "valid", data_dir=digits_dir)
    with pytest.raises(DatasetError, match=r"unknown split 'valid'.*train, test"):
        load("ring8", "valid")


@pytest.mark.parametrize(("name", "modes"), [("ring8", 8), ("grid25", 25)])
def test_synthetic_sets(name, modes):
    train, test = load(name, "train"), load(name, "test")
    assert (len(train), len(test)) == (50_000, 10_000)
    assert train.features["x"].shape == (50_000, 2) and train.features["x"].dtype == np.float32
    assert train.features["label"].dtype == np.int32
    assert train.num_classes == modes and train.image_max is None
    assert set(np.unique(train.features["label"])) == set(range(modes))
    # Fixed per split: the same draw every time, and different draws for train and test.
    np.testing.assert_array_equal(load(name, "train").features["x"], train.features["x"])
    assert not np.array_equal(train.features["x"][:10_000], test.features["x"])


def test_dataset_container():
    images = np.arange(5 * 2 * 2 * 1, dtype=np.uint8).reshape(5, 2, 2, 1)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.int32)
    ds = Dataset("toy", "train", {"image": images, "label": labels}, num_classes=6, image_max=255)
    assert len(ds) == ds.num_examples == 5 and ds.input_key == "image"
    rows = ds.get(np.array([[4, 0], [2, 2]]))
    assert rows["image"].shape == (2, 2, 2, 2, 1)
    np.testing.assert_array_equal(rows["label"], [[5, 3], [4, 4]])
    with pytest.raises(ValueError, match="read-only"):
        ds.features["label"][0] = 7
    images[0] = 99  # the Dataset holds its own copy
    assert ds.features["image"][0].max() < 99
    with pytest.raises(DatasetError, match="exactly one input feature"):
        Dataset("toy", "train", {"label": labels})
    with pytest.raises(DatasetError, match="leading size"):
        Dataset("toy", "train", {"image": images, "label": labels[:3]})

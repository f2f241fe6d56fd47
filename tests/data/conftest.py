"""Shared fixtures of the data tests: one prepared copy of `digits` per test session."""

import pytest

from genjax.data.digits import prepare_digits


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """A TFDS data directory with `digits` prepared in it (about 2 s, done once)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    prepare_digits(data_dir)
    return data_dir

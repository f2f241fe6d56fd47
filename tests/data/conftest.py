"""Shared fixtures of the data tests: one prepared copy of `digits` per test session, and a
fresh interpreter that must not import TensorFlow."""

import os
import subprocess
import sys
import textwrap

import pytest

from genjax.data.digits import prepare_digits


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """A TFDS data directory with `digits` prepared in it (about 2 s, done once)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    prepare_digits(data_dir)
    return data_dir


_NO_TENSORFLOW = """
import sys
assert "tensorflow" not in sys.modules, "tensorflow was imported"
print("ok")
"""


@pytest.fixture
def run_without_tensorflow():
    """``run(script)``: run ``script`` (dedented) in a fresh CPU-only interpreter and check
    that it succeeds without ever importing TensorFlow. TensorFlow is not installed here,
    but it may be elsewhere."""

    def run(script: str) -> None:
        code = textwrap.dedent(script) + _NO_TENSORFLOW
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().endswith("ok")

    return run

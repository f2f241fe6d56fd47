"""genjax's data layer: datasets by name, genjax's TFDS builders, 2-D mixtures, batching.

    from genjax import data
    train = data.load("digits", "train")                 # Dataset, arrays in host memory
    mnist = data.load("mnist", "test")                   # prepared from downloads/manual/ once
    big = data.load("mnist", "train", streaming=True)    # StreamingDataset, read on demand
    batcher = data.Batcher(train, batch_size=128, seed=0)
    raw = batcher.raw_batch(step)                        # {"image": uint8, "label": int32}
    batch = data.preprocess(raw, rng, data.Preprocess(binarize="dynamic"), train.image_max)

See ``sources.py`` (names, data directory, errors, streaming), ``pipeline.py`` (the
deterministic batch order shared by host and on-device loops), ``prefetch.py`` (host batches
of the next chunks read in background threads with grain), ``digits.py``, ``builders.py``
(MNIST, Fashion-MNIST, binarised MNIST, CIFAR-10, CelebA-64 from their original files;
``manual.py`` says where the files go) and ``synthetic.py``.

The builders' names (``BUILDERS``, ``prepare``, ``Mnist``, ``Digits``, ...) import TFDS, so they
are imported on first use: ``import genjax.data`` and training on in-memory arrays need neither
tensorflow-datasets nor array-record.
"""

import importlib

from genjax.data.errors import DatasetError
from genjax.data.pipeline import (
    Batcher,
    Preprocess,
    batch_indices,
    data_info,
    epoch_permutation,
    preprocess,
    to_device,
)
from genjax.data.prefetch import HostBatches
from genjax.data.sources import (
    DATA_DIR_ENV,
    KNOWN_DATASETS,
    STREAMING_ABOVE_MB,
    Dataset,
    FeatureSpec,
    StreamingDataset,
    load,
    read_into_memory,
    resolve_data_dir,
)
from genjax.data.synthetic import (
    GRID25,
    MIXTURES,
    RING8,
    MixtureSpec,
    mixture_dataset,
    mode_statistics,
    sample_mixture,
)

#: Names served by the TFDS builder modules, imported when first asked for.
_LAZY = {
    "BUILDERS": "builders",
    "prepare": "builders",
    "CelebA64": "celeb_a",
    "Cifar10": "cifar10",
    "Digits": "digits",
    "prepare_digits": "digits",
    "BinarizedMnist": "mnist",
    "FashionMnist": "mnist",
    "Mnist": "mnist",
}


def __getattr__(name: str):
    """A builder name, imported (with TFDS) on first use and then kept (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    """The module's names, the lazy ones included."""
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BUILDERS",
    "DATA_DIR_ENV",
    "GRID25",
    "KNOWN_DATASETS",
    "MIXTURES",
    "RING8",
    "STREAMING_ABOVE_MB",
    "Batcher",
    "BinarizedMnist",
    "CelebA64",
    "Cifar10",
    "Dataset",
    "DatasetError",
    "Digits",
    "FashionMnist",
    "FeatureSpec",
    "HostBatches",
    "MixtureSpec",
    "Mnist",
    "Preprocess",
    "StreamingDataset",
    "batch_indices",
    "data_info",
    "epoch_permutation",
    "load",
    "mixture_dataset",
    "mode_statistics",
    "prepare",
    "prepare_digits",
    "preprocess",
    "read_into_memory",
    "resolve_data_dir",
    "sample_mixture",
    "to_device",
]

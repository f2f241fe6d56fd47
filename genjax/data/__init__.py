"""genjax's data layer: datasets by name, the digits TFDS builder, 2-D mixtures.

    from genjax import data
    train = data.load("digits", "train")                 # Dataset, arrays in host memory

See ``sources.py`` (names, data directory, errors), ``pipeline.py`` (the deterministic batch
order shared by host and on-device loops), ``digits.py`` and ``synthetic.py``.
"""

from genjax.data.digits import Digits, prepare_digits
from genjax.data.sources import (
    DATA_DIR_ENV,
    KNOWN_DATASETS,
    Dataset,
    DatasetError,
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

__all__ = [
    "DATA_DIR_ENV",
    "GRID25",
    "KNOWN_DATASETS",
    "MIXTURES",
    "RING8",
    "Dataset",
    "DatasetError",
    "Digits",
    "MixtureSpec",
    "load",
    "mixture_dataset",
    "mode_statistics",
    "prepare_digits",
    "read_into_memory",
    "resolve_data_dir",
    "sample_mixture",
]

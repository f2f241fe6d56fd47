"""Sample metrics of image models in a feature space, shared by the experiments' evaluations:
the kernel inception distance, improved precision / recall and density / coverage in any
features (the evaluation classifier's, keyed ``*_classifier``), and the same plus the FID and
the inception score in the FID InceptionV3's features (``*_inception``) when the user gives
its weights file (:class:`InceptionEval`, section ``eval``).

    python -m experiments.train --model gan --dataset cifar10 --workdir runs/gan-cifar10 \\
        --set eval.inception_weights=/path/to/pt_inception-2015-12-05-6726825d.pth

The file is pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (reading it needs torch);
:func:`check` reads it before training starts, so a bad path stops the run at once. Images
are resized to 299 x 299 as pytorch-fid does (:mod:`genjax.eval.inception`).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from genjax._checks import check_int
from genjax.config import ConfigError, RunConfig
from genjax.eval import (
    density_coverage,
    frechet_distance,
    inception,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)

#: The neighbour rank of precision / recall and density / coverage (Kynkäänniemi et al., 2019).
K_NEIGHBOURS = 3


@dataclasses.dataclass(frozen=True)
class InceptionEval:
    """The InceptionV3 evaluation settings an image model's ``eval`` section inherits.

    Attributes:
      inception_weights: path of the FID InceptionV3 weights file
        (``pt_inception-2015-12-05-6726825d.pth``, as pytorch-fid downloads it; reading it
        needs torch), or "" for none. With it, image runs also report the ``*_inception``
        metrics.
      inception_reference: at most this many real images (the first of the test split, and
        as many of the train split for the ``*_train_test`` references) in the Inception
        features; 10,000 is CIFAR-10's whole test split.
      inception_batch: images per InceptionV3 call.
    """

    inception_weights: str = ""
    inception_reference: int = 10_000
    inception_batch: int = 100

    def __post_init__(self):
        if not isinstance(self.inception_weights, str):
            raise ConfigError(
                f"eval.inception_weights must be a path (a string), got {self.inception_weights!r}"
            )
        try:
            check_int("eval.inception_reference", self.inception_reference, 2)
            check_int("eval.inception_batch", self.inception_batch, 1)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def neighbour_metrics(real, generated, name: str) -> dict:
    """Improved precision / recall and density / coverage (k = 3) of ``generated`` against
    ``real`` features ``[N, D]``, on equal numbers of rows (the first ``min(N, M)`` of each),
    as in the papers; keyed ``<metric>_<name>``."""
    size = min(len(real), len(generated))
    real, generated = real[:size], generated[:size]
    pr = precision_recall(real, generated, k=K_NEIGHBOURS)
    dc = density_coverage(real, generated, k=K_NEIGHBOURS)
    values = {"precision": pr.precision, "recall": pr.recall}
    values.update(density=dc.density, coverage=dc.coverage)
    return {f"{metric}_{name}": float(v) for metric, v in values.items()}


def feature_metrics(real, generated, rng, name: str) -> dict:
    """The kernel inception distance (cubic-kernel MMD^2, 100 subsets of up to 1000 rows;
    Bińkowski et al., 2018) and :func:`neighbour_metrics` of ``generated`` against ``real``
    features, keyed ``<metric>_<name>`` (``kid_std_<name>``: the spread over subsets)."""
    kid = kernel_inception_distance(real, generated, rng)
    return {
        f"kid_{name}": float(kid.mean),
        f"kid_std_{name}": float(kid.std),
        **neighbour_metrics(real, generated, name),
    }


@functools.lru_cache(maxsize=1)
def inception_variables(path: str) -> dict:
    """The InceptionV3 variables of the weights file at ``path`` (read once per process)."""
    return inception.load_weights(path)


def check(config: RunConfig, info) -> None:
    """``eval.inception_weights``, when given, must be a readable FID InceptionV3 weights file
    and the data an image set: both checked (the file read) before training starts."""
    path = getattr(config.evaluation, "inception_weights", "")
    if not path:
        return
    if info.image_shape is None:
        raise ConfigError(
            f"eval.inception_weights: {config.dataset!r} is not an image set; the InceptionV3 "
            "features need images"
        )
    if not Path(path).is_file():
        raise ConfigError(
            f"eval.inception_weights: no file at {path!r} (give the path of the FID "
            f"InceptionV3 weights, {inception.WEIGHTS_FILE})"
        )
    try:
        inception_variables(str(Path(path).resolve()))
    except Exception as err:  # torch's unpickling errors share no base class
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            f"eval.inception_weights: cannot read {path!r} as the FID InceptionV3 weights "
            f"({inception.WEIGHTS_FILE}): {reason}"
        ) from None


def unit_images(dataset, count: int) -> np.ndarray:
    """The first ``count`` images of a split as float32 ``[n, H, W, C]`` in ``[0, 1]`` (the
    stored pixels divided by the set's largest value)."""
    images = np.asarray(dataset.get(np.arange(count))["image"], np.float32)
    return images / np.float32(dataset.image_max)


def inception_metrics(variables, generated, real, real_train, rng, batch_size: int) -> dict:
    """The FID, KID, precision / recall, density / coverage and inception score of
    ``generated`` images against ``real`` ones (``[N, H, W, C]`` in ``[0, 1]``) in the FID
    InceptionV3's features (:mod:`genjax.eval.inception`), keyed ``*_inception``; the same
    for ``real_train`` against ``real`` under ``*_inception_train_test``.

    ``fid_inception`` is the Fréchet distance of the 2048-d pool features (Heusel et al.,
    2017); ``inception_score`` / ``inception_score_std`` the inception score (Salimans et
    al., 2016) of the generated images over 10 splits, from the network's 1008 logits as
    torch-fidelity computes it, ``inception_score_test`` the test images' own."""

    def features(images):
        return inception.inception_features(variables, images, batch_size=batch_size, logits=True)

    gen_pool, gen_logits = features(generated)
    real_pool, real_logits = features(real)
    train_pool, _ = features(real_train)
    metrics = {
        "fid_inception": frechet_distance(gen_pool, real_pool),
        "fid_inception_train_test": frechet_distance(train_pool, real_pool),
    }
    metrics.update(feature_metrics(real_pool, gen_pool, rng, "inception"))
    reference = feature_metrics(real_pool, train_pool, rng, "inception")
    metrics.update({f"{name}_train_test": v for name, v in reference.items()})
    for name, logits in (("inception_score", gen_logits), ("inception_score_test", real_logits)):
        score = inception_score(logits, from_logits=True, num_splits=min(10, len(logits)))
        metrics[name] = float(score.mean)
        metrics[f"{name}_std"] = float(score.std)
    return metrics


def evaluate_inception(ctx, generated: np.ndarray, rng) -> dict:
    """:func:`inception_metrics` of ``generated`` images ``[M, H, W, C]`` in ``[0, 1]``
    against the run's test split (and its train split for the references), with the
    settings of ``ctx.config.evaluation`` (an :class:`InceptionEval`) and the KID subsets
    drawn from ``rng``."""
    e = ctx.config.evaluation
    count = min(e.inception_reference, len(ctx.test), len(ctx.train))
    return inception_metrics(
        inception_variables(str(Path(e.inception_weights).resolve())),
        generated,
        unit_images(ctx.test, count),
        unit_images(ctx.train, count),
        rng,
        e.inception_batch,
    )


#: The metric names :func:`inception_metrics` reports (besides the references).
INCEPTION_METRIC_NAMES = (
    "fid_inception",
    "kid_inception",
    "precision_inception",
    "recall_inception",
    "density_inception",
    "coverage_inception",
    "inception_score",
)

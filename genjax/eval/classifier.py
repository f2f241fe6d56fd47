"""A small, seeded classifier trained on a dataset's own train split, for sample evaluation.

Generative models of labelled data are judged through a classifier of that data: the class
histogram of generated samples shows dropped classes, its penultimate-layer features give a
Fréchet distance (:mod:`genjax.eval.frechet`), and for a Cycle VAE it scores conversions. The
classifier here is an MLP (flax.linen) on the flattened preprocessed input::

    x [N, ...] -> flatten -> (Dense -> ReLU) x len(hidden) -> Dense(num_classes) -> logits

``features`` are the activations of the last hidden layer (``hidden[-1]`` values per example).

Training (:func:`train_classifier`) minimises the softmax cross-entropy with AdamW over
``steps`` mini-batches drawn by :func:`genjax.data.batch_indices` (the library's deterministic
batch order) inside one jitted ``lax.scan``; the inputs go through
:func:`genjax.data.preprocess` with the given :class:`~genjax.data.Preprocess` spec (by default
pixels scaled to [0, 1] and flattened), the same function that prepares a model's inputs, so
a generator that outputs preprocessed-space samples can be classified directly. The whole run
is a pure function of ``seed``: on one machine, the same seed gives bitwise-identical
parameters.

It is an evaluation instrument, not a model the training engine trains: it has no
checkpointing or logging of its own. :meth:`Classifier.save` / :meth:`Classifier.load` write and
read it as one directory (``classifier.json``: architecture, preprocessing, training settings
and accuracies; ``classifier.msgpack``: the parameters via ``flax.serialization``), so an
experiment stores the exact instrument its numbers were measured with beside the run.

Measured on ``digits`` (1,442 train / 355 test images) with the defaults: see the test
``tests/eval/test_classifier.py`` (>= 97% test accuracy; training takes a few seconds on CPU).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from genjax.data.pipeline import Preprocess, batch_indices, preprocess
from genjax.data.sources import Dataset, StreamingDataset

__all__ = ["Classifier", "ClassifierConfig", "MLPClassifier", "train_classifier"]

_PARAMS_FILE = "classifier.msgpack"
_META_FILE = "classifier.json"
_FORMAT_VERSION = 1
#: Examples per device call when classifying many inputs (bounds the memory of one call).
_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """How the evaluation classifier is built and trained.

    Attributes:
      hidden: widths of the hidden ReLU layers; the last one is the feature dimension.
      steps: AdamW steps.
      batch_size: examples per step (at most the split size).
      learning_rate: AdamW learning rate (cosine-decayed to 0 over ``steps``).
      weight_decay: AdamW decoupled weight decay.
      label_smoothing: softmax cross-entropy label smoothing in [0, 1).
      seed: seeds the initialisation, the batch order and any random preprocessing.

    Example:
      >>> from genjax import eval as ev
      >>> config = ev.ClassifierConfig(hidden=[32], steps=50)
      >>> config.hidden, config.batch_size  # hidden is stored as a tuple
      ((32,), 128)
    """

    hidden: tuple[int, ...] = (512, 64)
    steps: int = 1000
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self):
        hidden = tuple(self.hidden)
        if not hidden or any(
            isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1 for h in hidden
        ):
            raise ValueError(
                f"ClassifierConfig.hidden must be a non-empty sequence of ints >= 1, "
                f"got {self.hidden!r}"
            )
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"ClassifierConfig.{name} must be an int >= 1, got {value!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(
                f"ClassifierConfig.learning_rate must be a finite number > 0, "
                f"got {self.learning_rate!r}"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(
                f"ClassifierConfig.weight_decay must be a finite number >= 0, "
                f"got {self.weight_decay!r}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(
                f"ClassifierConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"ClassifierConfig.seed must be an int, got {self.seed!r}")


class MLPClassifier(nn.Module):
    """``x [B, ...] -> logits [B, num_classes]``; ``features`` are the last hidden layer.

    Attributes:
      hidden: hidden widths (ReLU after each).
      num_classes: number of output logits.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.eval.classifier import MLPClassifier
      >>> module = MLPClassifier(hidden=(16,), num_classes=10)
      >>> key, x = jax.random.key(0), jnp.zeros((3, 8, 8, 1))
      >>> # Shapes only: jax.eval_shape traces the module without computing anything.
      >>> (logits, features), variables = jax.eval_shape(module.init_with_output, key, x)
      >>> logits.shape, features.shape, variables["params"]["hidden_0"]["kernel"].shape
      ((3, 10), (3, 16), (64, 16))
    """

    hidden: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns ``(logits [B, num_classes], features [B, hidden[-1]])``."""
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, name=f"hidden_{i}")(h))
        logits = nn.Dense(self.num_classes, name="logits")(h)
        return logits, h


def _check_dataset(train: Any) -> None:
    if not isinstance(train, Dataset | StreamingDataset):
        raise ValueError(
            f"train_classifier: train must be a genjax.data.Dataset, got {type(train).__name__}"
        )
    if "label" not in train.feature_specs or not train.num_classes:
        raise ValueError(
            f"train_classifier: dataset {train.name!r} ({train.split}) has no labels "
            f"(features {sorted(train.feature_specs)}); a classifier needs a 'label' feature"
        )


def _rows(dataset: Dataset | StreamingDataset) -> dict[str, np.ndarray]:
    """Every row of a split as host arrays (a streamed split is read whole: the classifier
    trains on the device with the split resident)."""
    if isinstance(dataset, StreamingDataset):
        return dataset.get(np.arange(len(dataset)))
    return {k: np.asarray(v) for k, v in dataset.features.items()}


def _preprocessed(
    dataset: Dataset | StreamingDataset, spec: Preprocess, rng: jax.Array | None = None
) -> dict[str, jax.Array]:
    return preprocess(_rows(dataset), rng, spec, dataset.image_max)


@functools.lru_cache(maxsize=8)
def _trainer(
    config: ClassifierConfig,
    spec: Preprocess,
    n: int,
    num_classes: int,
    image_max: float | None,
):
    """The jitted training run ``(seed, raw_features) -> (params, losses [steps])``.

    Cached on everything but the seed (``config.seed`` is 0 here), so training several seeds
    compiles once. The data is an argument, not a closure: XLA folds a captured array as a
    constant, which takes seconds to compile.
    """
    module = MLPClassifier(hidden=config.hidden, num_classes=num_classes)
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps)
    optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)
    smoothing = float(config.label_smoothing)

    def prepare(raw, indices, rng):
        rows = {k: jnp.take(v, indices, axis=0) for k, v in raw.items()}
        return preprocess(rows, rng, spec, image_max)

    def loss_fn(params, batch):
        logits, _ = module.apply({"params": params}, batch["x"])
        targets = jax.nn.one_hot(batch["label"], num_classes)
        if smoothing:
            targets = optax.smooth_labels(targets, smoothing)
        return jnp.mean(optax.softmax_cross_entropy(logits, targets))

    @jax.jit
    def run(seed, raw):
        init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
        example = prepare(raw, jnp.arange(1), data_key)["x"]
        params = module.init(init_key, example)["params"]
        opt_state = optimizer.init(params)

        def body(carry, step):
            params, opt_state = carry
            idx = batch_indices(seed, step, n, config.batch_size)
            batch = prepare(raw, idx, jax.random.fold_in(data_key, step))
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(
            body, (params, opt_state), jnp.arange(config.steps, dtype=jnp.int32)
        )
        return params, losses

    return run


def train_classifier(
    train: Dataset,
    preprocess_spec: Preprocess | None = None,
    config: ClassifierConfig | None = None,
) -> Classifier:
    """Trains the evaluation classifier on ``train`` (deterministic given ``config.seed``).

    Args:
      train: a labelled :class:`~genjax.data.Dataset` split (images or vectors).
      preprocess_spec: how raw rows become inputs; default ``Preprocess(scale=True,
        flatten=True)``: pixels in [0, 1]. Generated samples must be in the same space
        (a ``dynamic`` binarisation redraws the binary images at every step, a data
        augmentation; the stored spec is used by :meth:`Classifier.inputs`).
      config: architecture and training settings (:class:`ClassifierConfig`).

    Returns:
      The trained :class:`Classifier`, with its train accuracy in ``metadata``.

    Raises:
      ValueError: ``train`` is not a labelled Dataset, a setting is invalid, or
        ``config.batch_size`` exceeds the split size.

    Example:
      >>> import contextlib, io, tempfile
      >>> from genjax import data, eval as ev
      >>> data_dir = tempfile.mkdtemp()
      >>> with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints where it prepares digits
      ...     train = data.load("digits", "train", data_dir=data_dir)
      ...     test = data.load("digits", "test", data_dir=data_dir)
      >>> config = ev.ClassifierConfig(hidden=(32,), steps=200, learning_rate=1e-2)
      >>> clf = ev.train_classifier(train, config=config)  # pixels / 16, flattened
      >>> clf.input_shape, clf.accuracy(clf.inputs(test), test.features["label"]) > 0.9
      ((64,), True)
    """
    _check_dataset(train)
    spec = preprocess_spec if preprocess_spec is not None else Preprocess(flatten=True)
    if not isinstance(spec, Preprocess):
        raise ValueError(
            f"train_classifier: preprocess_spec must be a genjax.data.Preprocess, "
            f"got {type(spec).__name__}"
        )
    config = config if config is not None else ClassifierConfig()
    if not isinstance(config, ClassifierConfig):
        raise ValueError(
            f"train_classifier: config must be a ClassifierConfig, got {type(config).__name__}"
        )
    n = train.num_examples
    if config.batch_size > n:
        raise ValueError(
            f"train_classifier: config.batch_size={config.batch_size} exceeds the "
            f"{n} examples of {train.name!r} ({train.split})"
        )
    num_classes = int(train.num_classes)
    raw = {k: jnp.asarray(v) for k, v in _rows(train).items()}
    trainer = _trainer(dataclasses.replace(config, seed=0), spec, n, num_classes, train.image_max)
    params, losses = trainer(jnp.int32(config.seed), raw)
    params = jax.device_get(params)
    data = _preprocessed(train, spec, jax.random.PRNGKey(config.seed))
    input_shape = tuple(int(d) for d in data["x"].shape[1:])
    classifier = Classifier(
        params=params,
        config=config,
        num_classes=num_classes,
        input_shape=input_shape,
        preprocess_spec=spec,
        metadata={
            "dataset": train.name,
            "split": train.split,
            "final_train_loss": float(losses[-1]),
        },
    )
    classifier.metadata["train_accuracy"] = classifier.accuracy(data["x"], data["label"])
    return classifier


@functools.lru_cache(maxsize=16)
def _apply_fn(hidden: tuple[int, ...], num_classes: int):
    """Jitted ``(params, x) -> (logits, features)``, shared by classifiers of one shape."""
    module = MLPClassifier(hidden=hidden, num_classes=num_classes)
    return jax.jit(lambda params, x: module.apply({"params": params}, x))


class Classifier:
    """A trained evaluation classifier (see the module docstring).

    Inputs ``x`` are preprocessed examples ``[N, *input_shape]``, or any ``[N, ...]`` whose
    per-example size equals ``prod(input_shape)`` (a flattened or an image-shaped layout of
    the same values). All outputs are NumPy arrays.

    Attributes:
      params: the MLP's parameters (a pytree of arrays).
      config: the :class:`ClassifierConfig` it was trained with.
      num_classes: number of classes.
      input_shape: shape of one preprocessed training input.
      preprocess_spec: the preprocessing the training inputs went through.
      metadata: dataset name, split and accuracies measured so far (JSON-serialisable).

    Example:
      >>> import numpy as np, tempfile
      >>> from genjax import data, eval as ev
      >>> # hidden=(4,) on 2 inputs, 3 classes; all-zero parameters give every class 1/3.
      >>> params = {"hidden_0": {"kernel": np.zeros((2, 4)), "bias": np.zeros(4)},
      ...           "logits": {"kernel": np.zeros((4, 3)), "bias": np.zeros(3)}}
      >>> clf = ev.Classifier(params, ev.ClassifierConfig(hidden=(4,)), num_classes=3,
      ...                     input_shape=(2,), preprocess_spec=data.Preprocess())
      >>> x = np.ones((4, 2), np.float32)
      >>> clf.logits(x).shape, clf.features(x).shape
      ((4, 3), (4, 4))
      >>> [round(float(p), 4) for p in clf.probs(x)[0]]
      [0.3333, 0.3333, 0.3333]
      >>> clf.predict(x), clf.class_histogram(x), clf.accuracy(x, [0, 0, 1, 2])
      (array([0, 0, 0, 0], dtype=int32), array([1., 0., 0.]), 0.5)
      >>> loaded = ev.Classifier.load(clf.save(tempfile.mkdtemp()))  # classifier.json + .msgpack
      >>> np.array_equal(loaded.logits(x), clf.logits(x)), loaded.input_shape
      (True, (2,))
    """

    def __init__(
        self,
        params: Any,
        config: ClassifierConfig,
        num_classes: int,
        input_shape: tuple[int, ...],
        preprocess_spec: Preprocess,
        metadata: dict | None = None,
    ):
        self.params = params
        self.config = config
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.preprocess_spec = preprocess_spec
        self.metadata = dict(metadata or {})
        self.module = MLPClassifier(hidden=config.hidden, num_classes=self.num_classes)
        self._apply = _apply_fn(config.hidden, self.num_classes)

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`features`, ``config.hidden[-1]``."""
        return self.config.hidden[-1]

    def _as_inputs(self, x: Any, fn: str) -> np.ndarray:
        x = np.asarray(x)
        size = math.prod(self.input_shape)
        if x.ndim < 1 or math.prod(x.shape[1:]) != size:
            raise ValueError(
                f"Classifier.{fn}: x must be [N, *{self.input_shape}] (or any [N, ...] with "
                f"{size} values per example), got shape {x.shape}"
            )
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"Classifier.{fn}: x must be numeric, got dtype {x.dtype}")
        return x.reshape(x.shape[0], size).astype(np.float32)

    def _outputs(self, x: Any, fn: str) -> tuple[np.ndarray, np.ndarray]:
        x = self._as_inputs(x, fn)
        logits, feats = [], []
        for start in range(0, x.shape[0], _CHUNK):
            chunk = x[start : start + _CHUNK]
            if chunk.shape[0] < _CHUNK and x.shape[0] > _CHUNK:  # one compiled shape
                pad = np.zeros((_CHUNK - chunk.shape[0], chunk.shape[1]), chunk.dtype)
                lg, ft = self._apply(self.params, np.concatenate([chunk, pad]))
                lg, ft = lg[: chunk.shape[0]], ft[: chunk.shape[0]]
            else:
                lg, ft = self._apply(self.params, chunk)
            logits.append(np.asarray(lg))
            feats.append(np.asarray(ft))
        if not logits:
            return (
                np.zeros((0, self.num_classes), np.float32),
                np.zeros((0, self.feature_dim), np.float32),
            )
        return np.concatenate(logits), np.concatenate(feats)

    def logits(self, x: Any) -> np.ndarray:
        """float32 ``[N, num_classes]`` logits."""
        return self._outputs(x, "logits")[0]

    def probs(self, x: Any) -> np.ndarray:
        """float32 ``[N, num_classes]`` class probabilities (softmax of the logits)."""
        logits = self._outputs(x, "probs")[0].astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict(self, x: Any) -> np.ndarray:
        """int32 ``[N]`` predicted labels (argmax of the logits)."""
        return np.argmax(self._outputs(x, "predict")[0], axis=1).astype(np.int32)

    def features(self, x: Any) -> np.ndarray:
        """float32 ``[N, feature_dim]`` penultimate-layer activations (for Fréchet distances)."""
        return self._outputs(x, "features")[1]

    def accuracy(self, x: Any, labels: Any) -> float:
        """Fraction of ``x`` whose predicted label equals ``labels`` (int ``[N]``)."""
        labels = np.asarray(labels)
        n = np.shape(x)[0] if np.ndim(x) else -1
        if labels.shape != (n,):
            raise ValueError(
                f"Classifier.accuracy: labels must have shape [N] = ({n},), got {labels.shape}"
            )
        if n == 0:
            raise ValueError("Classifier.accuracy: x is empty")
        return float(np.mean(self.predict(x) == labels))

    def class_histogram(self, x: Any) -> np.ndarray:
        """float64 ``[num_classes]``: the fraction of ``x`` predicted as each class."""
        pred = self.predict(x)
        if pred.size == 0:
            raise ValueError("Classifier.class_histogram: x is empty")
        return np.bincount(pred, minlength=self.num_classes) / pred.size

    def inputs(self, dataset: Dataset, rng: jax.Array | None = None) -> np.ndarray:
        """A whole split preprocessed the way the training inputs were: ``[N, *input_shape]``.

        ``rng`` is used only by a ``dynamic`` binarisation (default: ``PRNGKey(0)``).
        """
        if not isinstance(dataset, Dataset | StreamingDataset):
            raise ValueError(
                f"Classifier.inputs: dataset must be a genjax.data.Dataset, "
                f"got {type(dataset).__name__}"
            )
        rng = jax.random.PRNGKey(0) if rng is None else rng
        x = np.asarray(_preprocessed(dataset, self.preprocess_spec, rng)["x"])
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"Classifier.inputs: dataset {dataset.name!r} gives inputs of shape "
                f"{tuple(x.shape[1:])}, the classifier expects {self.input_shape}"
            )
        return x

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Writes ``classifier.json`` and ``classifier.msgpack`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": _FORMAT_VERSION,
            "architecture": "mlp",
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "config": dataclasses.asdict(self.config),
            "preprocess": dataclasses.asdict(self.preprocess_spec),
            "metadata": self.metadata,
        }
        (directory / _PARAMS_FILE).write_bytes(serialization.to_bytes(self.params))
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Classifier:
        """Reads a classifier written by :meth:`save`.

        Raises:
          FileNotFoundError: ``directory`` has no saved classifier.
          ValueError: the files are of another format version or do not match each other.
        """
        directory = Path(directory)
        meta_path, params_path = directory / _META_FILE, directory / _PARAMS_FILE
        if not meta_path.exists() or not params_path.exists():
            raise FileNotFoundError(
                f"{directory} holds no saved classifier (needs {_META_FILE} and {_PARAMS_FILE})"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"Classifier.load: {meta_path} has format_version "
                f"{meta.get('format_version')!r}, expected {_FORMAT_VERSION}"
            )
        config_fields = dict(meta["config"])
        config_fields["hidden"] = tuple(config_fields["hidden"])
        config = ClassifierConfig(**config_fields)
        spec = Preprocess(**meta["preprocess"])
        input_shape = tuple(meta["input_shape"])
        num_classes = int(meta["num_classes"])
        module = MLPClassifier(hidden=config.hidden, num_classes=num_classes)
        template = jax.eval_shape(
            lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape), jnp.float32))[
                "params"
            ]
        )
        template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
        try:
            params = serialization.from_bytes(template, params_path.read_bytes())
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"Classifier.load: {params_path} does not match the architecture in "
                f"{meta_path}: {err}"
            ) from None
        shapes = jax.tree.map(np.shape, params)
        expected = jax.tree.map(np.shape, template)
        if shapes != expected:
            raise ValueError(
                f"Classifier.load: {params_path} does not match the architecture in "
                f"{meta_path}: parameter shapes {shapes}, expected {expected}"
            )
        return cls(params, config, num_classes, input_shape, spec, meta.get("metadata", {}))

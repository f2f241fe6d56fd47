"""Deterministic, resumable batching and the jittable preprocessing.

Which examples form batch ``step`` is a pure function of ``(seed, step)``
(:func:`batch_indices`): epoch ``e = step // steps_per_epoch`` visits the examples in the order
of one random permutation drawn from ``fold_in(key(seed), e)``; the last
``num_examples % batch_size`` examples of each permutation are dropped. The same function
serves

* the host loader, :class:`Batcher`, which gathers the raw rows from a :class:`Dataset` in host
  memory or reads them from disk (:class:`StreamingDataset`); a multi-process run gives each
  process its contiguous slice of the global batch, and only that slice is read; and
* on-device loops, which keep the whole split on the accelerator (:func:`to_device`) and call
  :func:`batch_indices` inside ``jit`` / ``lax.scan``,

so both see identical batches, and the input position checkpoints as the integer ``step``.

:func:`preprocess` turns raw rows into model inputs on device (scale to [0, 1], binarise,
flatten), driven by the frozen :class:`Preprocess` spec.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genjax.data.sources import Dataset, DatasetError, StreamingDataset
from genjax.models.base import DataInfo

__all__ = [
    "Batcher",
    "Preprocess",
    "batch_indices",
    "check_batch_size",
    "epoch_permutation",
    "preprocess",
    "to_device",
]


def check_batch_size(num_examples: int, batch_size: int) -> None:
    """Checks that ``batch_size`` is a static int in ``[1, num_examples]``.

    Raises:
      TypeError: ``num_examples`` or ``batch_size`` is not a Python or NumPy int.
      ValueError: ``batch_size`` is below 1 or above ``num_examples``.

    Example:
      >>> from genjax.data.pipeline import check_batch_size
      >>> check_batch_size(10, 4)  # fine: returns None
      >>> check_batch_size(10, 20)
      Traceback (most recent call last):
          ...
      ValueError: batch_size 20 is larger than the split (10 examples)
    """
    for arg, value in (("num_examples", num_examples), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{arg} must be a static Python int, got {type(value).__name__}")
    if batch_size < 1:
        raise ValueError(
            f"batch_size must be in [1, {num_examples}] (the split size), got {batch_size}"
        )
    if batch_size > num_examples:
        raise ValueError(
            f"batch_size {batch_size} is larger than the split ({num_examples} examples)"
        )


@functools.partial(jax.jit, static_argnames=("num_examples",))
def epoch_permutation(seed: Any, epoch: Any, num_examples: int) -> jax.Array:
    """The visiting order of epoch ``epoch``.

    Args:
      seed: int scalar (may be traced).
      epoch: int scalar (may be traced).
      num_examples: ``N``, static Python int.

    Returns:
      int32 ``[N]``: ``jax.random.permutation(fold_in(key(seed), epoch), N)``.

    Example:
      >>> from genjax import data
      >>> perm = data.epoch_permutation(0, 3, num_examples=5)
      >>> perm.dtype, sorted(perm.tolist())  # a permutation of 0..4
      (dtype('int32'), [0, 1, 2, 3, 4])
      >>> bool((perm == data.epoch_permutation(0, 3, 5)).all())  # a function of (seed, epoch)
      True
    """
    key = jax.random.fold_in(jax.random.key(seed), epoch)
    return jax.random.permutation(key, num_examples).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("num_examples", "batch_size"))
def batch_indices(seed: Any, step: Any, num_examples: int, batch_size: int) -> jax.Array:
    """Indices of the examples in global batch ``step``.

    With ``S = num_examples // batch_size`` steps per epoch (the remainder of each epoch's
    permutation is dropped), epoch ``e = step // S`` and position ``i = step % S``, the batch
    is ``epoch_permutation(seed, e, N)[i * B : (i + 1) * B]``. Every example appears exactly
    once in the ``S * B`` indices of an epoch, minus the dropped remainder.

    Jittable and usable inside ``lax.scan``: ``seed`` and ``step`` may be traced; the sizes
    are static. Each call draws the whole epoch permutation, ``O(N log N)``, which is cheap
    for the sets this library trains on.

    Args:
      seed: int scalar.
      step: int scalar, the global step (>= 0).
      num_examples: ``N``, static Python int.
      batch_size: ``B``, static Python int, ``1 <= B <= N``.

    Returns:
      int32 ``[B]``, indices in ``[0, N)``.

    Raises:
      ValueError: (at trace time) ``batch_size`` < 1 or > ``num_examples``.

    Example:
      >>> import numpy as np
      >>> from genjax import data
      >>> epoch = np.concatenate([data.batch_indices(0, step, 10, 5) for step in (0, 1)])
      >>> sorted(epoch.tolist())  # the 2 steps of epoch 0 visit every example once
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
      >>> np.array_equal(epoch, data.epoch_permutation(0, 0, 10))
      True
    """
    check_batch_size(num_examples, batch_size)
    steps_per_epoch = num_examples // batch_size
    step = jnp.asarray(step, jnp.int32)
    perm = epoch_permutation(seed, step // steps_per_epoch, num_examples)
    start = (step % steps_per_epoch) * batch_size
    return jax.lax.dynamic_slice(perm, (start,), (batch_size,))


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How raw image rows become model inputs (see :func:`preprocess`).

    Attributes:
      scale: divide the pixels by ``image_max`` into float32 [0, 1]; if False and no
        binarisation, the raw values are only cast to float32.
      binarize: ``"none"``; ``"static"``: ``x = 1[x_scaled >= threshold]`` (fixed);
        ``"dynamic"``: ``x ~ Bernoulli(x_scaled)``, redrawn every call (Salakhutdinov &
        Murray 2008; the usual VAE / IWAE binarised-MNIST protocol). Binarisation always acts
        on the [0, 1]-scaled intensity, whatever ``scale`` says.
      threshold: the static threshold in (0, 1]; on digits (0..16) 0.5 means pixel >= 8.
      flatten: reshape images ``[..., H, W, C]`` to ``[..., H*W*C]``.

    Example:
      >>> from genjax import data
      >>> data.Preprocess(binarize="dynamic", flatten=True)
      Preprocess(scale=True, binarize='dynamic', threshold=0.5, flatten=True)
      >>> data.Preprocess(binarize="yes")
      Traceback (most recent call last):
          ...
      ValueError: Preprocess.binarize must be 'none', 'static' or 'dynamic', got 'yes'
    """

    scale: bool = True
    binarize: str = "none"
    threshold: float = 0.5
    flatten: bool = False

    def __post_init__(self):
        if self.binarize not in ("none", "static", "dynamic"):
            raise ValueError(
                f"Preprocess.binarize must be 'none', 'static' or 'dynamic', got {self.binarize!r}"
            )
        if not isinstance(self.threshold, int | float) or not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"Preprocess.threshold must be in (0, 1], got {self.threshold!r}")
        for field in ("scale", "flatten"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"Preprocess.{field} must be a bool, got {getattr(self, field)!r}")


def preprocess(
    batch: dict[str, Any], rng: jax.Array | None, spec: Preprocess, image_max: float | None
) -> dict[str, jax.Array]:
    """Raw rows -> model inputs. Jittable (``spec`` and ``image_max`` static or constant).

    Args:
      batch: ``{"image": uint8 [..., H, W, C]}`` (image sets) or ``{"x": float [..., D]}``
        (synthetic sets), with optional ``"label"`` int ``[...]``; leading axes are free
        (``[B]`` or ``[T, B]`` from :meth:`Batcher.raw_batches`).
      rng: ``jax.random`` key, needed only for ``binarize="dynamic"``.
      spec: the :class:`Preprocess` settings.
      image_max: largest pixel value (``Dataset.image_max``: 16 for digits, 255 for TFDS
        images); needed for images unless ``scale=False`` and ``binarize="none"``.

    Returns:
      ``{"x": float32, "label": int32}`` (``"label"`` only if present in ``batch``). Images:
      ``x`` is ``[..., H, W, C]``, or ``[..., H*W*C]`` with ``flatten``. Synthetic ``x`` is
      passed through unchanged apart from the float32 cast.

    Example:
      >>> import numpy as np
      >>> from genjax import data
      >>> raw = {"image": np.array([[[[0], [8]], [[16], [4]]]], np.uint8), "label": np.array([3])}
      >>> batch = data.preprocess(raw, None, data.Preprocess(flatten=True), image_max=16)
      >>> batch["x"], batch["label"]
      (Array([[0.  , 0.5 , 1.  , 0.25]], dtype=float32), Array([3], dtype=int32))
      >>> data.preprocess(raw, None, data.Preprocess(binarize="static"), 16)["x"][0, ..., 0]
      Array([[0., 1.],
             [1., 0.]], dtype=float32)
    """
    out: dict[str, jax.Array] = {}
    if "image" in batch:
        image = jnp.asarray(batch["image"])
        if image.ndim < 3:
            raise ValueError(f"batch['image'] must be [..., H, W, C], got shape {image.shape}")
        needs_max = spec.scale or spec.binarize != "none"
        if needs_max and (image_max is None or not image_max > 0):
            raise ValueError(f"image_max must be a positive number for images, got {image_max!r}")
        x = image.astype(jnp.float32)
        if needs_max:
            x = x / jnp.float32(image_max)
        if spec.binarize == "static":
            x = (x >= spec.threshold).astype(jnp.float32)
        elif spec.binarize == "dynamic":
            if rng is None:
                raise ValueError("Preprocess(binarize='dynamic') needs an rng key")
            # Bernoulli(x) as 1[u < x], u ~ U[0, 1), drawn as a flat vector and reshaped:
            # a rank-4/5 draw takes XLA several times longer to compile on CPU.
            u = jax.random.uniform(rng, (x.size,), dtype=jnp.float32).reshape(x.shape)
            x = (u < x).astype(jnp.float32)
        if spec.flatten:
            x = x.reshape(*x.shape[:-3], -1)
        out["x"] = x
    elif "x" in batch:
        out["x"] = jnp.asarray(batch["x"], dtype=jnp.float32)
    else:
        raise ValueError(f"batch needs an 'image' or 'x' entry, got keys {sorted(batch)}")
    if "label" in batch:
        out["label"] = jnp.asarray(batch["label"], dtype=jnp.int32)
    return out


class Batcher:
    """Host-side batches of a :class:`Dataset`, a pure function of the global step.

    Args:
      dataset: the split to batch: a :class:`Dataset` (host memory) or a
        :class:`StreamingDataset` (read from disk; ``get`` reads only this process's rows).
      batch_size: ``B``, the global batch size over all processes, ``1 <= B <= N``.
      seed: int, the shuffling seed (see :func:`batch_indices`).
      process_index: ``p``, this process's index (``jax.process_index()``).
      process_count: ``P``, the number of processes (``jax.process_count()``); must divide
        ``B``. Process ``p`` gets rows ``[p * B/P, (p + 1) * B/P)`` of each global batch.

    The state is just the step: resuming at step ``s`` reproduces the batches exactly. The
    permutations of the last two epochs are cached on the host, so consecutive steps cost one
    gather each; the batcher may be called from several threads (the prefetcher does).

    Example:
      >>> import numpy as np
      >>> from genjax import data
      >>> ds = data.Dataset("toy", "train", {"x": np.arange(10.0)[:, None], "label": np.arange(10)})
      >>> batcher = data.Batcher(ds, batch_size=4, seed=0)
      >>> batcher.steps_per_epoch, batcher.raw_batch(0)["x"].shape  # 10 // 4 steps per epoch
      (2, (4, 1))
      >>> np.array_equal(batcher.indices(5), data.batch_indices(0, 5, 10, 4))  # as on device
      True
      >>> batcher.raw_batches(5, 3)["label"].shape  # steps 5, 6, 7 stacked
      (3, 4)
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        *,
        process_index: int = 0,
        process_count: int = 1,
    ):
        check_batch_size(len(dataset), batch_size)
        if process_count < 1:
            raise ValueError(f"process_count must be >= 1, got {process_count}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
        if batch_size % process_count:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by process_count {process_count}"
            )
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self._perms: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def num_examples(self) -> int:
        """``N``, the split size."""
        return len(self.dataset)

    @property
    def steps_per_epoch(self) -> int:
        """``N // B`` (the remainder of each epoch is dropped)."""
        return self.num_examples // self.batch_size

    @property
    def local_batch_size(self) -> int:
        """``B / P``, the rows this process returns per step."""
        return self.batch_size // self.process_count

    def _permutation(self, epoch: int) -> np.ndarray:
        with self._lock:
            perm = self._perms.get(epoch)
            if perm is None:
                perm = epoch_permutation(self.seed, epoch, num_examples=self.num_examples)
                perm = np.asarray(perm)
                perm.setflags(write=False)
                if len(self._perms) >= 2:  # keep the newest epoch besides this one
                    del self._perms[min(self._perms)]
                self._perms[epoch] = perm
            return perm

    def indices(self, step: int) -> np.ndarray:
        """int32 ``[B/P]``: this process's slice of ``batch_indices(seed, step, N, B)``."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, position = divmod(step, self.steps_per_epoch)
        start = position * self.batch_size + self.process_index * self.local_batch_size
        return self._permutation(epoch)[start : start + self.local_batch_size]

    def raw_batch(self, step: int) -> dict[str, np.ndarray]:
        """The raw rows of global step ``step`` for this process.

        Returns:
          ``{key: [B/P, ...]}``, e.g. ``image`` uint8 ``[B/P, H, W, C]``, ``label`` int32.
        """
        return self.dataset.get(self.indices(step))

    def raw_batches(self, start_step: int, num_steps: int) -> dict[str, np.ndarray]:
        """Steps ``start_step .. start_step + num_steps - 1`` stacked, for scan-fused loops.

        Returns:
          ``{key: [num_steps, B/P, ...]}``; entry ``t`` equals ``raw_batch(start_step + t)``.
        """
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        idx = np.stack([self.indices(start_step + t) for t in range(num_steps)])
        return self.dataset.get(idx)


def to_device(dataset: Dataset, sharding: jax.sharding.Sharding | None = None) -> dict:
    """Places a dataset's features on device, for loops that gather with :func:`batch_indices`.

    Args:
      dataset: the split (host arrays).
      sharding: None for the default device; or e.g. a replicated
        ``NamedSharding(mesh, PartitionSpec())``. Built with
        ``jax.make_array_from_callback``, so it also works for shardings that span processes
        (each process supplies its own devices' shards from its own copy of the data).

    Returns:
      ``{key: jax.Array}`` with the same shapes and dtypes as ``dataset.features``.

    Example:
      >>> import jax, numpy as np
      >>> from genjax import data
      >>> dataset = data.Dataset("toy", "train", {"x": np.zeros((6, 2), np.float32)})
      >>> on_device = data.to_device(dataset)
      >>> isinstance(on_device["x"], jax.Array), on_device["x"].shape
      (True, (6, 2))
      >>> on_device["x"][data.batch_indices(0, 0, 6, 3)].shape  # a batch gathered on device
      (3, 2)
    """
    if isinstance(dataset, StreamingDataset):
        raise DatasetError(
            f"to_device needs the split in host memory; {dataset.name!r} is streamed from disk "
            "(load it with streaming=False)"
        )
    if sharding is None:
        return {key: jax.device_put(value) for key, value in dataset.features.items()}
    return {
        key: jax.make_array_from_callback(value.shape, sharding, lambda index, v=value: v[index])
        for key, value in dataset.features.items()
    }


def data_info(dataset, spec: Preprocess):
    """What a model is told about ``dataset`` (a :class:`Dataset` or
    :class:`StreamingDataset`) preprocessed by ``spec``: the shape of one input (read off the
    first example), the classes, and whether inputs lie in ``[0, 1]``
    (images scaled or binarised; synthetic vectors pass through unscaled).

    Example:
      >>> from genjax.data import load
      >>> info = data_info(load("ring8", "train"), Preprocess())
      >>> info.shape, info.num_classes, info.unit_interval
      ((2,), 8, False)
    """
    raw = dataset.get(np.arange(1))
    x = preprocess(raw, jax.random.PRNGKey(0), spec, dataset.image_max)["x"]
    specs = getattr(dataset, "feature_specs", None)
    image = (specs if specs is not None else dataset.features).get("image")
    return DataInfo(
        shape=tuple(int(d) for d in x.shape[1:]),
        num_classes=dataset.num_classes,
        name=dataset.name,
        image_shape=tuple(int(d) for d in image.shape[1:]) if image is not None else None,
        unit_interval=image is not None and bool(spec.scale or spec.binarize != "none"),
    )

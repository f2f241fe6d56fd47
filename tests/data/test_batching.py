"""batch_indices / Batcher / preprocess / to_device against NumPy oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from genjax.data import (
    Batcher,
    Dataset,
    Preprocess,
    batch_indices,
    load,
    preprocess,
    to_device,
)


def toy_dataset(n=103):
    images = (np.arange(n * 2 * 2, dtype=np.int64) % 256).astype(np.uint8).reshape(n, 2, 2, 1)
    labels = np.arange(n, dtype=np.int32) % 10
    return Dataset("toy", "train", {"image": images, "label": labels}, 10, 255)


def host_indices(seed, step, n, b):
    return np.asarray(batch_indices(seed, step, num_examples=n, batch_size=b))


@pytest.mark.parametrize(("n", "b"), [(103, 10), (103, 103)])
def test_each_epoch_is_a_permutation(n, b):
    steps = n // b
    for epoch in range(3):
        batches = [host_indices(3, epoch * steps + i, n, b) for i in range(steps)]
        seen = np.concatenate(batches)
        assert all(x.shape == (b,) and x.dtype == np.int32 for x in batches)
        assert len(seen) == steps * b == len(np.unique(seen))  # each index at most once
        assert seen.min() >= 0 and seen.max() < n
        if n % b == 0:
            np.testing.assert_array_equal(np.sort(seen), np.arange(n))  # exactly once


def test_epochs_and_seeds_differ_and_are_deterministic():
    n, b = 103, 10
    epoch0 = np.concatenate([host_indices(0, i, n, b) for i in range(10)])
    epoch1 = np.concatenate([host_indices(0, 10 + i, n, b) for i in range(10)])
    assert not np.array_equal(epoch0, epoch1)
    assert not np.array_equal(host_indices(0, 0, n, b), host_indices(1, 0, n, b))
    np.testing.assert_array_equal(host_indices(0, 13, n, b), host_indices(0, 13, n, b))


def test_matches_the_documented_formula():
    # Oracle: the permutation of epoch e sliced at position i, computed outside the function.
    n, b, seed, step = 103, 10, 5, 27
    epoch, i = divmod(step, n // b)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), n))
    np.testing.assert_array_equal(host_indices(seed, step, n, b), perm[i * b : (i + 1) * b])


def test_same_in_scan_on_host_and_in_batcher():
    n, b, seed = 103, 10, 11
    steps = jnp.arange(12)

    @jax.jit
    def in_scan(seed):
        def body(carry, step):
            return carry, batch_indices(seed, step, num_examples=n, batch_size=b)

        return jax.lax.scan(body, 0, steps)[1]

    scanned = np.asarray(in_scan(seed))
    batcher = Batcher(toy_dataset(n), b, seed)
    for step in range(12):
        np.testing.assert_array_equal(scanned[step], host_indices(seed, step, n, b))
        np.testing.assert_array_equal(batcher.indices(step), scanned[step])


def test_batch_size_errors_name_the_split_size():
    for bad in (104, 0):
        with pytest.raises(ValueError, match="103"):
            Batcher(toy_dataset(103), bad, 0)
    with pytest.raises(ValueError, match="larger than the split"):
        batch_indices(0, 0, num_examples=5, batch_size=6)
    with pytest.raises(ValueError, match="not divisible by process_count 3"):
        Batcher(toy_dataset(), 10, 0, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="process_index"):
        Batcher(toy_dataset(), 10, 0, process_index=2, process_count=2)


def test_process_slices_concatenate_to_global_batch():
    ds, b, p_count = toy_dataset(), 12, 4
    whole = Batcher(ds, b, seed=2)
    parts = [Batcher(ds, b, seed=2, process_index=p, process_count=p_count) for p in range(4)]
    for step in (0, 5, 8, 9, 40):
        global_batch = whole.raw_batch(step)
        locals_ = [part.raw_batch(step) for part in parts]
        assert locals_[0]["image"].shape == (3, 2, 2, 1)
        for key in ("image", "label"):
            np.testing.assert_array_equal(
                np.concatenate([x[key] for x in locals_]), global_batch[key]
            )
        np.testing.assert_array_equal(
            global_batch["label"], ds.features["label"][whole.indices(step)]
        )


def test_raw_batches_stack_raw_batch_and_resume():
    ds = toy_dataset()
    batcher = Batcher(ds, 8, seed=4, process_index=1, process_count=2)
    stacked = batcher.raw_batches(10, 5)
    assert stacked["image"].shape == (5, 4, 2, 2, 1) and stacked["label"].shape == (5, 4)
    resumed = Batcher(ds, 8, seed=4, process_index=1, process_count=2)  # fresh, as after restore
    for t in range(5):
        one = resumed.raw_batch(10 + t)
        np.testing.assert_array_equal(stacked["image"][t], one["image"])
        np.testing.assert_array_equal(stacked["label"][t], one["label"])


def test_to_device_gather_matches_batcher():
    ds = toy_dataset()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    for sharding in (None, NamedSharding(mesh, PartitionSpec())):
        on_device = to_device(ds, sharding)
        for key, value in ds.features.items():
            assert isinstance(on_device[key], jax.Array)
            np.testing.assert_array_equal(np.asarray(on_device[key]), value)

    @jax.jit
    def gather(features, step):
        idx = batch_indices(9, step, num_examples=len(ds), batch_size=10)
        return jax.tree.map(lambda a: a[idx], features)

    batcher = Batcher(ds, 10, seed=9)
    for step in (0, 7):
        got = gather(on_device, step)
        np.testing.assert_array_equal(np.asarray(got["image"]), batcher.raw_batch(step)["image"])


@pytest.fixture(scope="module")
def digits_batch(digits_dir):
    ds = load("digits", "train", data_dir=digits_dir)
    return ds, ds.get(np.arange(64))


def test_preprocess_scale(digits_batch):
    ds, raw = digits_batch
    out = preprocess(raw, None, Preprocess(), ds.image_max)
    assert out["x"].dtype == jnp.float32 and out["x"].shape == (64, 8, 8, 1)
    assert out["label"].dtype == jnp.int32
    np.testing.assert_allclose(np.asarray(out["x"]), raw["image"] / 16.0, rtol=1e-7)
    np.testing.assert_array_equal(np.asarray(out["label"]), raw["label"])
    unscaled = preprocess(raw, None, Preprocess(scale=False), None)
    np.testing.assert_array_equal(np.asarray(unscaled["x"]), raw["image"].astype(np.float32))


def test_preprocess_static_threshold_is_pixel_at_least_8(digits_batch):
    ds, raw = digits_batch
    out = preprocess(raw, None, Preprocess(binarize="static", threshold=0.5), ds.image_max)
    np.testing.assert_array_equal(np.asarray(out["x"]), (raw["image"] >= 8).astype(np.float32))


def test_preprocess_dynamic_binarisation_mean(digits_batch):
    ds, raw = digits_batch
    spec = Preprocess(binarize="dynamic")
    draws_per_pixel = 2000
    # One call on 2000 stacked copies of 8 images (512 pixels): 2000 independent draws each.
    tiled = {"image": np.broadcast_to(raw["image"][:8], (draws_per_pixel, 8, 8, 8, 1))}
    draws = np.asarray(preprocess(tiled, jax.random.key(0), spec, ds.image_max)["x"])
    assert set(np.unique(draws)) <= {0.0, 1.0}
    p = raw["image"][:8] / 16.0
    # Monte Carlo: the mean of 2000 Bernoulli(p) draws is within 5 standard errors of p.
    tolerance = 5 * np.sqrt(p * (1 - p) / draws_per_pixel) + 1e-6
    assert np.all(np.abs(draws.mean(0) - p) <= tolerance)
    assert 0 < draws.mean() < 1
    again = preprocess(tiled, jax.random.key(0), spec, ds.image_max)["x"]
    np.testing.assert_array_equal(np.asarray(again), draws)  # the key decides the draw


def test_preprocess_flatten(digits_batch):
    ds, raw = digits_batch
    out = preprocess(raw, None, Preprocess(flatten=True), ds.image_max)
    np.testing.assert_allclose(np.asarray(out["x"]), raw["image"].reshape(64, 64) / 16.0)
    stacked = {"image": raw["image"].reshape(4, 16, 8, 8, 1)}  # [T, B, ...] from raw_batches
    assert preprocess(stacked, None, Preprocess(flatten=True), 16)["x"].shape == (4, 16, 64)


def test_preprocess_synthetic_passthrough():
    ds = load("ring8", "test")
    raw = ds.get(np.arange(32))
    out = preprocess(raw, None, Preprocess(binarize="static", flatten=True), ds.image_max)
    np.testing.assert_array_equal(np.asarray(out["x"]), raw["x"])
    np.testing.assert_array_equal(np.asarray(out["label"]), raw["label"])


def test_preprocess_validation():
    with pytest.raises(ValueError, match="binarize"):
        Preprocess(binarize="yes")
    with pytest.raises(ValueError, match="threshold"):
        Preprocess(threshold=0.0)
    with pytest.raises(ValueError, match="flatten"):
        Preprocess(flatten="yes")
    raw = {"image": np.zeros((2, 8, 8, 1), np.uint8)}
    with pytest.raises(ValueError, match="rng"):
        preprocess(raw, None, Preprocess(binarize="dynamic"), 16)
    with pytest.raises(ValueError, match="image_max"):
        preprocess(raw, None, Preprocess(), None)

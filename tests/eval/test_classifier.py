"""Tests for genjax.eval.classifier: accuracy on digits, determinism, outputs, persistence.

Oracles: held-out accuracy (a classifier that did not learn stays near 10%), a NumPy forward
pass written from the stored weights, and the softmax of the logits computed in NumPy.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from genjax.data import Dataset, load
from genjax.eval.classifier import Classifier, ClassifierConfig, train_classifier


@pytest.fixture(scope="module")
def digits():
    return load("digits", "train"), load("digits", "test")


@pytest.fixture(scope="module")
def trained(digits):
    return train_classifier(digits[0], config=ClassifierConfig(seed=0))


def test_digits_test_accuracy_at_least_97_percent(digits, trained):
    _, test = digits
    x = trained.inputs(test)
    assert x.shape == (355, 64)
    acc = trained.accuracy(x, test.features["label"])
    assert acc >= 0.97, acc
    assert trained.metadata["train_accuracy"] >= 0.99


def test_same_seed_same_parameters_other_seed_differs(digits, trained):
    config = ClassifierConfig(seed=0, steps=trained.config.steps)
    again = train_classifier(digits[0], config=config)
    for a, b in zip(jax.tree.leaves(trained.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(a, b)
    other = train_classifier(digits[0], config=dataclasses.replace(config, seed=1))
    kernel = "hidden_0"
    assert not np.array_equal(trained.params[kernel]["kernel"], other.params[kernel]["kernel"])


def test_a_streamed_split_trains_the_same_classifier(digits, trained):
    streamed = load("digits", "train", streaming=True)
    assert not isinstance(streamed, Dataset)  # read from disk on demand
    again = train_classifier(streamed, config=ClassifierConfig(seed=0))
    for a, b in zip(jax.tree.leaves(trained.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.inputs(streamed), trained.inputs(digits[0]))


def test_outputs_match_numpy_forward_pass(digits, trained):
    x = trained.inputs(digits[1])[:50].astype(np.float64)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), trained.params)
    h = x
    for i in range(len(trained.config.hidden)):
        layer = p[f"hidden_{i}"]
        h = np.maximum(h @ layer["kernel"] + layer["bias"], 0.0)
    logits = h @ p["logits"]["kernel"] + p["logits"]["bias"]
    np.testing.assert_allclose(trained.features(x), h, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(trained.logits(x), logits, rtol=1e-4, atol=1e-4)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(trained.probs(x), z / z.sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_array_equal(trained.predict(x), np.argmax(logits, axis=1))
    # An image-shaped layout of the same values gives the same outputs.
    np.testing.assert_allclose(trained.logits(x.reshape(-1, 8, 8, 1)), trained.logits(x))


def test_class_histogram_of_the_test_split(digits, trained):
    test = digits[1]
    hist = trained.class_histogram(trained.inputs(test))
    true = np.bincount(test.features["label"], minlength=10) / test.num_examples
    assert hist.shape == (10,)
    assert hist.sum() == pytest.approx(1.0)
    # At >= 97% accuracy the predicted frequencies differ from the true ones by <= 3% in total.
    assert np.abs(hist - true).sum() <= 2 * 0.03 + 1e-9


def test_save_load_round_trip(tmp_path, digits, trained):
    trained.save(tmp_path / "clf")
    loaded = Classifier.load(tmp_path / "clf")
    x = trained.inputs(digits[1])
    np.testing.assert_array_equal(loaded.logits(x), trained.logits(x))
    assert loaded.config == trained.config
    assert loaded.preprocess_spec == trained.preprocess_spec
    assert loaded.input_shape == (64,)
    assert loaded.metadata["train_accuracy"] == trained.metadata["train_accuracy"]


def test_load_errors(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="no saved classifier"):
        Classifier.load(tmp_path / "nothing")
    trained.save(tmp_path / "c")
    meta = (tmp_path / "c" / "classifier.json").read_text()
    (tmp_path / "c" / "classifier.json").write_text(
        meta.replace('"input_shape": [\n    64', '"input_shape": [\n    65')
    )
    with pytest.raises(ValueError, match="does not match"):
        Classifier.load(tmp_path / "c")


def test_bad_inputs(digits, trained):
    train, test = digits
    with pytest.raises(ValueError, match=r"x must be \[N, \*\(64,\)\].*got shape \(3, 65\)"):
        trained.predict(np.zeros((3, 65), np.float32))
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \(3,\)"):
        trained.accuracy(np.zeros((3, 64), np.float32), np.zeros(4, np.int32))
    unlabelled = Dataset("u", "train", {"image": np.zeros((4, 8, 8, 1), np.uint8)}, image_max=16)
    with pytest.raises(ValueError, match="has no labels"):
        train_classifier(unlabelled)
    with pytest.raises(ValueError, match=r"must be a genjax\.data\.Dataset"):
        train_classifier(np.zeros((4, 64)))
    with pytest.raises(ValueError, match=r"batch_size=5000 exceeds the 1442 examples"):
        train_classifier(train, config=ClassifierConfig(batch_size=5000))
    with pytest.raises(ValueError, match=r"preprocess_spec must be a genjax\.data\.Preprocess"):
        train_classifier(train, preprocess_spec={"flatten": True})
    with pytest.raises(ValueError, match="hidden must be a non-empty sequence"):
        ClassifierConfig(hidden=())
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0, got -1"):
        ClassifierConfig(learning_rate=-1.0)
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        ClassifierConfig(steps=0)
    assert trained.inputs(test).shape == (355, 64)
    wrong = load("ring8", "test")
    with pytest.raises(ValueError, match=r"gives inputs of shape \(2,\)"):
        trained.inputs(wrong)

"""The experiments' InceptionV3 evaluation (``eval.inception_weights``, GAN and VAE): the
metrics against NumPy formulas on the network's features, the checks before training, and
runs evaluated with a random-weight FID network (a GAN on a CIFAR-10 archive the test
writes, a VAE on digits)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from test_builders import allow_test_archives, manual, write_cifar

from experiments.models import image_metrics
from experiments.train import main
from genjax.data.cifar10 import Cifar10
from genjax.eval import inception


def _fid(a, b):
    """Fréchet distance of Gaussians fitted to the rows of ``a`` and ``b``. With centred
    rows ``A`` and ``B``, the non-zero eigenvalues of ``S_a S_b`` are the squared singular
    values of ``A B^T / sqrt((n - 1)(m - 1))``, so ``tr sqrt(S_a S_b)`` needs no ``D x D``
    square root (here ``D = 2048`` and ``n, m`` are a dozen)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ca, cb = a - a.mean(0), b - b.mean(0)
    s = np.linalg.svd(ca @ cb.T, compute_uv=False) / np.sqrt((len(a) - 1) * (len(b) - 1))
    trace = np.sum(ca**2) / (len(a) - 1) + np.sum(cb**2) / (len(b) - 1)
    return np.sum((a.mean(0) - b.mean(0)) ** 2) + trace - 2 * np.sum(s)


def _kid(x, y):
    """Unbiased MMD^2 with the cubic kernel ``(x . y / d + 1)^3`` (Bińkowski et al., 2018)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
    n, m = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def _precision_recall(real, fake, k=3):
    """Kynkäänniemi et al. (2019) by brute force: a row is covered by the other set's
    k-NN balls (the radius: the distance to the k-th nearest other row of its own set)."""

    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]

    def covered(ref, x):
        d = np.linalg.norm(x[:, None] - ref[None], axis=-1)
        return np.mean(np.any(d <= radii(ref)[None], axis=1))

    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    return covered(real, fake), covered(fake, real)


def _density_coverage(real, fake, k=3):
    """Naeem et al. (2020) by brute force, with the real rows' k-NN balls."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    own = np.linalg.norm(real[:, None] - real[None], axis=-1)
    radii = np.sort(own, axis=1)[:, k]
    inside = np.linalg.norm(fake[:, None] - real[None], axis=-1) <= radii[None]  # [M, N]
    return inside.sum() / (k * len(fake)), np.mean(inside.any(axis=0))


def _inception_score(logits, splits):
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    m = len(p)
    scores = []
    for s in range(splits):
        part = p[s * m // splits : (s + 1) * m // splits]
        marginal = part.mean(0)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(marginal)), 1))))
    return np.mean(scores), np.std(scores)


N = 40  # images in each set


def test_inception_metrics_against_numpy_formulas(monkeypatch):
    # The network is replaced by fixed random projections of the pixels (a random-weight
    # InceptionV3 maps every image to nearly the same point), so that the metrics' values
    # spread; what is checked is which features meet which, and the formulas.
    rng = np.random.default_rng(0)
    w_pool = rng.normal(size=(16 * 16 * 3, 64)).astype(np.float32)
    w_logits = rng.normal(size=(16 * 16 * 3, 1008)).astype(np.float32) / 4
    seen = []

    def projected(variables, images, *, batch_size, logits):
        assert variables == "weights" and logits
        seen.append(batch_size)
        flat = np.asarray(images, np.float32).reshape(len(images), -1)
        return flat @ w_pool, flat @ w_logits

    monkeypatch.setattr(inception, "inception_features", projected)
    real = rng.uniform(size=(N, 16, 16, 3)).astype(np.float32)
    train = rng.uniform(size=(N, 16, 16, 3)).astype(np.float32)
    # Half the samples near real images, half a dark mode of their own.
    near = np.clip(real[: N // 2] + 0.05 * rng.normal(size=real[: N // 2].shape), 0, 1)
    generated = np.concatenate([near, 0.3 * rng.uniform(size=near.shape)]).astype(np.float32)
    m = image_metrics.inception_metrics(
        "weights", generated, real, train, jax.random.PRNGKey(0), batch_size=5
    )
    assert seen == [5, 5, 5]
    pool = {k: v.reshape(N, -1) @ w_pool for k, v in (("gen", generated), ("real", real))}
    pool["train"] = train.reshape(N, -1) @ w_pool
    assert m["fid_inception"] == pytest.approx(_fid(pool["gen"], pool["real"]), rel=1e-4)
    assert m["fid_inception_train_test"] == pytest.approx(
        _fid(pool["train"], pool["real"]), rel=1e-4
    )
    # N rows: every KID subset holds all of them, so each subset is the full estimate.
    assert m["kid_inception"] == pytest.approx(_kid(pool["real"], pool["gen"]), rel=1e-3)
    assert m["kid_std_inception"] == pytest.approx(0.0, abs=1e-4 * abs(m["kid_inception"]))
    kid_ref = _kid(pool["real"], pool["train"])
    assert m["kid_inception_train_test"] == pytest.approx(kid_ref, rel=1e-3)
    precision, recall = _precision_recall(pool["real"], pool["gen"])
    assert 0 < precision < 1  # the dark mode lies outside the real balls
    assert (m["precision_inception"], m["recall_inception"]) == pytest.approx((precision, recall))
    p_ref, r_ref = _precision_recall(pool["real"], pool["train"])
    assert m["precision_inception_train_test"] == pytest.approx(p_ref)
    assert m["recall_inception_train_test"] == pytest.approx(r_ref)
    for key, images in (("inception_score", generated), ("inception_score_test", real)):
        logits = images.reshape(N, -1).astype(np.float64) @ w_logits
        mean, std = _inception_score(logits, 10)
        assert mean > 1.05  # the projections' classes differ between images
        assert (m[key], m[f"{key}_std"]) == pytest.approx((mean, std), rel=1e-3)
    density, coverage = _density_coverage(pool["real"], pool["gen"])
    assert (m["density_inception"], m["coverage_inception"]) == pytest.approx((density, coverage))
    density, coverage = _density_coverage(pool["real"], pool["train"])
    assert m["density_inception_train_test"] == pytest.approx(density)
    assert m["coverage_inception_train_test"] == pytest.approx(coverage)


SHORT = ["--quiet", "--set", "train.steps=4", "--set", "train.fuse_steps=2",
         "--set", "train.log_every=2", "--set", "train.eval_every=0",
         "--set", "train.checkpoint_every=4", "--set", "train.batch_size=20",
         "--set", "eval.image_samples=8", "--set", "eval.classifier_steps=5",
         "--set", "eval.inception_reference=8", "--set", "eval.inception_batch=8"]  # fmt: skip


def _one_line_usage_error(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize(
    ("dataset", "weights", "fragments"),
    [
        ("ring8", "file", ["eval.inception_weights", "'ring8' is not an image set"]),
        ("digits", "missing", ["eval.inception_weights: no file at", inception.WEIGHTS_FILE]),
        ("digits", "corrupt", ["eval.inception_weights: cannot read", "FID InceptionV3"]),
    ],
)
def test_bad_inception_weights_stop_the_run_before_training(
    dataset, weights, fragments, inception_weights_file, tmp_path, capsys
):
    path = {
        "file": inception_weights_file,
        "missing": tmp_path / "nowhere.pth",
        "corrupt": tmp_path / "corrupt.pth",
    }[weights]
    if weights == "corrupt":
        path.write_bytes(b"not a torch file")
    work = tmp_path / "run"
    argv = ["--model", "gan", "--dataset", dataset, "--workdir", str(work), *SHORT]
    code = main([*argv, "--set", f"eval.inception_weights={path}"])
    assert code == 2
    _one_line_usage_error(capsys, *fragments)
    assert not work.exists()


@pytest.mark.slow
def test_cifar10_gan_reports_inception_metrics(inception_weights_file, tmp_path, monkeypatch):
    data_dir = tmp_path / "tfds"
    write_cifar(manual(data_dir))
    allow_test_archives(monkeypatch, Cifar10, {"train": 200, "test": 60})
    work = tmp_path / "run"
    code = main(["--model", "gan", "--dataset", "cifar10", "--workdir", str(work), *SHORT,
                 "--set", f"data.data_dir={data_dir}",
                 "--set", "model.generator_features=32,16,8",
                 "--set", "model.discriminator_features=8,16,32",
                 "--set", f"eval.inception_weights={inception_weights_file}"])  # fmt: skip
    assert code == 0
    summary = json.loads((work / "summary.json").read_text())
    metrics = summary["metrics"]
    config = json.loads((work / "config.json").read_text())
    assert config["model_config"]["architecture"] == "dcgan" and summary["steps"] == 4
    names = ["fid_inception", "kid_inception", "precision_inception", "recall_inception",
             "density_inception", "coverage_inception", "inception_score"]  # fmt: skip
    for name in names:
        assert np.isfinite(metrics[name]), name
        assert np.isfinite(metrics.get(f"{name}_train_test", metrics.get(f"{name}_test"))), name
    assert metrics["fid_inception"] > 0 and 1 <= metrics["inception_score"] <= 1008
    assert "frechet_distance" in metrics  # the classifier's metrics are still there


VAE_SHORT = ["--quiet", "--set", "train.steps=4", "--set", "train.fuse_steps=2",
             "--set", "train.log_every=2", "--set", "train.eval_every=0",
             "--set", "train.checkpoint_every=4", "--set", "eval.iwae_samples=4",
             "--set", "eval.iwae_chunk=4", "--set", "eval.iwae_curve=",
             "--set", "eval.baseline_em_steps=2", "--set", "eval.inception_samples=8",
             "--set", "eval.inception_reference=8", "--set", "eval.inception_batch=8"]  # fmt: skip


@pytest.mark.slow
def test_vae_reports_inception_metrics_of_its_decoded_samples(
    inception_weights_file, tmp_path, monkeypatch
):
    seen = []
    features = inception.inception_features

    def recording(variables, images, **kwargs):
        seen.append(np.asarray(images))
        return features(variables, images, **kwargs)

    monkeypatch.setattr(inception, "inception_features", recording)
    work = tmp_path / "run"
    code = main(["--model", "vae", "--dataset", "digits", "--workdir", str(work), *VAE_SHORT,
                 "--set", f"eval.inception_weights={inception_weights_file}"])  # fmt: skip
    assert code == 0
    metrics = json.loads((work / "summary.json").read_text())["metrics"]
    for name in image_metrics.INCEPTION_METRIC_NAMES:
        assert np.isfinite(metrics[name]), name
    # The decoded samples (8 means in [0, 1], as 8x8x1 images), then the first 8 test and
    # train images divided by digits' largest pixel value, 16.
    generated, test, train = seen
    assert generated.shape == test.shape == train.shape == (8, 8, 8, 1)
    assert generated.min() >= 0 and generated.max() <= 1 and np.std(generated) > 0
    from genjax.data import load

    for got, split in ((test, "test"), (train, "train")):
        raw = load("digits", split).get(np.arange(8))["image"]
        np.testing.assert_array_equal(got, raw.astype(np.float32) / 16)


def test_vae_celeb_a_64_config_builds_a_conv_model_on_64x64_faces():
    from experiments.models import vae as vae_experiment
    from genjax.models.base import DataInfo

    config = vae_experiment._celeb_a_64()
    shape = (64, 64, 3)
    objective = config.model_config.objective(
        DataInfo(shape=shape, image_shape=shape, unit_interval=True)
    )
    batch = {"x": np.zeros((2, *shape), np.float32)}
    variables = jax.eval_shape(objective.init, jax.random.PRNGKey(0), batch)  # shapes only
    sample = jax.eval_shape(
        lambda v, key: objective.sample({"model": v}, {}, key, 2, mean=True),
        variables,
        jax.random.PRNGKey(1),
    )
    assert sample.shape == (2, *shape) and config.model_config.architecture == "conv"

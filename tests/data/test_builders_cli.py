"""The command trains from genjax's builders: archives written here in the original formats,
in a manual directory, no network, no TensorFlow."""

import json
import math

import numpy as np
import pytest
import scipy.stats
from test_builders import (
    allow_test_archives,
    celeba_sizes,
    manual,
    write_amat_set,
    write_celeba,
    write_idx_set,
)

from experiments.train import main
from genjax.data.celeb_a import CelebA64
from genjax.data.mnist import BinarizedMnist, FashionMnist, Mnist

SHORT = ["--quiet", "--set", "train.steps=50", "--set", "train.fuse_steps=25",
         "--set", "train.log_every=25", "--set", "train.eval_every=0",
         "--set", "train.checkpoint_every=50", "--set", "train.batch_size=50",
         "--set", "eval.iwae_samples=20", "--set", "eval.iwae_chunk=20",
         "--set", "eval.elbo_samples=2", "--set", "eval.baseline_em_steps=5"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", ["binarized_mnist", "fashion_mnist"])
def test_vae_trains_from_a_manual_directory(tmp_path, monkeypatch, capsys, name):
    data_dir = tmp_path / "tfds"
    if name == "binarized_mnist":
        write_amat_set(manual(data_dir))
        allow_test_archives(monkeypatch, BinarizedMnist, {"train": 200, "validation": 60,
                                                          "test": 50})  # fmt: skip
    else:
        write_idx_set(manual(data_dir, "fashion_mnist"))
        allow_test_archives(monkeypatch, FashionMnist, {"train": 300, "test": 100})
    work = tmp_path / "run"
    code = main(["--model", "vae", "--dataset", name, "--workdir", str(work), *SHORT,
                 "--set", f"data.data_dir={data_dir}"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads((work / "summary.json").read_text())
    assert summary["steps"] == 50 and summary["dataset"] == name
    nll = summary["metrics"]["test_nll_iwae"]
    coin = 784 * math.log(2)  # 543.4 nats: every pixel a fair coin
    if name == "binarized_mnist":
        # Pixels on with probability 0.3, independently: no model beats 784 H(0.3) = 479
        # nats by more than the 50 test images' sampling error (1.5 nats), and a model that
        # has learned even the marginals beats the coin.
        assert 470 < nll < coin, nll
    else:
        # Uniform grey levels, binarised afresh: every pixel is a fair coin, so no model can
        # beat 543.4 nats, and a trained one gets close to it.
        assert coin - 1 < nll < coin + 30, nll


def _tiny(steps: int, batch: int) -> list[str]:
    args = [f"train.steps={steps}", f"train.fuse_steps={steps}", f"train.log_every={steps}",
            "train.eval_every=0", f"train.checkpoint_every={steps}",
            f"train.batch_size={batch}"]  # fmt: skip
    return ["--quiet", *[a for item in args for a in ("--set", item)]]


def _mnist_dir(tmp_path, monkeypatch):
    """A data directory holding a 300 / 100 MNIST written here in its IDX archives."""
    data_dir = tmp_path / "tfds"
    write_idx_set(manual(data_dir, "mnist"))
    allow_test_archives(monkeypatch, Mnist, {"train": 300, "test": 100})
    return data_dir


@pytest.mark.slow
def test_ppca_trains_on_mnist_from_a_manual_directory(tmp_path, monkeypatch):
    data_dir = _mnist_dir(tmp_path, monkeypatch)
    work = tmp_path / "run"
    code = main(["--model", "ppca", "--dataset", "mnist", "--workdir", str(work),
                 *_tiny(20, 100), "--set", f"data.data_dir={data_dir}",
                 "--set", "model.latent_dim=4", "--set", "eval.select_q=2,4",
                 "--set", "eval.em_steps=3"])  # fmt: skip
    assert code == 0
    summary = json.loads((work / "summary.json").read_text())
    assert summary["dataset"] == "mnist" and summary["steps"] == 20
    m = summary["metrics"]
    # The closed form is Tipping & Bishop's maximum likelihood, written out in NumPy on the
    # decoded training images in [0, 1]; the EM fit cannot beat it.
    from genjax.data import load

    x = load("mnist", "train", data_dir=data_dir).get(np.arange(300))["image"]
    x = x.reshape(300, -1).astype(np.float64) / 255
    mean = x.mean(0)
    eigvals, eigvecs = np.linalg.eigh((x - mean).T @ (x - mean) / len(x))
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    q, d = 4, x.shape[1]
    sigma2 = eigvals[q:].mean()
    w = eigvecs[:, :q] * np.sqrt(eigvals[:q] - sigma2)
    oracle = scipy.stats.multivariate_normal(mean, w @ w.T + sigma2 * np.eye(d)).logpdf(x).mean()
    assert m["closed_form_train_log_likelihood"] == pytest.approx(oracle, rel=1e-4)
    assert m["em_train_log_likelihood"] <= m["closed_form_train_log_likelihood"] + 1e-3
    assert math.isfinite(m["test_log_likelihood"])


@pytest.mark.slow
def test_conv_vae_trains_on_celeb_a_64_from_a_manual_directory(tmp_path, monkeypatch):
    data_dir = tmp_path / "tfds"
    write_celeba(manual(data_dir))
    allow_test_archives(monkeypatch, CelebA64, celeba_sizes())
    work = tmp_path / "run"
    code = main(["--model", "vae", "--dataset", "celeb_a_64", "--workdir", str(work),
                 *_tiny(4, 8), "--set", f"data.data_dir={data_dir}",
                 "--set", "model.hidden=8,8,8,8", "--set", "model.latent_dim=4",
                 "--set", "eval.iwae_samples=4", "--set", "eval.iwae_chunk=4"])  # fmt: skip
    assert code == 0
    summary = json.loads((work / "summary.json").read_text())
    config = json.loads((work / "config.json").read_text())
    assert config["model_config"]["architecture"] == "conv"
    assert config["model_config"]["likelihood"] == "gaussian"
    assert summary["dataset"] == "celeb_a_64" and summary["steps"] == 4
    assert math.isfinite(summary["metrics"]["test_nll_iwae"])
    # 4 test images: two interpolation pairs.
    assert (work / "figures" / "interpolation.png").is_file()


@pytest.mark.slow
def test_vq_bits_trains_its_rows_on_mnist_over_seeds(tmp_path, monkeypatch):
    from experiments import vq_bits

    data_dir = _mnist_dir(tmp_path, monkeypatch)
    work = tmp_path / "bits"
    argv = ["--workdir", str(work), "--dataset", "mnist", "--only", "fsq_4x4x4", "--no-bf16"]
    argv += ["--seeds", "2", *_tiny(12, 50)[1:]]  # vq_bits passes --quiet itself
    for item in ("model.prior_steps=4", "eval.num_samples=20", f"data.data_dir={data_dir}"):
        argv += ["--set", item]
    assert vq_bits.main(argv) == 0
    for run in ("fsq_4x4x4", "fsq_4x4x4-seed1"):
        summary = json.loads((work / run / "summary.json").read_text())
        assert summary["dataset"] == "mnist"
        # 28 x 28 through two stride-2 stages: a 7 x 7 map of 4 * 4 * 4 = 64 codes.
        assert summary["metrics"]["bits_per_image"] == pytest.approx(49 * 6)
    config = json.loads((work / "fsq_4x4x4-seed1" / "config.json").read_text())
    assert config["train"]["seed"] == 1
    seeds = json.loads((work / "seeds.json").read_text())["fsq_4x4x4"]
    assert seeds["seeds"] == 2 and len(seeds["recon_mse"]["values"]) == 2
    assert (work / "seeds.md").read_text().startswith("| run | seeds |")

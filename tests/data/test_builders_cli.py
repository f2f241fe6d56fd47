"""The command trains from genjax's builders: archives written here in the original formats,
in a manual directory, no network, no TensorFlow."""

import json
import math

import pytest
from test_builders import allow_test_archives, manual, write_amat_set, write_idx_set

from experiments.train import main
from genjax.data.mnist import BinarizedMnist, FashionMnist

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

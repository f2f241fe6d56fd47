"""The model experiments' headline claims, run through the experiment command with their
default `digits` configurations (each a fraction of a minute on 2 cores).

The oracles are independent of the model being judged: the VAE against two baselines fitted by
other means (independent Bernoulli pixels in closed form, a mixture of Bernoulli products by
EM; both checked against exact oracles in tests/eval/test_baselines.py).
"""

import json

import jax
import numpy as np
import pytest

import genjax
from experiments.train import main


def _train(tmp_path, model, *overrides):
    work = tmp_path / model
    argv = ["--model", model, "--dataset", "digits", "--workdir", str(work), "--quiet"]
    for item in overrides:
        argv += ["--set", item]
    assert main(argv) == 0
    return work, json.loads((work / "summary.json").read_text())


@pytest.mark.slow
def test_vae_on_binarised_digits_beats_both_baselines_at_k5000(tmp_path):
    work, summary = _train(tmp_path, "vae")
    m = summary["metrics"]
    assert summary["steps"] == 5000 and m["iwae_samples"] == 5000
    # The IWAE bound is an upper bound on the NLL that tightens with K; ELBO is the loosest.
    assert m["test_nll_iwae"] <= m["test_nll_iwae_k1000"] <= m["test_nll_iwae_k10"]
    assert m["test_nll_iwae"] < -m["test_elbo"]
    # Beats both baselines on the same test split, the mixture by more than 3 paired
    # standard errors of the per-example difference.
    assert m["test_nll_iwae"] < m["baseline_bernoulli_nll"] - 3.0
    assert m["nll_minus_mixture_nll"] + 3 * m["nll_minus_mixture_nll_stderr"] < 0
    assert m["test_nll_iwae"] - m["baseline_mixture_nll"] == pytest.approx(
        m["nll_minus_mixture_nll"], abs=1e-4
    )
    # The run loads back and its functions work on the loaded parameters.
    run = genjax.load_run(work)
    samples = np.asarray(run.sample(jax.random.PRNGKey(0), 8))
    assert samples.shape[0] == 8 and np.all(np.isfinite(samples))
    figures = {p.name for p in (work / "figures").glob("*.png")}
    assert {"samples.png", "reconstructions.png", "iwae_curve.png"} <= figures, figures


def test_gan_experiment_writes_metrics_snapshots_and_loads_back(tmp_path):
    """A short GAN run on the ring through the command: the documented metrics, a snapshot
    figure at every evaluation, and a run that loads back with its sampler and discriminator.
    (How good the default configuration gets is the 5-seed table's job, not this test's.)"""
    work = tmp_path / "gan"
    argv = ["--model", "gan", "--dataset", "ring8", "--workdir", str(work), "--quiet"]
    for item in (
        "train.steps=600",
        "train.eval_every=300",
        "train.checkpoint_every=300",
        "model.r1_steps=300",
        "eval.eval_samples=500",
    ):
        argv += ["--set", item]
    assert main(argv) == 0
    m = json.loads((work / "summary.json").read_text())["metrics"]
    for key in ("modes_captured", "high_quality_fraction", "reverse_kl"):
        assert key in m and f"raw_{key}" in m
    assert 0 <= m["modes_captured"] <= m["num_modes"] == 8
    assert 0.0 <= m["high_quality_fraction"] <= 1.0
    tests = [
        json.loads(line)
        for line in (work / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "test"
    ]
    assert [t["step"] for t in tests] == [300, 600]
    snaps = sorted(p.name for p in (work / "figures" / "snapshots").glob("*.png"))
    assert snaps == ["step_000300.png", "step_000600.png"]
    assert (work / "figures" / "samples.png").exists()
    run = genjax.load_run(work)
    x = np.asarray(run.sample(jax.random.PRNGKey(0), 16))
    assert x.shape == (16, 2) and np.all(np.isfinite(x))
    d = np.asarray(run.discriminate(x))
    assert d.shape == (16,) and np.all((d >= 0) & (d <= 1))


def test_gan_table_statistics_and_published_rows():
    """Mean and standard error over seeds against numpy; the published rows are printed."""
    from experiments import gan_table

    per_seed = [
        {"modes_captured": 8, "high_quality_fraction": 0.9, "reverse_kl": 0.01},
        {"modes_captured": 7, "high_quality_fraction": 0.95, "reverse_kl": 0.03},
        {"modes_captured": 8, "high_quality_fraction": 0.8, "reverse_kl": 0.02},
    ]
    table = gan_table.summarise({"ring8": per_seed})
    hq = np.array([0.9, 0.95, 0.8])
    row = table["ours"]["ring8"]
    assert row["seeds"] == 3
    assert row["high_quality_fraction"]["mean"] == pytest.approx(hq.mean())
    assert row["high_quality_fraction"]["stderr"] == pytest.approx(hq.std(ddof=1) / np.sqrt(3))
    assert row["modes_captured"]["mean"] == pytest.approx(23 / 3)
    md = gan_table.markdown(table)
    assert "**7.67 ± 0.33**" in md and "**88.3% ± 4.4%**" in md
    assert "| VEEGAN (2017) | Unrolled GAN | 7.60 | 35.6% | – | 23.60 | 16.0% | – |" in md
    assert "| PacGAN (2018) | PacGAN4 |" in md


#: (H, W, C) and classes of the real image sets (genjax's builders' features).
_REAL_SETS = {
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "binarized_mnist": ((28, 28, 1), None),
    "cifar10": ((32, 32, 3), 10),
    "celeb_a_64": ((64, 64, 3), None),
}


def _real_configs():
    from experiments import registry

    return [
        (model, dataset)
        for model in registry.model_names()
        for dataset in registry.get(model).configs
        if dataset in _REAL_SETS
    ]


def test_every_model_has_configs_on_the_real_sets():
    models = {model for model, _ in _real_configs()}
    assert models == {"ppca", "vae", "gan", "vqvae", "cyclevae"}


@pytest.mark.parametrize(("model", "dataset"), _real_configs())
def test_each_real_set_config_builds_its_model_on_that_data(model, dataset):
    import math

    from experiments import registry
    from genjax.models.base import DataInfo
    from genjax.runs import build_objective

    config = registry.get(model).configs[dataset]()
    assert config.dataset == dataset and config.model == model
    image, classes = _REAL_SETS[dataset]
    shape = (math.prod(image),) if config.data.flatten else image
    info = DataInfo(shape=shape, num_classes=classes, name=dataset, image_shape=image)
    if model == "cyclevae" and classes is None:
        pytest.fail(f"{dataset} has no classes to be the Cycle VAE's domains")
    objective = build_objective(config, info)
    batch = {"x": np.zeros((2, *shape), np.float32)}
    if classes:
        batch["label"] = np.zeros((2,), np.int32)
    variables = jax.eval_shape(objective.init, jax.random.PRNGKey(0), batch)  # shapes only
    assert jax.tree.leaves(variables)

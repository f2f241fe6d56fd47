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

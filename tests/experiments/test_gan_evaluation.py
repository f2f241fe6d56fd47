"""The GAN experiment's sample metrics and its per-loss mode-collapse table, against
hand-computed values (k-NN balls on the line) and numpy statistics."""

from __future__ import annotations

import jax
import numpy as np
import pytest


def test_neighbour_metrics_on_equal_numbers_of_rows_by_hand():
    from experiments.models.image_metrics import neighbour_metrics as _neighbour_metrics

    # Real 0..4 on the line: 3-NN radii 3, 2, 2, 2, 3. The generated set's sixth row is
    # dropped (equal sizes); its 3-NN radii on [0.5, 2, 10, 20, 30] are 19.5, 18, 10, 18, 28.
    real = np.arange(5.0)[:, None]
    generated = np.array([0.5, 2.0, 10.0, 20.0, 30.0, 0.0])[:, None]
    m = _neighbour_metrics(real, generated, "toy")
    assert sorted(m) == ["coverage_toy", "density_toy", "precision_toy", "recall_toy"]
    assert m["precision_toy"] == pytest.approx(2 / 5)  # 0.5 and 2 lie in real balls
    assert m["recall_toy"] == pytest.approx(1.0)  # every real point is within 19.5 of 0.5
    # 0.5 lies in the balls of 0, 1, 2; 2 in all five: (3 + 5) / (k M) = 8 / 15.
    assert m["density_toy"] == pytest.approx(8 / 15)
    assert m["coverage_toy"] == pytest.approx(1.0)


def test_feature_metrics_name_the_features_and_match_the_library():
    from experiments.models.image_metrics import feature_metrics as _feature_metrics
    from genjax import eval as ev

    rng = np.random.default_rng(0)
    real, generated = rng.normal(size=(40, 3)), rng.normal(size=(60, 3)) + 0.5
    key = jax.random.key(0)
    m = _feature_metrics(real, generated, key, "classifier")
    kid = ev.kernel_inception_distance(real, generated, key)
    assert m["kid_classifier"] == pytest.approx(float(kid.mean))
    assert m["kid_std_classifier"] == pytest.approx(float(kid.std))
    pr = ev.precision_recall(real, generated[:40], k=3)
    assert m["precision_classifier"] == pytest.approx(float(pr.precision))
    assert {"density_classifier", "coverage_classifier", "recall_classifier"} <= set(m)


_PER_SEED = {
    "hinge": [
        {"modes_captured": 8, "high_quality_fraction": 0.9, "reverse_kl": 0.01},
        {"modes_captured": 7, "high_quality_fraction": 0.95, "reverse_kl": 0.03},
        {"modes_captured": 8, "high_quality_fraction": 0.8, "reverse_kl": 0.02},
    ],
    "wgan_gp": [
        {"modes_captured": 6, "high_quality_fraction": 0.5, "reverse_kl": 0.2},
        {"modes_captured": 8, "high_quality_fraction": 0.7, "reverse_kl": 0.1},
    ],
}


def test_gan_table_has_one_row_per_loss():
    from experiments import gan_table

    table = gan_table.summarise_losses({loss: {"ring8": v} for loss, v in _PER_SEED.items()})
    assert [row["loss"] for row in table["by_loss"]] == ["hinge", "wgan_gp"]
    hq = np.array([0.5, 0.7])
    row = table["by_loss"][1]["ours"]["ring8"]
    assert row["high_quality_fraction"]["mean"] == pytest.approx(hq.mean())
    assert row["high_quality_fraction"]["stderr"] == pytest.approx(hq.std(ddof=1) / np.sqrt(2))
    md = gan_table.markdown(table)
    lines = md.splitlines()
    ours = "| genjax (this run) | GAN, loss="
    assert lines[2].startswith(f"{ours}hinge, 3 seeds | **7.67 ± 0.33** |")
    assert lines[3].startswith(f"{ours}wgan_gp, 2 seeds | **7.00 ± 1.00** |")
    assert "**60.0% ± 10.0%**" in lines[3] and lines[3].endswith("| – | – | – |")
    assert lines[4].startswith("| VEEGAN (2017) | GAN |") and len(lines) == 4 + 9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--losses", "hinge,wgan"], "--losses must name some of minimax, non_saturating"),
        (["--losses", "hinge", "--set", "model.loss=hinge"], "--losses sets model.loss itself"),
    ],
)
def test_gan_table_refuses_bad_losses(argv, message, capsys, tmp_path):
    from experiments import gan_table

    with pytest.raises(SystemExit) as info:
        gan_table.main([*argv, "--out", str(tmp_path / "t")])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("same_recipe", [False, True])
def test_gan_table_runs_each_loss_with_its_paper_s_recipe(same_recipe, monkeypatch, tmp_path):
    import json

    from experiments import gan_table, train

    calls = []

    def fake_main(argv):
        work = argv[argv.index("--workdir") + 1]
        settings = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        calls.append((work, settings))
        metrics = {"modes_captured": 8, "high_quality_fraction": 0.9, "reverse_kl": 0.1}
        (tmp_path / work).mkdir(parents=True, exist_ok=True)
        (tmp_path / work / "summary.json").write_text(json.dumps({"metrics": metrics}))
        return 0

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train, "main", fake_main)
    argv = ["--seeds", "1", "--out", "t", "--losses", "hinge,wgan_gp", "--quiet"]
    assert gan_table.main(argv + (["--same-recipe"] if same_recipe else [])) == 0
    wgan = [(w, s) for w, s in calls if "model.loss=wgan_gp" in s]
    hinge = [(w, s) for w, s in calls if "model.loss=hinge" in s]
    assert len(wgan) == len(hinge) == 2  # ring8 and grid25
    for _, settings in hinge:
        assert settings == ["train.seed=0", "model.loss=hinge"]
    recipe = ["model.d_steps=5", "model.r1_gamma=0", "optimizer.learning_rate=1e-4"]
    for work, settings in wgan:
        assert all(item in settings for item in recipe) != same_recipe
        assert work.endswith("-wgan_gp-seed0" if same_recipe else "-wgan_gp-paper-seed0")
    table = json.loads((tmp_path / "t" / "table.json").read_text())
    assert bool(table["by_loss"][1]["recipe"]) != same_recipe
    assert ("loss=wgan_gp (its paper's recipe)" in (tmp_path / "t" / "table.md").read_text()) != (
        same_recipe
    )

"""Smoke test of the unified benchmark (benchmarks/run.py): one tiny configuration.

Timings are never asserted (speed targets live in the benchmark's output); what is checked is
that the runner produces its outputs, that XLA's FLOP count is the hand-computed one for a
matmul, and, when torch is installed, that each PyTorch twin has exactly the genjax model's
parameter count and PPCA's twin computes the same loss from the same parameters.
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import roofline, run, specs, timing
from genjax.models import gan, ppca
from genjax.train import init_state


def _params(built: specs.Built):
    raw = built.raw_batches(1)
    one = {k: v[0] for k, v in raw.items()}
    state = init_state(built.task, jax.random.PRNGKey(0), built.prepare(one, jax.random.key(0)))
    return state.params, one


def test_matmul_flops_match_the_hand_count():
    a = jnp.ones((8, 16), jnp.float32)
    b = jnp.ones((16, 4), jnp.float32)
    cost = roofline.cost_analysis(jnp.matmul, a, b)
    assert cost["flops"] == 2 * 8 * 16 * 4
    assert roofline.fraction(1e9, 2.0, 4e9) == 0.5
    with pytest.raises(ValueError, match="peak_flops_per_s"):
        roofline.fraction(1.0, 1.0, 0.0)


def test_specs_reject_unknown_names_and_bad_batches():
    with pytest.raises(ValueError, match="unknown benchmark model 'nope'"):
        specs.build("nope", 8)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        specs.resolve_config(specs.SPECS["ppca"], 0)


def _run_tiny(tmp_path, *models: str, batch: int) -> dict:
    """``benchmarks.run`` on ``models`` at one batch: two repeats of the fewest steps, a small
    matmul, no torch.compile, no scaling plot, outputs under ``tmp_path``."""
    return run.main(
        [
            "--models",
            *models,
            "--batch",
            str(batch),
            "--repeats",
            "2",
            "--target-s",
            "0.001",
            "--matmul-n",
            "64",
            "--no-compile",
            "--no-scaling",
            "--results-dir",
            str(tmp_path),
        ]
    )


def test_runner_writes_json_table_and_plot(tmp_path):
    out = _run_tiny(tmp_path, "ppca", batch=8)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] and saved["rows"][0]["model"] == "ppca"
    row = out["rows"][0]
    assert row["batch"] == 8 and row["steps_per_repeat"] >= 2  # the minimum
    fused = row["methods"]["genjax_fused"]
    assert row["repeats"] == 2 and len(fused["repeat_seconds"]) == 2
    assert fused["examples_per_s"] > 0
    assert row["flops_per_step"] > 0 and row["roofline_fraction"] > 0
    assert math.isfinite(row["final_loss"]["genjax_fused"])
    table = (tmp_path / "results.md").read_text()
    assert "| ppca | 8 |" in table
    assert (tmp_path / "throughput.png").stat().st_size > 0
    if run.torch_available():
        assert row["methods"]["torch_eager"]["examples_per_s"] > 0
        assert row["methods"]["torch_compiled"] == {"error": "not run (--no-compile)"}
    else:
        assert "error" in row["methods"]["torch_eager"]


def test_runner_times_a_two_player_gan(tmp_path):
    """The GAN's step is two engine players (``disc/loss``, ``gen/loss``, no ``loss``)."""
    out = _run_tiny(tmp_path, "gan_mlp", batch=4)
    assert not out.get("failed")
    (row,) = out["rows"]
    assert row["model"] == "gan_mlp" and row["config"]["model_config"]["d_steps"] == 1
    for method in ("genjax_step", "genjax_fused"):
        assert row["methods"][method]["steps_per_s"] > 0
    assert all(math.isfinite(v) for v in row["final_loss"].values())
    if run.torch_available():
        assert row["torch_num_params"] == row["num_params"]
        assert row["methods"]["torch_eager"]["steps_per_s"] > 0


def test_step_loss_sums_the_players_losses():
    assert run.step_loss({"loss": 1.5, "x": 2.0}) == 1.5
    got = run.step_loss({"disc/loss": np.array([1.0, 2.0]), "gen/loss": np.array([0.5, 0.5])})
    np.testing.assert_allclose(got, [1.5, 2.5])
    with pytest.raises(KeyError, match="no 'loss'"):
        run.step_loss({"d_real": 0.5})


def test_torch_twins_match_parameter_counts():
    pytest.importorskip("torch")
    from benchmarks import torch_reference

    for name in specs.available():
        built = specs.build(name, 4)
        raw = built.raw_batches(1)
        one = {k: v[0] for k, v in raw.items()}
        batch = jax.eval_shape(built.prepare, one, jax.random.key(0))
        shapes = jax.eval_shape(built.task.init, jax.random.key(0), batch)
        n_genjax = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
        twin = torch_reference.build(built.spec.torch_twin, built.config, built.info, 255)
        assert twin.num_params() == n_genjax, name
    assert {"gan_mlp", "gan_dcgan"} <= set(specs.available())


def test_torch_ppca_twin_computes_the_same_loss():
    torch = pytest.importorskip("torch")
    from benchmarks import torch_reference
    from benchmarks.torch_reference.common import preprocess, to_torch_batch

    built = specs.build("ppca", 16)
    params, one = _params(built)
    variables = params["model"]
    expected, _ = ppca.objective(variables, built.prepare(one, jax.random.key(0)))
    twin = torch_reference.build("ppca", built.config, built.info, specs.IMAGE_MAX)
    p = variables["params"]
    with torch.no_grad():
        twin.module.W.copy_(torch.from_numpy(np.array(p["W"])))
        twin.module.mu.copy_(torch.from_numpy(np.array(p["mu"])))
        twin.module.raw.copy_(torch.tensor(float(p["sigma2_unconstrained"])))
        x = preprocess(to_torch_batch(one), built.config.data, specs.IMAGE_MAX)
        got = float(twin.module(x))
    np.testing.assert_allclose(got, float(expected), rtol=1e-4)


def _load_gan_params(twin, params) -> None:
    """Copy genjax's GAN parameters into the PyTorch twin: ``Dense`` kernels transposed,
    convolution kernels HWIO -> OIHW, transposed-convolution kernels spatially flipped
    (``lax.conv_transpose`` correlates, ``ConvTranspose2d`` is the adjoint of a correlation),
    and the NHWC <-> NCHW flattening order at the generator's projection and the
    discriminator's head."""
    import torch
    from torch import nn

    def put(module, weight, bias):
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(np.array(weight)))
            module.bias.copy_(torch.from_numpy(np.array(bias)))

    def layers(module, kind):
        return [m for m in module.modules() if type(m) is kind]

    gen = jax.tree.map(np.asarray, params["gen"]["params"])
    disc = jax.tree.map(np.asarray, params["disc"]["params"])["net"]
    if "mlp" in gen:
        for name, tree in (("generator", gen["mlp"]), ("discriminator", disc["mlp"])):
            linears = layers(getattr(twin, name), nn.Linear)
            assert len(linears) == len(tree)
            for i, linear in enumerate(linears):
                put(linear, tree[f"dense_{i}"]["kernel"].T, tree[f"dense_{i}"]["bias"])
        return
    g = gen["deconv"]
    c0, h0, w0 = twin.generator.net.start
    kernel = g["project"]["kernel"].reshape(-1, h0, w0, c0).transpose(3, 1, 2, 0)
    bias = g["project"]["bias"].reshape(h0, w0, c0).transpose(2, 0, 1)
    put(twin.generator.net.project, kernel.reshape(c0 * h0 * w0, -1), bias.reshape(-1))
    deconvs = layers(twin.generator, nn.ConvTranspose2d)
    for i, deconv in enumerate(deconvs):
        k = g[f"deconv_{i}"]["kernel"][::-1, ::-1]  # [kh, kw, in, out], flipped
        put(deconv, k.transpose(2, 3, 0, 1), g[f"deconv_{i}"]["bias"])
    (out_conv,) = layers(twin.generator, nn.Conv2d)
    put(out_conv, g["output"]["kernel"].transpose(3, 2, 0, 1), g["output"]["bias"])
    convs = layers(twin.discriminator, nn.Conv2d)
    for i, conv in enumerate(convs):
        tree = disc["conv"][f"conv_{i}"]
        put(conv, tree["kernel"].transpose(3, 2, 0, 1), tree["bias"])
    (head,) = layers(twin.discriminator, nn.Linear)
    channels = convs[-1].out_channels
    k = disc["head"]["kernel"].reshape(-1, channels, 1)  # [(h, w), c, 1]
    put(head, k.transpose(2, 1, 0).reshape(1, -1), disc["head"]["bias"])


@pytest.mark.parametrize("name", ["gan_mlp", "gan_dcgan"])
def test_torch_gan_twin_computes_the_same_losses(name):
    """Same parameters, same batch, same z: the twin's discriminator loss (with the R1
    penalty, which the configs keep on) and generator loss are genjax's objectives."""
    torch = pytest.importorskip("torch")
    from benchmarks import torch_reference

    built = specs.build(name, 6)
    m = built.config.model_config
    assert m.r1_gamma > 0 and m.d_steps == 1
    raw = built.raw_batches(1)
    one = {k: v[0] for k, v in raw.items()}
    state = init_state(built.task, jax.random.PRNGKey(0), built.prepare(one, jax.random.key(0)))
    batch = built.prepare(one, jax.random.key(1))
    disc_player, gen_player = built.task.players
    k_d, k_g = jax.random.split(jax.random.key(2))
    d_loss, (d_metrics, _) = disc_player.loss(state.params, state.model_state, batch, k_d)
    g_loss, _ = gen_player.loss(state.params, state.model_state, batch, k_g)
    assert float(d_metrics["r1"]) > 0

    twin = torch_reference.build("gan", built.config, built.info, specs.IMAGE_MAX)
    _load_gan_params(twin, state.params)
    x = np.asarray(batch["x"])
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    b = x.shape[0]
    z_d = np.array(jax.random.normal(k_d, (b, m.latent_dim)))
    z_g = np.array(jax.random.normal(k_g, (b, m.latent_dim)))
    got_d = twin.discriminator_loss(torch.from_numpy(x.copy()), torch.from_numpy(z_d))
    got_g = twin.generator_loss(torch.from_numpy(z_g))
    # The networks themselves, on values far from the losses' log 4 at initialisation.
    model = m.objective(built.info).model
    fake = np.asarray(gan.generate(model, state.params["gen"], jnp.asarray(z_g)))
    got_fake = twin.generator(torch.from_numpy(z_g)).detach().numpy()
    if fake.ndim == 4:
        fake = fake.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got_fake, fake, rtol=1e-4, atol=1e-5)
    logits = gan.discriminator_logits(model, state.params["disc"], state.model_state, batch["x"])
    got_logits = twin.discriminator(torch.from_numpy(x.copy())).detach().numpy()
    np.testing.assert_allclose(got_logits, np.asarray(logits), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(got_d.detach()), float(d_loss), rtol=1e-4)
    np.testing.assert_allclose(float(got_g.detach()), float(g_loss), rtol=1e-4)
    with pytest.raises(NotImplementedError, match="R1 needs a double backward"):
        torch_reference.build("gan", built.config, built.info, specs.IMAGE_MAX, compile=True)


def test_slow_rows_cut_their_repeats_to_the_budget_but_not_below_the_minimum():
    common = dict(use_torch=False, use_compile=False, matmul=roofline.Matmul(64))
    cut_budget = timing.Budget(repeats=5, target_s=0.001, row_s=0.0)
    cut = run.measure("ppca", 8, budget=cut_budget, **common)
    assert cut["repeats"] == 3 and len(cut["methods"]["genjax_fused"]["repeat_seconds"]) == 3
    kept_budget = timing.Budget(repeats=5, target_s=0.001, row_s=1e6)
    kept = run.measure("ppca", 8, budget=kept_budget, **common)
    assert kept["repeats"] == 5


def test_budget_bounds_the_steps_and_repeats_of_a_row():
    budget = timing.Budget(repeats=5, target_s=1.0, row_s=10.0, step_range=(2, 400))
    assert budget.steps_for([0.01, 0.1]) == 10  # the slowest method: ceil(1.0 / 0.1)
    assert budget.steps_for([1e-6]) == 400 and budget.steps_for([5.0]) == 2
    assert budget.repeats_for(1.0) == 5 and budget.repeats_for(2.5) == 4
    assert budget.repeats_for(100.0) == budget.min_repeats == 3


def test_throughput_summarises_the_rates_of_the_repeats():
    got = timing.throughput([1.0, 2.0, 4.0], steps=4, batch=8)
    assert got == {
        "steps_per_s": 2.0,
        "examples_per_s": 16.0,
        "steps_per_s_min": 1.0,
        "steps_per_s_max": 4.0,
    }
    assert timing.median_min_max([3.0, 1.0, 2.0], "_s") == {
        "median_s": 2.0,
        "min_s": 1.0,
        "max_s": 3.0,
    }


def test_cycle_off_is_a_named_variant_of_the_cyclevae_entry(tmp_path):
    """``cyclevae_nocycle`` is ``cyclevae`` with ``model.cycle_weight=0``: the same
    parameters, a step without the cycle's pass (no ``cycle_*`` metrics), timed only when
    named."""
    assert "cyclevae" in specs.DEFAULT_RUN and "cyclevae_nocycle" not in specs.DEFAULT_RUN
    on, off = specs.build("cyclevae", 4), specs.build("cyclevae_nocycle", 4)
    assert on.config.model_config.cycle_weight > 0 and off.config.model_config.cycle_weight == 0
    assert dataclasses.replace(on.config.model_config, cycle_weight=0.0) == (
        off.config.model_config
    )
    params_on, _ = _params(on)
    params_off, one = _params(off)
    assert jax.tree.map(np.shape, params_on) == jax.tree.map(np.shape, params_off)
    batch = off.prepare(one, jax.random.key(0))
    objective = off.config.model_config.objective(off.info)
    _, metrics = objective.loss(params_off["model"], batch, jax.random.key(1))
    assert "elbo" in metrics and not any(k.startswith("cycle") for k in metrics)
    out = _run_tiny(tmp_path, "cyclevae_nocycle", batch=4)
    assert not out.get("failed")
    (row,) = out["rows"]
    assert row["model"] == "cyclevae_nocycle"
    assert row["config"]["model_config"]["cycle_weight"] == 0
    assert all(math.isfinite(v) for v in row["final_loss"].values())
    if run.torch_available():
        assert row["torch_num_params"] == row["num_params"]
        assert row["methods"]["torch_eager"]["steps_per_s"] > 0

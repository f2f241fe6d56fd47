"""Smoke test of the unified benchmark (benchmarks/run.py): one tiny configuration.

Timings are never asserted (speed targets live in the benchmark's output); what is checked is
that the runner produces its outputs, that XLA's FLOP count is the hand-computed one for a
matmul, and, when torch is installed, that each PyTorch twin has exactly the genjax model's
parameter count and PPCA's twin computes the same loss from the same parameters.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import roofline, run, specs
from genjax.models import ppca
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


def test_runner_writes_json_table_and_plot(tmp_path):
    out = run.main(
        [
            "--models",
            "ppca",
            "--batch",
            "8",
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
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] and saved["rows"][0]["model"] == "ppca"
    row = out["rows"][0]
    assert row["batch"] == 8 and row["steps_per_repeat"] >= 4
    fused = row["methods"]["genjax_fused"]
    assert len(fused["repeat_seconds"]) == 2 and fused["examples_per_s"] > 0
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

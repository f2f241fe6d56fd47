"""genjax.xla_defaults: the XLA:CPU flags the commands and the suite run with."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest

from genjax import xla_defaults

YNN = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce"
OPTION = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
FIELD = "xla_cpu_experimental_ynn_fusion_type"


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.10.2", (YNN,)), ("0.10.0", (YNN,)), ("0.11.1", ()), ("0.9.3", ()), ("1.0", ())],
)
def test_flags_only_for_the_measured_jaxlib_series(version, expected):
    assert xla_defaults.recommended_flags(version) == expected


@pytest.mark.parametrize(
    ("env", "added", "flags"),
    [
        ({}, (YNN,), YNN),
        ({"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}, (YNN,),
         f"--xla_force_host_platform_device_count=8 {YNN}"),
        # The user's own value of the flag wins.
        ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise"}, (),
         "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise"),
        ({"GENJAX_XLA_DEFAULTS": "0"}, (), None),
        ({"GENJAX_XLA_DEFAULTS": "Off", "XLA_FLAGS": "--a=1"}, (), "--a=1"),
    ],
)  # fmt: skip
def test_apply_adds_the_flags_unless_told_or_already_set(env, added, flags):
    assert xla_defaults.apply(env, jaxlib_version="0.10.2") == added
    assert env.get("XLA_FLAGS") == flags


def test_apply_does_nothing_once_jax_has_started(monkeypatch):
    import jax

    jax.devices()  # the suite's backend is up
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert xla_defaults.apply() == ()
    assert "XLA_FLAGS" not in os.environ


_PROBE = """
import os
import {package}
import jax, jax.numpy as jnp
from jax import lax
x, w = jnp.ones((8, 16, 16, 32)), jnp.ones((3, 3, 32, 64))
dims = ("NHWC", "HWIO", "NHWC")
conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)
loss = lambda x, w: jnp.sum(conv(x, w) ** 2)
hlo = jax.jit(jax.grad(loss, (0, 1))).lower(x, w).compile().as_text()
print(os.environ.get("XLA_FLAGS", ""))
print(hlo.count("__ynn_fusion"))
"""


def _probe(package: str, switch: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GENJAX_XLA_DEFAULTS")}
    if switch:
        env["GENJAX_XLA_DEFAULTS"] = switch
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(package=package)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return out[0], int(out[1])


@pytest.mark.parametrize("package", ["experiments", "benchmarks"])
def test_the_commands_compile_under_the_flags_unless_switched_off(package):
    if xla_defaults.recommended_flags() == ():
        pytest.skip(f"platform: jaxlib {metadata.version('jaxlib')} has no measured flags")
    flags_on, fusions_on = _probe(package, "")
    flags_off, fusions_off = _probe(package, "0")
    assert YNN in flags_on.split() and YNN not in flags_off.split()
    # The flag limits YNNPACK to matrix products: XLA's default also gives it the
    # convolutions, so the compiled program has fewer YNN fusions exactly when it is set.
    assert fusions_on < fusions_off


@pytest.mark.parametrize(
    ("env", "version", "expected"),
    [
        ({}, "0.10.2", {FIELD: OPTION}),
        ({"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}, "0.10.0",
         {FIELD: OPTION}),
        ({"XLA_FLAGS": f"--{FIELD}=dot"}, "0.10.2", {}),  # the user's value wins
        ({"GENJAX_XLA_DEFAULTS": "no"}, "0.10.2", {}),
        ({}, "0.11.0", {}),
    ],
)  # fmt: skip
def test_compiler_options_unless_told_set_or_unmeasured(env, version, expected):
    assert xla_defaults.compiler_options(env, jaxlib_version=version) == expected


# A convolution's gradient and a large row reduction, compiled in a fresh interpreter once
# under the flag form of the settings (XLA_FLAGS, no options) and once under the option form
# (no flags): XLA's own parsers are the oracle that the two spellings mean the same setting
# (the probe tells `individual_dot,reduce` from `individual_dot` and from `dot`).
_FORMS_PROBE = """
import sys
import jax, jax.numpy as jnp
from jax import lax
from genjax import xla_defaults
x, w = jnp.ones((64, 28, 28, 8)), jnp.ones((3, 3, 8, 16))
dims = ("NHWC", "HWIO", "NHWC")
conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)
loss = lambda x, w: jnp.sum(conv(x, w) ** 2)
options = xla_defaults.compiler_options({}) if sys.argv[1] == "options" else None
f = jax.jit(jax.grad(loss, (0, 1)), compiler_options=options)
print(f.lower(x, w).compile().as_text())
a = jnp.ones((512, 784))  # a row reduction of PPCA's size, which YNNPACK takes by default
g = jax.jit(lambda a: jnp.sum(jnp.square(a), axis=1), compiler_options=options)
print(g.lower(a).compile().as_text())
"""


def test_the_flag_and_the_compiler_options_compile_the_same_program():
    flags = xla_defaults.recommended_flags()
    if not flags:
        pytest.skip(f"platform: jaxlib {metadata.version('jaxlib')} has no measured settings")
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GENJAX_XLA_DEFAULTS")}

    def compiled(form: str, env: dict) -> str:
        return subprocess.run(
            [sys.executable, "-c", _FORMS_PROBE, form],
            env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    with_flag = compiled("flag", {**base, "XLA_FLAGS": " ".join(flags)})
    with_options = compiled("options", base)
    default = compiled("flag", base)
    assert with_flag == with_options
    assert with_flag.count("__ynn_fusion") < default.count("__ynn_fusion")


# A fresh interpreter with no XLA flags, so that XLA's own defaults are the reference: the
# engine's step for a model with convolutions and for two without, compiled with the
# engine's default options and with none ({}). Prints, per model, whether the optimised
# programs are identical, and the YNN fusions in each. The shapes are large enough for
# YNNPACK to take the reductions and the convolutions (it declines tiny ones, 8x8 images).
_ENGINE_PROBE = """
import jax, jax.numpy as jnp, optax
from genjax.models import gan, ppca, vae
from genjax.models.base import DataInfo
from genjax.train import Engine, init_state

cases = {
    "ppca": (ppca.PPCAConfig(latent_dim=8), (64,)),
    "vae_mlp": (vae.VAEConfig(hidden=(32,), latent_dim=2), (64,)),
    "vae_conv": (vae.VAEConfig(architecture="conv", hidden=(8, 16), latent_dim=2), (28, 28, 1)),
}
for name, (config, shape) in cases.items():
    task = config.objective(DataInfo(shape=shape)).task(optax.adam(1e-3))
    batch = {"x": jnp.full((64, *shape), 0.5), "label": jnp.zeros((64,), jnp.int32)}
    texts = []
    for options in (None, {}):
        engine = Engine(task, donate=False, compiler_options=options)
        state = engine.place_state(init_state(task, jax.random.PRNGKey(0), batch))
        engine.step(state, batch)
        texts.append(engine._cache["step"].lower(state, batch).compile().as_text())
    fusions = [text.count("__ynn_fusion") for text in texts]
    print(name, texts[0] == texts[1], *fusions)
"""


def test_engine_options_change_only_programs_with_convolutions():
    """With no flags set, the engine's default compiler options leave a model without
    convolutions with exactly XLA's default program, and take the convolutions of one with
    them away from YNNPACK."""
    if not xla_defaults.OPTIONS_BY_JAXLIB.get(".".join(metadata.version("jaxlib").split(".")[:2])):
        pytest.skip(f"platform: jaxlib {metadata.version('jaxlib')} has no measured options")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GENJAX_XLA_DEFAULTS")}
    out = subprocess.run(
        [sys.executable, "-c", _ENGINE_PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    rows = {line.split()[0]: line.split()[1:] for line in out if line.strip()}
    assert rows["ppca"][0] == "True" and rows["vae_mlp"][0] == "True"
    same, with_options, default = rows["vae_conv"]
    assert same == "False"
    assert int(with_options) < int(default)

"""genjax.xla_defaults: the XLA:CPU flags the commands and the suite run with."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest

from genjax import xla_defaults

YNN = "--xla_cpu_experimental_ynn_fusion_type=dot"


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

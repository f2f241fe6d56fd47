"""The XLA:CPU settings genjax runs with: process flags for the commands, and per-program
compiler options for the training engine.

XLA:CPU (jaxlib 0.10) hands three kinds of operation to the YNNPACK kernel library by
default: each matrix product, each convolution and reductions (its
``xla_cpu_experimental_ynn_fusion_type`` is ``individual_dot,individual_convolution,reduce``).
YNNPACK's convolutions are slow on the convolutional models' training steps. The setting here,
``individual_dot,reduce``, is XLA's default without the convolutions, which go to XLA's Eigen
kernels instead:

* the scan-fused steps of the conv VAE, the conv VQ-VAE and the DCGAN ran 1.4-2.1x faster
  on the 2-core development CPU (``python -m benchmarks.xla_options``);
* a program without convolutions compiles to exactly the program XLA's default gives (the
  tests compare the optimised HLO), so PPCA and the MLP models keep their speed and their
  results bit for bit.

Tried and not used: ``dot`` (YNNPACK fuses matrix products with their neighbours, nothing
else) was as fast on the convolutional models, but took reductions away from YNNPACK and
made PPCA's step 1.2-1.4x and the MLP GAN's 1.1x slower; the wider ``dot,eltwise,reduce``
makes XLA refuse some programs (``unsupported layout in YNN fusion``).

Two ways in:

* :func:`apply` adds :func:`recommended_flags` to ``XLA_FLAGS``, for every program of the
  process. The commands (``genjax-train``, ``python -m experiments.*``,
  ``python -m benchmarks.*``, the demo) call it before their first computation; a script
  can call ``genjax.xla_defaults.apply()`` at its top, or set the variable itself::

      XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce python my_script.py

* :func:`compiler_options` gives the same setting as ``jax.jit(...,
  compiler_options=...)``, for one program; :class:`genjax.train.Engine` compiles its
  steps with it on the CPU, so library code that trains through the engine gets it with no
  flag set, whenever JAX started.

Both change nothing when

* ``GENJAX_XLA_DEFAULTS=0`` is set (the switch to measure or run without them),
* ``XLA_FLAGS`` already names the same flag (the user's value wins),
* the installed jaxlib is not a release series these settings were measured on (an XLA that
  does not know a flag aborts the process, so an unknown version gets none), or, for
  :func:`apply` only,
* JAX's backend has already started (the flags would no longer take effect).

The settings concern the CPU compiler only: programs for a GPU or TPU are unchanged.

This module imports nothing from JAX.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

__all__ = [
    "ENV_SWITCH",
    "FLAGS_BY_JAXLIB",
    "OPTIONS_BY_JAXLIB",
    "apply",
    "compiler_options",
    "recommended_flags",
]

#: Set to ``0`` (or ``false``, ``no``, ``off``) to run without genjax's XLA settings.
ENV_SWITCH = "GENJAX_XLA_DEFAULTS"

#: jaxlib release series ("major.minor") -> the settings measured on it, as per-program
#: compiler options (``DebugOptions`` field -> value; enum values by their protobuf names, as
#: ``jax.jit(..., compiler_options=...)`` parses them).
OPTIONS_BY_JAXLIB: dict[str, dict[str, str]] = {
    "0.10": {
        "xla_cpu_experimental_ynn_fusion_type": (
            "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
        )
    },
}

_ENUM_PREFIX = "LIBRARY_FUSION_TYPE_"


def _as_flag(field: str, value: str) -> str:
    """The ``XLA_FLAGS`` spelling of one option: ``--field=v1,v2`` with each enum value's
    short lower-case name (``LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT`` -> ``individual_dot``)."""
    names = [v.removeprefix(_ENUM_PREFIX).lower() for v in value.split(",")]
    return f"--{field}={','.join(names)}"


#: The same settings as ``XLA_FLAGS`` flags (derived from :data:`OPTIONS_BY_JAXLIB`).
FLAGS_BY_JAXLIB: dict[str, tuple[str, ...]] = {
    series: tuple(_as_flag(k, v) for k, v in options.items())
    for series, options in OPTIONS_BY_JAXLIB.items()
}


def _series(jaxlib_version: str | None) -> str | None:
    if jaxlib_version is None:
        try:
            jaxlib_version = metadata.version("jaxlib")
        except metadata.PackageNotFoundError:
            return None
    return ".".join(jaxlib_version.split(".")[:2])


def _switched_off(env) -> bool:
    return env.get(ENV_SWITCH, "").strip().lower() in {"0", "false", "no", "off"}


def _named_in_xla_flags(env) -> set[str]:
    """The flag names (without ``--``) that ``XLA_FLAGS`` in ``env`` sets."""
    return {item.split("=")[0].lstrip("-") for item in env.get("XLA_FLAGS", "").split()}


def recommended_flags(jaxlib_version: str | None = None) -> tuple[str, ...]:
    """The flags for ``jaxlib_version`` (default: the installed jaxlib's), or ``()``.

    Example:
      >>> from genjax import xla_defaults
      >>> xla_defaults.recommended_flags("0.10.2")
      ('--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce',)
      >>> xla_defaults.recommended_flags("0.11.0")  # not measured: nothing
      ()
    """
    return FLAGS_BY_JAXLIB.get(_series(jaxlib_version), ())


def compiler_options(
    environ: dict | None = None, *, jaxlib_version: str | None = None
) -> dict[str, str]:
    """The recommended settings as ``jax.jit(..., compiler_options=...)`` takes them: one
    program compiled with them gets what :func:`apply` gives a whole process. ``{}`` in the
    cases the module docstring lists (``environ`` defaults to ``os.environ``).

    Example:
      >>> from genjax import xla_defaults
      >>> xla_defaults.compiler_options({}, jaxlib_version="0.10.2")[
      ...     "xla_cpu_experimental_ynn_fusion_type"
      ... ].split(",")
      ['LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT', 'LIBRARY_FUSION_TYPE_REDUCE']
      >>> flags = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"}
      >>> xla_defaults.compiler_options(flags, jaxlib_version="0.10.2")  # the user's wins
      {}
    """
    env = os.environ if environ is None else environ
    if _switched_off(env):
        return {}
    named = _named_in_xla_flags(env)
    options = OPTIONS_BY_JAXLIB.get(_series(jaxlib_version), {})
    return {k: v for k, v in options.items() if k not in named}


def _backend_started() -> bool:
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(bridge, "_backends", None))


def apply(environ: dict | None = None, *, jaxlib_version: str | None = None) -> tuple[str, ...]:
    """Adds :func:`recommended_flags` to ``XLA_FLAGS`` in ``environ`` (default
    ``os.environ``), except in the cases the module docstring lists; returns the flags added.

    Example:
      >>> from genjax import xla_defaults
      >>> env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
      >>> xla_defaults.apply(env, jaxlib_version="0.10.2")
      ('--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce',)
      >>> env["XLA_FLAGS"].split()[1]
      '--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce'
      >>> xla_defaults.apply(env, jaxlib_version="0.10.2")  # already there: nothing added
      ()
    """
    env = os.environ if environ is None else environ
    if _switched_off(env):
        return ()
    if environ is None and _backend_started():
        return ()
    current = env.get("XLA_FLAGS", "")
    named = _named_in_xla_flags(env)
    added = tuple(
        flag
        for flag in recommended_flags(jaxlib_version)
        if flag.split("=")[0].lstrip("-") not in named
    )
    if added:
        env["XLA_FLAGS"] = " ".join([*current.split(), *added])
    return added

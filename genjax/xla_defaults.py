"""The XLA:CPU settings genjax's commands run with, set before JAX starts its backend.

XLA:CPU (jaxlib 0.10) can hand its matrix products to the YNNPACK kernel library
(``--xla_cpu_experimental_ynn_fusion_type=dot``) instead of its default Eigen path; on the
convolutional models' training steps this is about 1.7x faster on the 2-core development
CPU, with the same results to float32 rounding (``benchmarks/results/`` has the measured
rows; the whole test suite runs under it). The wider setting ``dot,eltwise,reduce`` is not
used: XLA refuses some programs under it (``unsupported layout in YNN fusion``).

The commands (``genjax-train``, ``python -m experiments.*``, ``python -m benchmarks.*``, the
demo) call :func:`apply` before their first computation. Library users who want the same
speed set the variable themselves before JAX runs anything::

    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=dot python my_script.py

or call ``genjax.xla_defaults.apply()`` at the top of the script. :func:`apply` changes
nothing when

* ``GENJAX_XLA_DEFAULTS=0`` is set (the switch to measure or run without it),
* ``XLA_FLAGS`` already names the same flag (the user's value wins),
* the installed jaxlib is not a release series these flags were measured on (an XLA that
  does not know a flag aborts the process, so an unknown version gets none), or
* JAX's backend has already started (the flags would no longer take effect).

The flags concern the CPU compiler only: programs for a GPU or TPU are unchanged.

This module imports nothing from JAX.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

__all__ = ["ENV_SWITCH", "FLAGS_BY_JAXLIB", "apply", "recommended_flags"]

#: Set to ``0`` (or ``false``, ``no``, ``off``) to run without genjax's XLA settings.
ENV_SWITCH = "GENJAX_XLA_DEFAULTS"

#: jaxlib release series ("major.minor") -> the XLA flags measured on it.
FLAGS_BY_JAXLIB: dict[str, tuple[str, ...]] = {
    "0.10": ("--xla_cpu_experimental_ynn_fusion_type=dot",),
}


def recommended_flags(jaxlib_version: str | None = None) -> tuple[str, ...]:
    """The flags for ``jaxlib_version`` (default: the installed jaxlib's), or ``()``.

    Example:
      >>> from genjax import xla_defaults
      >>> xla_defaults.recommended_flags("0.10.2")
      ('--xla_cpu_experimental_ynn_fusion_type=dot',)
      >>> xla_defaults.recommended_flags("0.11.0")  # not measured: nothing
      ()
    """
    if jaxlib_version is None:
        try:
            jaxlib_version = metadata.version("jaxlib")
        except metadata.PackageNotFoundError:
            return ()
    series = ".".join(jaxlib_version.split(".")[:2])
    return FLAGS_BY_JAXLIB.get(series, ())


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
      ('--xla_cpu_experimental_ynn_fusion_type=dot',)
      >>> env["XLA_FLAGS"]
      '--xla_force_host_platform_device_count=4 --xla_cpu_experimental_ynn_fusion_type=dot'
      >>> xla_defaults.apply(env, jaxlib_version="0.10.2")  # already there: nothing added
      ()
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_SWITCH, "").strip().lower() in {"0", "false", "no", "off"}:
        return ()
    if environ is None and _backend_started():
        return ()
    current = env.get("XLA_FLAGS", "")
    present = {item.split("=")[0] for item in current.split()}
    added = tuple(
        flag for flag in recommended_flags(jaxlib_version) if flag.split("=")[0] not in present
    )
    if added:
        env["XLA_FLAGS"] = " ".join([*current.split(), *added])
    return added

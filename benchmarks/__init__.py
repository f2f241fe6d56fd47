"""Throughput benchmarks (``python -m benchmarks.<name>``), printing JSON.

Importing the package sets genjax's XLA:CPU defaults before JAX starts
(:mod:`genjax.xla_defaults`), so the numbers are those users get; ``GENJAX_XLA_DEFAULTS=0``
measures without them.
"""

from genjax import xla_defaults as _xla_defaults

_xla_defaults.apply()

"""The experiment commands (``python -m experiments.<name>``): genjax's models on the
datasets of the papers, with their published metrics and figures.

Importing the package sets genjax's XLA:CPU defaults before JAX starts
(:mod:`genjax.xla_defaults`), so every command here runs as ``genjax-train`` does.
"""

from genjax import xla_defaults as _xla_defaults

_xla_defaults.apply()

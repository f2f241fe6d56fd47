"""genjax: the classical generative models in JAX/Flax.

Layers (each imports only the ones above it): ``losses`` -> ``nn`` -> ``models`` -> ``data`` ->
``train`` -> ``eval`` -> ``viz``. See ``DESIGN.md`` in the shared folder for the architecture.
"""

__version__ = "0.1.0"

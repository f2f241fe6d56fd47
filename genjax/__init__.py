"""genjax: the classical generative models in JAX/Flax.

Layers (each imports only the ones above it): ``losses`` -> ``nn`` -> ``models`` -> ``data`` ->
``train`` -> ``eval`` -> ``viz``. ``docs/design.md`` in the repository describes the architecture.
"""

__version__ = "0.1.0"


def load_run(workdir):
    """Load a run written by the experiment command (``python -m experiments.train``).

    Returns a ``Run`` with ``config``, ``params``, ``model_state``, ``step``, ``summary`` and the
    model's functions bound to the parameters: ``run.sample(rng, n)`` for every model,
    ``run.encode(x)`` / ``run.reconstruct(x)`` where the model has an encoder, and
    ``run.convert(x, source, target)`` for the Cycle VAE. The experiment registry lives in the
    ``experiments`` package (installed with genjax), imported here on first use.
    """
    from experiments.runs import load_run as _load_run

    return _load_run(workdir)

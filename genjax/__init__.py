"""genjax: the classical generative models in JAX/Flax.

Layers (each imports only the ones above it): ``losses`` -> ``nn`` -> ``task`` -> ``models``
-> ``data`` -> ``train`` -> ``eval`` -> ``viz`` -> ``config`` / ``runs`` / ``cli``.
``docs/design.md`` in the repository describes the architecture.
"""

__version__ = "0.1.0"


def load_run(workdir):
    """Load a run written by the training command (``genjax-train``, or the experiments'
    ``python -m experiments.train``); see :func:`genjax.runs.load_run`.

    Returns a :class:`genjax.runs.Run`: ``config``, ``objective``, ``params``,
    ``model_state``, ``step``, ``summary`` and the model's functions as methods bound to the
    parameters (``run.sample(rng, n)``, ``run.encode(x)``, ...).
    """
    from genjax.runs import load_run as _load_run

    return _load_run(workdir)

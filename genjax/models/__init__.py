"""The model families and their registry.

Each family module (``ppca``, ``vae``, ``gan``, ``vqvae``, ``cyclevae``) follows the contract
of :mod:`genjax.models.base`; the registry maps a family's name to its hyper-parameter class,
which is how a saved run is rebuilt (:func:`genjax.runs.load_run`) and how the command finds
a model::

    >>> from genjax import models
    >>> models.families()
    ['cyclevae', 'gan', 'ppca', 'vae', 'vqvae']
    >>> models.config_class("vae").__name__
    'VAEConfig'
"""

from __future__ import annotations

import importlib

from genjax.models.base import DataInfo, ModelConfig, Objective

__all__ = ["DataInfo", "ModelConfig", "Objective", "config_class", "families"]

# name -> (module, hyper-parameter class); imported on first use so that importing genjax
# stays cheap and a family's import error surfaces only when it is used.
_FAMILIES = {
    "cyclevae": ("genjax.models.cyclevae", "CycleVAEConfig"),
    "gan": ("genjax.models.gan", "GANConfig"),
    "ppca": ("genjax.models.ppca", "PPCAConfig"),
    "vae": ("genjax.models.vae", "VAEConfig"),
    "vqvae": ("genjax.models.vqvae", "VQVAEConfig"),
}


def families() -> list[str]:
    """The registered family names, sorted."""
    return sorted(_FAMILIES)


def config_class(name: str) -> type[ModelConfig]:
    """The hyper-parameter class of family ``name`` (``KeyError`` naming the choices)."""
    if name not in _FAMILIES:
        raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(families())}")
    module, cls = _FAMILIES[name]
    return getattr(importlib.import_module(module), cls)

"""Plain PyTorch versions of the benchmarked models (an optional dependency: torch).

Each twin reads the same resolved ``RunConfig`` as the genjax task (``benchmarks.specs``), so
layer sizes, optimizer, batch and preprocessing match; it runs in float32 on the CPU with
torch's default thread count. ``build(name, config, info, image_max, compile=False)`` returns
a callable train step ``step(raw_batch) -> loss`` over torch tensors
(``common.to_torch_batch``), with ``step.num_params()``. A multi-player twin (the GAN's
discriminator and generator) updates every player in one call and returns the sum of their
losses.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Twin name -> module defining ``build(config, info, image_max, *, compile)``.
TWINS = {
    "ppca": "benchmarks.torch_reference.ppca",
    "vae": "benchmarks.torch_reference.vae",
    "vqvae": "benchmarks.torch_reference.vqvae",
    "gan": "benchmarks.torch_reference.gan",
    "cyclevae": "benchmarks.torch_reference.cyclevae",
}


def build(name: str, config: Any, info: Any, image_max: float, *, compile: bool = False):
    """The train step of twin ``name`` (see the module docstring)."""
    if name not in TWINS:
        raise ValueError(f"unknown PyTorch twin {name!r}; known: {sorted(TWINS)}")
    module = importlib.import_module(TWINS[name])
    return module.build(config, info, image_max, compile=compile)

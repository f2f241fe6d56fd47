"""Settings the VQ-VAE tests share (imported by them; holds no tests)."""

from __future__ import annotations

from genjax.models import vqvae as V

#: A small MLP VQ-VAE: 8 codes of width 4, 3 latents per example, no restarts, no prior phase,
#: a one-block 16-wide prior.
SMALL = dict(
    arch="mlp",
    num_codes=8,
    code_dim=4,
    mlp_hidden=(32,),
    num_latents=3,
    restart_after=0,
    prior_steps=0,
    prior_width=16,
    prior_depth=1,
    prior_heads=2,
)


def small_config(**kw) -> V.VQVAEConfig:
    """The :data:`SMALL` config, updated by ``kw``."""
    return V.VQVAEConfig(**{**SMALL, **kw})

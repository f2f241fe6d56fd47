"""Settings the GAN tests share (imported by them; holds no tests)."""

from __future__ import annotations

from genjax.models import gan

#: A plain GAN: 64-d latent, two 256-unit layers each side, no R1, no EMA (the settings the
#: tests are written against; the config's own defaults are the tuned 2-D recipe).
PLAIN = dict(
    latent_dim=64,
    generator_features=(256, 256),
    discriminator_features=(256, 256),
    r1_gamma=0.0,
    r1_steps=0,
    ema_decay=0.0,
)

#: The small pair the short ring8 trainings use: 4-d latent, two 64-unit layers each side.
RING = dict(latent_dim=4, generator_features=(64, 64), discriminator_features=(64, 64))


def plain_config(**kw) -> gan.GANConfig:
    """A plain config: :data:`PLAIN`, updated by ``kw``."""
    return gan.GANConfig(**{**PLAIN, **kw})

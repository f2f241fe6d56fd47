"""The GAN's training step in PyTorch: one discriminator update, then one generator update,
each with its own Adam, as the two players of ``GANObjective.task`` (``genjax.models.gan``)
running ``discriminator_objective`` and ``generator_objective``.

Networks (``genjax.models.gan``, no batch normalisation):

* ``"mlp"``: generator ``z -> MLP(generator_features + (D,))`` then the ``output`` activation;
  discriminator ``x`` flattened ``-> MLP(discriminator_features + (1,))``;
* ``"dcgan"``: generator ``ConvDecoder`` (``Linear`` projection to an ``H/2^n x W/2^n`` map
  with ``generator_features[0]`` channels, ``n`` stride-2 transposed convolutions, a 3x3
  convolution to ``C`` channels, then ``output``); discriminator ``ConvEncoder`` (``n``
  stride-2 convolutions) then ``Linear(1)``.

Losses from logits: the discriminator minimises ``softplus(-D(x)) + softplus(D(G(z)))``
(``-(log sigmoid D(x) + log(1 - sigmoid D(G(z))))``) plus, with ``r1_gamma > 0``, the R1
penalty ``gamma / 2 * mean_b ||grad_x D(x_b)||^2`` on the real batch (the input gradient from
``torch.autograd.grad(..., create_graph=True)``, so the update back-propagates through it: a
double backward); the generator minimises ``softplus(-D(G(z)))`` (non-saturating) or
``-softplus(D(G(z)))`` (minimax) with a fresh ``z`` and the just-updated discriminator, whose
parameters do not take gradients during that pass. The generated batch of the discriminator's
update is made without a graph (genjax: ``stop_gradient``). With ``ema_decay > 0`` an
exponential moving average of the generator's weights (not parameters, so not counted by
``num_params``) follows every generator update.

One difference in the work done, on purpose: the real and generated batches go through the
discriminator in one call, and the R1 gradient is taken from that call's real logits, as a
PyTorch user writes it; genjax's ``r1_penalty`` runs one more discriminator forward pass on
the real batch for the penalty.

``torch.compile`` (the ``torch_compiled`` column) wraps both networks, but AOTAutograd cannot
take the R1 penalty's double backward, so with ``r1_gamma > 0`` (both benchmark entries)
``build(..., compile=True)`` raises ``NotImplementedError`` and the benchmark reports it.

The step returns the sum of the two players' losses (the discriminator's with R1), the
quantity ``benchmarks.run`` reports for multi-player genjax tasks.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.torch_reference.common import (
    ConvDecoder,
    ConvEncoder,
    mlp,
    optimizer,
    preprocess,
)

_OUTPUTS = {"identity": lambda x: x, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _check(m) -> None:
    unsupported = []
    if m.spectral_norm:
        unsupported.append("spectral_norm=True")
    if m.generator_norm != "none" or m.discriminator_norm != "none":
        unsupported.append(
            f"generator_norm={m.generator_norm!r}, discriminator_norm={m.discriminator_norm!r}"
        )
    if m.output not in _OUTPUTS:
        unsupported.append(f"output={m.output!r}")
    if unsupported:
        raise NotImplementedError(
            "the PyTorch GAN twin has no normalisation layers and no spectral norm; got "
            + ", ".join(unsupported)
        )


class Generator(nn.Module):
    """``z [B, latent_dim] -> x [B, *shape]`` (``shape``: ``(D,)`` or ``(C, H, W)``)."""

    def __init__(self, m, data_shape: tuple[int, ...]):
        super().__init__()
        self.output = _OUTPUTS[m.output]
        if m.architecture == "mlp":
            self.shape = tuple(data_shape)
            size = math.prod(data_shape)
            self.net = mlp([m.latent_dim, *m.generator_features, size], m.generator_activation)
        elif m.architecture == "dcgan":
            h, w, c = data_shape
            self.shape = (c, h, w)
            self.net = ConvDecoder(
                m.latent_dim, (h, w, c), m.generator_features, m.kernel_size, m.generator_activation
            )
        else:
            raise NotImplementedError(f"no PyTorch GAN twin for architecture={m.architecture!r}")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(z).view(z.shape[0], *self.shape))


class Discriminator(nn.Module):
    """``x [B, *shape] -> logits [B]``."""

    def __init__(self, m, data_shape: tuple[int, ...]):
        super().__init__()
        if m.architecture == "mlp":
            size = math.prod(data_shape)
            self.net = nn.Sequential(
                nn.Flatten(),
                mlp([size, *m.discriminator_features, 1], m.discriminator_activation),
            )
        elif m.architecture == "dcgan":
            h, w, c = data_shape
            n = len(m.discriminator_features)
            self.net = nn.Sequential(
                ConvEncoder(c, m.discriminator_features, m.kernel_size, m.discriminator_activation),
                nn.Flatten(),
                nn.Linear(m.discriminator_features[-1] * (h // 2**n) * (w // 2**n), 1),
            )
        else:
            raise NotImplementedError(f"no PyTorch GAN twin for architecture={m.architecture!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


def _optimizer_config(config, learning_rate):
    if learning_rate is None:
        return config
    return dataclasses.replace(config, learning_rate=learning_rate)


class GANStep:
    """One training step: a discriminator update, then (every ``d_steps``-th step) a
    generator update and the EMA. ``step(raw_batch) -> d_loss + g_loss`` (detached).

    Args:
      config: the resolved ``RunConfig`` of the GAN experiment.
      info: the input description (``info.shape``: ``(D,)`` flattened or ``(H, W, C)``).
      image_max: the raw images' largest value.
      compile: wrap both networks with ``torch.compile`` (the optimizers stay eager). Only
        without R1 (``r1_gamma = 0``): AOTAutograd cannot differentiate a compiled graph twice,
        so with R1 this raises ``NotImplementedError`` (the benchmark reports it).
    """

    def __init__(self, config, info, image_max: float, *, compile: bool = False):
        m = config.model_config
        _check(m)
        if compile and m.r1_gamma > 0:
            # torch's own error is "aot_autograd does not currently support double backward"
            # (or, for some graphs, one about donated buffers and create_graph).
            raise NotImplementedError(
                "R1 needs a double backward, which torch.compile does not support; the GAN "
                "twin compiles only with model.r1_gamma=0"
            )
        self.m = m
        self.config = config
        self.image_max = image_max
        shape = tuple(info.shape)
        self.generator = Generator(m, shape)
        self.discriminator = Discriminator(m, shape)
        self.generator.train()
        self.discriminator.train()
        self.g_forward = torch.compile(self.generator) if compile else self.generator
        self.d_forward = torch.compile(self.discriminator) if compile else self.discriminator
        steps = config.train.steps
        self.d_opt, self.d_sched = optimizer(
            _optimizer_config(config.optimizer, m.d_learning_rate),
            self.discriminator.parameters(),
            steps,
        )
        self.g_opt, self.g_sched = optimizer(
            _optimizer_config(config.optimizer, m.g_learning_rate),
            self.generator.parameters(),
            max(steps // m.d_steps, 1),
        )
        self.grad_clip = config.optimizer.grad_clip
        self.ema = (
            [p.detach().clone() for p in self.generator.parameters()] if m.ema_decay > 0 else None
        )
        self.step_count = 0

    def num_params(self) -> int:
        modules = (self.discriminator, self.generator)
        return sum(p.numel() for module in modules for p in module.parameters())

    def r1_active(self) -> bool:
        m = self.m
        return m.r1_gamma > 0 and (m.r1_steps == 0 or self.step_count < m.r1_steps)

    def discriminator_loss(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``mean_b [softplus(-D(x_b)) + softplus(D(G(z_b)))]``, plus
        ``gamma / 2 * mean_b ||grad_x D(x_b)||^2`` while R1 is on."""
        with torch.no_grad():
            fake = self.g_forward(z)
        r1 = self.r1_active()
        real = x.detach().requires_grad_(r1)
        logits = self.d_forward(torch.cat([real, fake]))
        real_logits, fake_logits = logits[: x.shape[0]], logits[x.shape[0] :]
        loss = (F.softplus(-real_logits) + F.softplus(fake_logits)).mean()
        if r1:
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            loss = loss + 0.5 * self.m.r1_gamma * grad.square().flatten(1).sum(1).mean()
        return loss

    def generator_loss(self, z: torch.Tensor) -> torch.Tensor:
        """``mean_b softplus(-D(G(z_b)))`` (non-saturating) or ``-mean_b softplus(D(G(z_b)))``."""
        logits = self.d_forward(self.g_forward(z))
        if self.m.non_saturating:
            return F.softplus(-logits).mean()
        return -F.softplus(logits).mean()

    def _update(self, loss, opt, sched, module) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(module.parameters(), self.grad_clip)
        opt.step()
        if sched is not None:
            sched.step()

    def __call__(self, raw: dict[str, torch.Tensor]) -> torch.Tensor:
        m = self.m
        x = preprocess(raw, self.config.data, self.image_max)
        b = x.shape[0]
        d_loss = self.discriminator_loss(x, torch.randn(b, m.latent_dim))
        self._update(d_loss, self.d_opt, self.d_sched, self.discriminator)

        z = torch.randn(b, m.latent_dim)
        if (self.step_count + 1) % m.d_steps == 0:
            self.discriminator.requires_grad_(False)
            g_loss = self.generator_loss(z)
            self._update(g_loss, self.g_opt, self.g_sched, self.generator)
            self.discriminator.requires_grad_(True)
            if self.ema is not None:
                with torch.no_grad():
                    for e, p in zip(self.ema, self.generator.parameters(), strict=True):
                        e.lerp_(p, 1.0 - m.ema_decay)
        else:  # genjax evaluates the idle generator's loss for its metrics
            with torch.no_grad():
                g_loss = self.generator_loss(z)
        self.step_count += 1
        return (d_loss + g_loss).detach()


def build(config, info, image_max: float, *, compile: bool = False) -> GANStep:
    return GANStep(config, info, image_max, compile=compile)

"""The Cycle VAE's training step in PyTorch: domain-conditioned MLP encoder and decoder, the
direct ELBO plus the ELBO after a round trip through a random other domain, as
``genjax.models.cyclevae.loss`` (which, like this twin, skips the round trip when
``cycle_weight == 0``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.torch_reference.common import TrainStep, gaussian_kl, log_likelihood, mlp


class CycleVAE(nn.Module):
    """``forward(x, raw)``: ``raw["label"]`` is the source domain; returns the mean of
    ``-(direct_weight * ELBO_direct + cycle_weight * ELBO_cycle)``."""

    def __init__(self, m, info):
        super().__init__()
        if m.architecture != "mlp" or m.stop_gradient or m.target_sampling != "others":
            raise NotImplementedError(
                "the PyTorch Cycle VAE twin covers the MLP pair with target_sampling='others' "
                f"and no stop_gradient; got architecture={m.architecture!r}, "
                f"target_sampling={m.target_sampling!r}, stop_gradient={m.stop_gradient}"
            )
        self.m = m
        self.k = int(info.num_classes)
        self.q = m.latent_dim
        self.shape = tuple(info.shape)
        size = math.prod(self.shape)
        hidden = list(m.hidden)
        enc_in = size + (m.embed_dim if m.condition_encoder else 0)
        self.encoder_embed = nn.Embedding(self.k, m.embed_dim) if m.condition_encoder else None
        self.decoder_embed = nn.Embedding(self.k, m.embed_dim)
        self.encoder = mlp([enc_in, *hidden, 2 * self.q], m.activation)
        self.decoder = mlp([self.q + m.embed_dim, *hidden[::-1], size], m.activation)
        self.raw_variance = None
        if m.likelihood == "gaussian" and m.variance != "fixed":
            shape = () if m.variance == "isotropic" else self.shape
            self.raw_variance = nn.Parameter(torch.zeros(shape))

    def encode(self, x, domain):
        h = x.flatten(1)
        if self.encoder_embed is not None:
            h = torch.cat([h, self.encoder_embed(domain)], -1)
        h = self.encoder(h)
        return h[:, : self.q], h[:, self.q :]

    def decode(self, z, domain):
        out = self.decoder(torch.cat([z, self.decoder_embed(domain)], -1))
        return out.view(z.shape[0], *self.shape)

    def forward(self, x: torch.Tensor, raw) -> torch.Tensor:
        m = self.m
        source = raw["label"].long()
        cycle_on = m.cycle_weight != 0
        if cycle_on:
            target = (source + 1 + torch.randint(0, self.k - 1, source.shape)) % self.k
        mean, log_var = self.encode(x, source)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        log_px = log_likelihood(x, self.decode(z, source), m, self.raw_variance)
        direct = log_px - m.beta * gaussian_kl(mean, log_var)
        if not cycle_on:  # the plain conditional VAE: no round trip
            return -(m.direct_weight * direct).mean()
        converted = self.decode(z, target)
        if m.likelihood == "bernoulli":
            converted = torch.sigmoid(converted)
        c_mean, c_log_var = self.encode(converted, target)
        z_cycle = c_mean + torch.exp(0.5 * c_log_var) * torch.randn_like(c_mean)
        cycle_log_px = log_likelihood(x, self.decode(z_cycle, source), m, self.raw_variance)
        cycle_beta = m.beta if m.cycle_beta is None else m.cycle_beta
        cycle = cycle_log_px - cycle_beta * gaussian_kl(c_mean, c_log_var)
        return -(m.direct_weight * direct + m.cycle_weight * cycle).mean()


def build(config, info, image_max: float, *, compile: bool = False) -> TrainStep:
    return TrainStep(CycleVAE(config.model_config, info), config, image_max, compile=compile)

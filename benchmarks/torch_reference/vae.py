"""The VAE's training step in PyTorch: MLP or convolutional encoder/decoder, Bernoulli
or Gaussian likelihood, one reparameterised sample and the analytic KL, as ``genjax.models.vae``."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.torch_reference.common import (
    ConvDecoder,
    ConvEncoder,
    TrainStep,
    gaussian_kl,
    log_likelihood,
    mlp,
)


class VAE(nn.Module):
    """``forward(x) = -(1/B) sum_b [log p(x_b | z_b) - beta KL(q(z | x_b) || N(0, I))]``."""

    def __init__(self, m, info):
        super().__init__()
        if m.free_bits or m.warmup_steps:
            raise NotImplementedError(
                "the PyTorch VAE twin has no free bits or KL warm-up; got "
                f"free_bits={m.free_bits}, warmup_steps={m.warmup_steps}"
            )
        self.m = m
        q, hidden = m.latent_dim, list(m.hidden)
        self.q, self.beta = q, m.beta
        if m.architecture == "mlp":
            size = 1
            for s in info.shape:
                size *= s
            self.encoder = mlp([size, *hidden, 2 * q], m.activation)
            self.decoder = mlp([q, *hidden[::-1], size], m.activation)
        elif m.architecture == "conv":
            h, w, c = info.shape
            n = len(hidden)
            self.encoder = nn.Sequential(
                ConvEncoder(c, hidden, m.kernel_size, m.activation),
                nn.Flatten(),
                nn.Linear(hidden[-1] * (h // 2**n) * (w // 2**n), 2 * q),
            )
            self.decoder = ConvDecoder(q, info.shape, hidden[::-1], m.kernel_size, m.activation)
        else:
            raise NotImplementedError(f"no PyTorch twin for architecture={m.architecture!r}")
        self.raw_variance = None
        if m.likelihood == "gaussian" and m.variance != "fixed":
            shape = () if m.variance == "isotropic" else tuple(info.shape)
            self.raw_variance = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor, raw=None) -> torch.Tensor:
        del raw
        h = self.encoder(x)
        mean, log_var = h[:, : self.q], h[:, self.q :]
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        out = self.decoder(z).view(x.shape)
        log_px = log_likelihood(x, out, self.m, self.raw_variance)
        return -(log_px - self.beta * gaussian_kl(mean, log_var)).mean()


def build(config, info, image_max: float, *, compile: bool = False) -> TrainStep:
    return TrainStep(VAE(config.model_config, info), config, image_max, compile=compile)

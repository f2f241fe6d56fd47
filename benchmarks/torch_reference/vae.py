"""The VAE's training step in PyTorch: MLP or convolutional encoder/decoder, Bernoulli
or Gaussian likelihood, one reparameterised sample and the analytic KL, as ``genjax.models.vae``."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.torch_reference.common import (
    TrainStep,
    activation,
    gaussian_kl,
    log_likelihood,
    mlp,
    same_padding,
)


class ConvEncoder(nn.Sequential):
    """``genjax.nn.ConvEncoder``: stride-2 ``k x k`` convolutions, each followed by ``act``."""

    def __init__(self, in_channels: int, features, kernel_size: int, act: str):
        pad = same_padding(kernel_size)
        layers: list[nn.Module] = []
        for width in features:
            layers += [nn.Conv2d(in_channels, width, kernel_size, 2, pad), activation(act)]
            in_channels = width
        super().__init__(*layers)


class ConvDecoder(nn.Module):
    """``genjax.nn.ConvDecoder`` for a vector input: ``Linear`` to a ``features[0]``-channel
    map at ``1 / 2^n`` of the image size, ``n`` stride-2 transposed convolutions, and a
    stride-1 3 x 3 output convolution."""

    def __init__(self, latent_dim: int, image_shape, features, kernel_size: int, act: str):
        super().__init__()
        h, w, c = image_shape
        n = len(features)
        self.start = (features[0], h // 2**n, w // 2**n)
        self.project = nn.Linear(latent_dim, features[0] * self.start[1] * self.start[2])
        self.act = activation(act)
        pad = same_padding(kernel_size)
        layers: list[nn.Module] = []
        in_channels = features[0]
        for width in features:
            layers += [nn.ConvTranspose2d(in_channels, width, kernel_size, 2, pad), activation(act)]
            in_channels = width
        layers.append(nn.Conv2d(in_channels, c, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.act(self.project(z)).view(z.shape[0], *self.start)
        return self.body(h)


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

"""PPCA's gradient step in PyTorch: the exact marginal likelihood through the q x q matrix
``M = sigma2 I + W^T W`` (Woodbury and the determinant lemma), as ``genjax.losses``."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks.torch_reference.common import TrainStep
from genjax.models.ppca import SIGMA2_FLOOR


class PPCA(nn.Module):
    """``forward(x) = -(1/B) sum_b log N(x_b; mu, W W^T + sigma2 I)``; ``sigma2 =
    softplus(raw) + floor``, the same parameterisation as ``genjax.models.ppca.PPCA``."""

    def __init__(self, data_dim: int, latent_dim: int, floor: float = SIGMA2_FLOOR):
        super().__init__()
        self.floor = floor
        self.W = nn.Parameter(torch.randn(data_dim, latent_dim) / math.sqrt(latent_dim))
        self.mu = nn.Parameter(torch.zeros(data_dim))
        start = 1.0 - floor
        self.raw = nn.Parameter(torch.tensor(start + math.log(-math.expm1(-start))))

    def forward(self, x: torch.Tensor, raw=None) -> torch.Tensor:
        del raw
        d, q = self.W.shape
        sigma2 = F.softplus(self.raw) + self.floor
        m = sigma2 * torch.eye(q) + self.W.T @ self.W
        chol = torch.linalg.cholesky(m)
        residual = x - self.mu
        b = torch.cholesky_solve((residual @ self.W).T, chol).T
        log_det = (d - q) * torch.log(sigma2) + 2.0 * torch.log(torch.diagonal(chol)).sum()
        quad = (residual - b @ self.W.T).square().sum(-1) / sigma2 + b.square().sum(-1)
        return 0.5 * (d * math.log(2 * math.pi) + log_det + quad).mean()


def build(config, info, image_max: float, *, compile: bool = False) -> TrainStep:
    (d,) = info.shape
    return TrainStep(PPCA(d, config.model_config.latent_dim), config, image_max, compile=compile)

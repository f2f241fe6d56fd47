"""The VQ-VAE's training step in PyTorch: the convolutional encoder/decoder with residual
stacks, nearest-code quantisation with the straight-through gradient, and the EMA codebook
with dead-code restarts, as ``genjax.models.vqvae`` (``Objective.loss``).

The codebook state follows the genjax update: EMA of the per-batch assignment fractions and
sums, ``last_used`` per code, codes unused for ``restart_after`` updates re-initialised from a
reservoir of the previous batch's encoder outputs, then the reservoir refilled. The per-batch
perplexity and code usage are computed every step, as the genjax loss reports them.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.torch_reference.common import TrainStep, same_padding


class ResidualStack(nn.Module):
    """``genjax.nn.ResidualStack``: ``n`` blocks ``x + Conv1x1(relu(Conv3x3(relu(x))))``,
    then a ReLU."""

    def __init__(self, channels: int, num_blocks: int, hidden: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(),
                nn.Conv2d(channels, hidden, 3, 1, 1),
                nn.ReLU(),
                nn.Conv2d(hidden, channels, 1),
            )
            for _ in range(num_blocks)
        )

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return torch.relu(x)


class VQVAE(nn.Module):
    def __init__(self, m, info):
        super().__init__()
        if m.arch != "conv":
            raise NotImplementedError(f"the PyTorch VQ-VAE twin is the conv pair, got {m.arch!r}")
        self.m = m
        c = info.shape[-1]
        s, hidden, k, d = m.num_stages, m.hidden, m.num_codes, m.code_dim
        pad = same_padding(4)
        enc: list[nn.Module] = []
        channels = c
        for _ in range(s):
            enc += [nn.Conv2d(channels, hidden, 4, 2, pad), nn.ReLU()]
            channels = hidden
        enc += [
            nn.Conv2d(hidden, hidden, 3, 1, 1),
            ResidualStack(hidden, m.num_res_blocks, m.res_hidden),
            nn.Conv2d(hidden, d, 1),
        ]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [
            nn.Conv2d(d, hidden, 3, 1, 1),
            ResidualStack(hidden, m.num_res_blocks, m.res_hidden),
        ]
        channels = hidden
        for width in (hidden,) * (s - 1) + (hidden // 2,):
            dec += [nn.ConvTranspose2d(channels, width, 4, 2, pad), nn.ReLU()]
            channels = width
        dec.append(nn.Conv2d(channels, c, 3, 1, 1))
        self.decoder = nn.Sequential(*dec)

        init = (torch.rand(k, d) * 2 - 1) / k
        if m.rule == "loss":
            self.codebook = nn.Parameter(init)
        else:
            self.register_buffer("cluster_size", torch.full((k,), 1.0 / k))
            self.register_buffer("embed_sum", init / k)
        self.reservoir_size = (m.reservoir_size or k) if m.restart_after else 0
        self.register_buffer("reservoir", torch.zeros(self.reservoir_size, d))
        self.register_buffer("last_used", torch.zeros(k, dtype=torch.long))
        self.register_buffer("data_variance", torch.tensor(-1.0))
        # A tensor, not a Python int: torch.compile specialises on integer module attributes
        # and recompiled the step at every update (hitting its recompile limit).
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.metrics: dict[str, torch.Tensor] = {}

    def current_codebook(self) -> torch.Tensor:
        if self.m.rule == "loss":
            return self.codebook
        total = self.cluster_size.sum()
        k = self.cluster_size.shape[0]
        smoothed = (self.cluster_size + self.m.epsilon) / (total + k * self.m.epsilon) * total
        return self.embed_sum / smoothed[:, None]

    @torch.no_grad()
    def update_state(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        m, n = self.m, flat.shape[0]
        k = self.last_used.shape[0]
        counts = torch.bincount(idx, minlength=k).float()
        incoming_last_used = self.last_used.clone()
        if m.rule == "ema":
            sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, flat)
            self.cluster_size.mul_(m.decay).add_(counts / n, alpha=1 - m.decay)
            self.embed_sum.mul_(m.decay).add_(sums / n, alpha=1 - m.decay)
        self.last_used[idx] = self.step
        if m.restart_after:
            # No restart at the first step: the reservoir holds the previous batch's outputs.
            dead = ((self.step - incoming_last_used) >= m.restart_after) & (self.step > 0)
            rank = torch.cumsum(dead.long(), 0) - 1
            perm = torch.randperm(self.reservoir_size)
            candidates = self.reservoir[perm[rank % self.reservoir_size]]
            mass = self.cluster_size.sum() / k
            self.cluster_size[dead] = mass
            self.embed_sum[dead] = candidates[dead] * mass
            self.last_used[dead] = self.step
            self.reservoir.copy_(flat[torch.randint(0, n, (self.reservoir_size,))])
        probs = counts / n
        self.metrics = {
            "perplexity": torch.exp(-(probs * torch.log(probs + 1e-10)).sum()),
            "usage": (counts > 0).float().mean(),
        }
        self.step.add_(1)

    def forward(self, x: torch.Tensor, raw=None) -> torch.Tensor:
        del raw
        m = self.m
        if self.data_variance < 0:  # the first batch's per-value variance, as genjax
            self.data_variance.fill_(x.var(unbiased=False).clamp_min(1e-8))
        z_e = self.encoder(x)  # [B, D, h, w]
        b, d = z_e.shape[:2]
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        codebook = self.current_codebook()
        with torch.no_grad():
            fd, cb = flat.detach(), codebook.detach()
            dist = fd.square().sum(-1, keepdim=True) - 2 * fd @ cb.T + cb.square().sum(-1)
            idx = dist.argmin(-1)
        z_q = codebook[idx].view(b, *z_e.shape[2:], d).permute(0, 3, 1, 2)
        z_q_st = z_e + (z_q - z_e).detach()
        x_hat = self.decoder(z_q_st)
        mse = (x_hat - x).square().flatten(1).mean(-1)
        latent_size = z_e[0].numel()
        total = mse / self.data_variance
        total = total + m.beta * (z_e - z_q.detach()).square().flatten(1).sum(-1) / latent_size
        if m.rule == "loss":
            total = total + (z_e.detach() - z_q).square().flatten(1).sum(-1) / latent_size
        if self.training:
            self.update_state(flat.detach(), idx)
        return total.mean()


def build(config, info, image_max: float, *, compile: bool = False) -> TrainStep:
    return TrainStep(VQVAE(config.model_config, info), config, image_max, compile=compile)

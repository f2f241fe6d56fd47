"""What every PyTorch twin shares: preprocessing, activations, optimizers, the train step.

Written the way a PyTorch user writes a training loop (eager mode, float32, the library's
default thread count, ``model.train()``, ``optimizer.zero_grad(set_to_none=True)``,
``loss.backward()``, ``optimizer.step()``, a ``LambdaLR`` stepped once per step when the
config decays the learning rate). ``torch.compile`` is applied to the module, whose
``forward`` returns the scalar loss, so the compiled graph holds the model and the loss (and,
through AOTAutograd, their backward); the optimizer runs eagerly as in the tutorial usage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from genjax.config import DataConfig, OptimizerConfig

#: Activation names of ``genjax.nn.ACTIVATIONS``, as torch modules with the same definition.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "gelu": lambda: nn.GELU(approximate="tanh"),  # jax.nn.gelu's default is the tanh form
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def mlp(sizes: list[int], act: str) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``sizes`` (no activation on the output), as
    ``genjax.nn.MLP``."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


def same_padding(kernel_size: int) -> int:
    """Symmetric padding that makes a stride-2 convolution of an even size halve it and a
    stride-2 transposed convolution double it, as XLA's ``"SAME"`` does for even kernels."""
    if kernel_size % 2 or kernel_size < 2:
        raise ValueError(
            f"the PyTorch twin needs an even kernel_size >= 2 for symmetric 'SAME' padding "
            f"of stride-2 layers, got {kernel_size}"
        )
    return (kernel_size - 2) // 2


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


def log_likelihood(x: torch.Tensor, out: torch.Tensor, m: Any, raw_variance=None) -> torch.Tensor:
    """``log p(x | out)`` per example, ``[B]``, as ``genjax.losses``: Bernoulli from logits,
    or Gaussian with ``m.variance`` fixed / isotropic / pixel (``sigma2 = min_variance +
    exp(raw_variance)`` when learned)."""
    if m.likelihood == "bernoulli":
        return (x * out - F.softplus(out)).flatten(1).sum(-1)
    if m.variance == "fixed":
        log_var = torch.tensor(math.log(m.fixed_variance))
    else:
        log_var = torch.logaddexp(raw_variance, torch.tensor(math.log(m.min_variance)))
    terms = math.log(2 * math.pi) + log_var + (x - out).square() * torch.exp(-log_var)
    return -0.5 * terms.flatten(1).sum(-1)


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(log_var)) || N(0, I))`` per example, ``[B]``."""
    return 0.5 * (torch.expm1(log_var) - log_var + mean.square()).sum(-1)


def to_torch_batch(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Host numpy raw batch (``image`` uint8 NHWC) -> torch tensors, images NCHW as a torch
    data loader delivers them."""
    out = {}
    for key, value in raw.items():
        t = torch.from_numpy(value)
        if key == "image":
            t = t.movedim(-1, -3).contiguous()  # [..., H, W, C] -> [..., C, H, W]
        out[key] = t
    return out


def preprocess(raw: dict[str, torch.Tensor], data: DataConfig, image_max: float) -> torch.Tensor:
    """``genjax.data.preprocess`` for images, in torch: scale, binarise, flatten."""
    x = raw["image"].float()
    if data.scale or data.binarize != "none":
        x = x / image_max
    if data.binarize == "static":
        x = (x >= data.threshold).float()
    elif data.binarize == "dynamic":
        x = torch.bernoulli(x)
    if data.flatten:
        x = x.flatten(1)
    return x


def optimizer(
    config: OptimizerConfig, params, total_steps: int
) -> tuple[torch.optim.Optimizer, Any]:
    """The torch optimizer (and ``LambdaLR`` or None) matching ``config.build(total_steps)``."""
    params = list(params)
    lr = config.learning_rate
    if config.name == "adam":
        opt = torch.optim.Adam(params, lr=lr, betas=(config.b1, config.b2), eps=1e-8)
    elif config.name == "adamw":
        opt = torch.optim.AdamW(
            params, lr=lr, betas=(config.b1, config.b2), eps=1e-8, weight_decay=config.weight_decay
        )
    elif config.name == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-8)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=config.b1)
    warmup = config.warmup_steps
    if config.cosine_decay:
        decay = max(total_steps, warmup + 1)

        def factor(step: int) -> float:
            if step < warmup:
                return step / max(warmup, 1)
            t = min(step - warmup, decay - warmup) / (decay - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * t))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
    if warmup:
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / warmup))
    return opt, None


class TrainStep:
    """One optimizer step of a module whose ``forward(x, raw)`` returns the scalar loss.

    Args:
      module: the model; its ``forward(x, raw)`` gets the preprocessed input and the raw batch
        (for labels) and returns the mean loss.
      config: the resolved ``RunConfig`` (optimizer, data, train.steps).
      image_max: the raw images' largest value.
      compile: wrap the module with ``torch.compile`` (the optimizer stays eager).
    """

    def __init__(self, module: nn.Module, config, image_max: float, *, compile: bool = False):
        self.module = module
        self.module.train()
        self.forward = torch.compile(module) if compile else module
        self.config = config
        self.image_max = image_max
        self.optimizer, self.scheduler = optimizer(
            config.optimizer, module.parameters(), config.train.steps
        )
        self.grad_clip = config.optimizer.grad_clip

    def num_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def __call__(self, raw: dict[str, torch.Tensor]) -> torch.Tensor:
        x = preprocess(raw, self.config.data, self.image_max)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.forward(x, raw)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss

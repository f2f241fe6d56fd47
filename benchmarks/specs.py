"""What the unified benchmark measures: one entry per model, built the way training builds it.

Each :class:`BenchSpec` names a model of the experiment command (``experiments/models/*.py``),
the dataset config whose layer sizes it uses, and ``--set`` overrides on top of that config
(for example the convolutional VAE is the VAE's MNIST config with ``model.architecture=conv``).
:func:`build` resolves it exactly as ``python -m experiments.train`` would: the model's own
``RunConfig`` factory, ``genjax.config.apply_overrides``, the library objective's
``run_task`` (``config.model_config.objective(info)``; so the benchmark times the same
``genjax.train.Task`` that training runs) and the same jitted
``prepare`` (``genjax.data.preprocess`` with the config's ``Preprocess``) inside the step.

The data are synthetic: uniform random ``uint8`` images of MNIST's shape (28 x 28 x 1) and
random labels, generated on the host from a fixed seed. Step throughput does not depend on
pixel values, and the benchmark must run offline; MNIST-sized inputs (not the 8 x 8 digits)
make the matmuls and convolutions large enough to say something about the hardware.

Each entry also names its PyTorch twin in :mod:`benchmarks.torch_reference`, which reads the
same resolved config, so layer sizes, optimizer and batch are the same on both sides.

A few entries are variants of another (``cyclevae_nocycle``: ``cyclevae`` without its cycle);
they are timed when named (``--models``) and left out of a run that names none
(:data:`DEFAULT_RUN`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from experiments import registry
from genjax.config import RunConfig, apply_overrides
from genjax.data import preprocess
from genjax.train import Task

#: The synthetic images: MNIST's shape and pixel range.
IMAGE_SHAPE = (28, 28, 1)
IMAGE_MAX = 255
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """One model of the benchmark.

    Attributes:
      name: the entry's name on the command line and in the tables.
      model: the experiment command's model name (``experiments.registry``).
      dataset: whose ``RunConfig`` factory gives the layer sizes and optimizer.
      overrides: ``section.key=value`` changes applied on top (as ``--set`` would).
      torch_twin: the PyTorch reference's name in ``benchmarks.torch_reference.TWINS``.
      description: one line for the tables.
      task: ``(config, info) -> Task`` when the step is not the one the command trains
        (``None``: ``config.model_config.objective(info).run_task(...)``).
      default: timed by a run that names no models (``False`` for a variant of another entry).
    """

    name: str
    model: str
    dataset: str
    overrides: tuple[str, ...]
    torch_twin: str
    description: str
    task: Callable[[RunConfig, registry.DataInfo], Task] | None = None
    default: bool = True


def _vqvae_task(config: RunConfig, info: registry.DataInfo) -> Task:
    """The VQ-VAE alone: ``VQVAEObjective.task`` of the run's model config with
    ``prior_steps=0`` (the same VQ-VAE, loss and codebook state as the run's first phase).

    The command's task (``run_task``) adds a second player, the code prior, trained in a later
    phase; the benchmark times the VQ-VAE's own update (encoder, quantiser with the EMA
    codebook and dead-code restarts, decoder), as in the model's docstring.
    """
    model_config = dataclasses.replace(config.model_config, prior_steps=0)
    return model_config.objective(info).task(config.optimizer.build(config.train.steps))


SPECS: dict[str, BenchSpec] = {
    s.name: s
    for s in (
        BenchSpec(
            "ppca",
            "ppca",
            "mnist",
            (),
            "ppca",
            "PPCA gradient step: exact marginal likelihood, 784-d, q=32, Adam",
        ),
        BenchSpec(
            "vae_mlp",
            "vae",
            "mnist",
            (),
            "vae",
            "VAE, MLP 784-200-200-(2x50), tanh, Bernoulli, dynamic binarisation, Adam",
        ),
        BenchSpec(
            "vae_conv",
            "vae",
            "mnist",
            ("model.architecture=conv", "model.hidden=32,64", "data.flatten=false"),
            "vae",
            "VAE, conv 32-64 stride-2 (4x4) / transposed, 50-d latent, Bernoulli, Adam",
        ),
        BenchSpec(
            "vqvae_conv",
            "vqvae",
            "mnist",
            (),
            "vqvae",
            "VQ-VAE, conv 64-64 + 2 residual blocks, 7x7 map of K=512 codes (D=32), EMA "
            "codebook with dead-code restarts, Adam",
            task=_vqvae_task,
        ),
        BenchSpec(
            "gan_mlp",
            "gan",
            "mnist",
            (
                "model.architecture=mlp",
                "model.generator_features=256,256",
                "model.discriminator_features=256,256",
                "model.d_steps=1",
                "data.flatten=true",
            ),
            "gan",
            "GAN, MLP G 64-256-256-784 (ReLU, sigmoid) / D 784-256-256-1 (leaky ReLU 0.2); "
            "one step = one D + one G update (Adam each); D: non-saturating loss + R1 "
            "(gamma=1, input gradient on real data, double backward); G-weight EMA",
        ),
        BenchSpec(
            "gan_dcgan",
            "gan",
            "mnist",
            ("model.d_steps=1",),
            "gan",
            "DCGAN 28x28, no batch norm: G Dense 64->7x7x128, 4x4 stride-2 deconv 128-64 (ReLU), "
            "3x3 conv, sigmoid / D 4x4 stride-2 conv 64-128 (leaky ReLU 0.2), Dense 1; one step "
            "= one D + one G update (Adam each); D: non-saturating loss + R1 (gamma=1, double "
            "backward); G-weight EMA",
        ),
        BenchSpec(
            "cyclevae",
            "cyclevae",
            "digits",
            (),
            "cyclevae",
            "Cycle VAE, MLP 256-256 with 16-d domain embeddings (10 domains), 8-d latent, "
            "Gaussian, direct + cycle ELBO, Adam",
        ),
        BenchSpec(
            "cyclevae_nocycle",
            "cyclevae",
            "digits",
            ("model.cycle_weight=0",),
            "cyclevae",
            "cyclevae with cycle_weight=0: the plain conditional VAE (one encoder and one "
            "decoder pass, no cycle), so the cycle's cost is the ratio of the two",
            default=False,
        ),
    )
}

#: The entries a run that names no models times.
DEFAULT_RUN = tuple(name for name, spec in SPECS.items() if spec.default)


def available() -> list[str]:
    """The entries whose model is registered in the experiment command."""
    known = set(registry.model_names())
    return [name for name, spec in SPECS.items() if spec.model in known]


@dataclasses.dataclass
class Built:
    """A spec resolved for one batch size.

    Attributes:
      spec: the entry.
      config: the resolved run config (``train.batch_size`` set to the batch).
      info: the input description the objective was built for.
      task: the engine's task (see :attr:`BenchSpec.task`).
      prepare: the jittable ``(raw_batch, rng) -> batch`` run inside the step.
      batch_size: examples per step.
    """

    spec: BenchSpec
    config: RunConfig
    info: registry.DataInfo
    task: Task
    prepare: Callable[[dict, jax.Array], dict]
    batch_size: int

    def raw_batches(self, num_steps: int, seed: int = 0) -> dict[str, np.ndarray]:
        """``num_steps`` raw batches stacked: ``{"image": uint8 [T, B, 28, 28, 1],
        "label": int32 [T, B]}``, a function of ``seed`` only."""
        gen = np.random.default_rng(seed)
        shape = (num_steps, self.batch_size)
        return {
            "image": gen.integers(0, IMAGE_MAX + 1, (*shape, *IMAGE_SHAPE), dtype=np.uint8),
            "label": gen.integers(0, NUM_CLASSES, shape, dtype=np.int32),
        }


def resolve_config(spec: BenchSpec, batch_size: int) -> RunConfig:
    """The spec's ``RunConfig`` with its overrides and ``train.batch_size = batch_size``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    model_spec = registry.get(spec.model)
    if spec.dataset not in model_spec.configs:
        raise ValueError(
            f"benchmark {spec.name!r}: model {spec.model!r} has no {spec.dataset!r} config "
            f"(it has {sorted(model_spec.configs)})"
        )
    config = model_spec.configs[spec.dataset]()
    return apply_overrides(config, [*spec.overrides, f"train.batch_size={batch_size}"])


def build(name: str, batch_size: int) -> Built:
    """Resolve the entry ``name`` for ``batch_size`` (see the module docstring)."""
    if name not in SPECS:
        raise ValueError(f"unknown benchmark model {name!r}; known: {sorted(SPECS)}")
    spec = SPECS[name]
    if spec.model not in registry.model_names():
        raise ValueError(
            f"benchmark {name!r} needs the experiment model {spec.model!r}, which is not "
            f"registered (registered: {registry.model_names()})"
        )
    config = resolve_config(spec, batch_size)
    data_spec = config.data.preprocess()

    def prepare(raw: dict, rng: jax.Array) -> dict:
        return preprocess(raw, rng, data_spec, IMAGE_MAX)

    example = {
        "image": np.zeros((1, *IMAGE_SHAPE), np.uint8),
        "label": np.zeros((1,), np.int32),
    }
    x = jax.eval_shape(prepare, example, jax.random.PRNGKey(0))["x"]  # shapes only
    info = registry.DataInfo(
        name=config.dataset,
        shape=tuple(int(d) for d in x.shape[1:]),
        num_classes=NUM_CLASSES,
        image_shape=IMAGE_SHAPE,
    )
    if spec.task is not None:
        task = spec.task(config, info)
    else:  # what the command trains: the library objective's task for the run's optimizer
        objective = config.model_config.objective(info)
        task = objective.run_task(config.optimizer.build, config.train.steps)
    return Built(spec, config, info, task, prepare, batch_size)


def describe(built: Built) -> dict[str, Any]:
    """The resolved settings that fix the work of a step (for the JSON output)."""
    config = built.config
    return {
        "model": built.spec.model,
        "dataset_config": built.spec.dataset,
        "overrides": list(built.spec.overrides),
        "input_shape": list(built.info.shape),
        "model_config": dataclasses.asdict(config.model_config),
        "optimizer": dataclasses.asdict(config.optimizer),
        "data": dataclasses.asdict(config.data),
    }

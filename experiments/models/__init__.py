"""The experiment command's models: per-dataset run configurations and evaluations."""

from __future__ import annotations

from genjax.train import TrainConfig


def schedule(
    steps: int,
    batch_size: int,
    every: int,
    *,
    checkpoint_every: int,
    eval_every: int = 0,
    fuse_steps: int | None = None,
    data_on_device: bool = True,
) -> TrainConfig:
    """The training schedule of an experiment: ``steps`` updates on batches of ``batch_size``,
    a metric line every ``every`` steps, each ``fuse_steps`` (default ``every``) fused into one
    compiled ``lax.scan``, evaluations every ``eval_every`` steps (0: at the end only) and
    checkpoints every ``checkpoint_every``; the training set held on the device unless
    ``data_on_device=False``."""
    return TrainConfig(
        steps=steps,
        batch_size=batch_size,
        fuse_steps=every if fuse_steps is None else fuse_steps,
        data_on_device=data_on_device,
        log_every=every,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
    )

"""How a model plugs into the engine: players, their losses and optimizers.

A *task* is what the engine trains. In the simplest case it is two pure functions and an
optimizer::

    init(rng, example_batch) -> params
    loss(params, batch, rng) -> (scalar_loss, metrics_dict)

Several *players* (a GAN's discriminator and generator) each own a slice of the parameters,
an optimizer and a loss; the engine updates them one after the other inside the same compiled
step, so alternating k:1 schedules are an option of the same engine rather than a second loop.

Non-gradient state (EMA codebooks, an EMA of the generator's weights, usage counters) travels
beside the parameters: a stateful loss takes it and returns its new value, and an optional
``post_update`` hook sees the freshly updated parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import optax

PyTree = Any
Metrics = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Player:
    """One set of parameters with its own loss and optimizer.

    Attributes:
      name: key of this player's parameters in the task's parameter dict.
      loss: ``(params, batch, rng) -> (loss, metrics)`` where ``params`` is the dict of *all*
        players' parameters (the gradient is taken only with respect to ``params[name]``), or,
        when ``stateful``, ``(params, model_state, batch, rng) -> (loss, (metrics,
        new_model_state))``. The loss must be the mean over the batch's examples, so that
        data-parallel gradient averaging equals the global-batch gradient.
      optimizer: an optax gradient transformation for this player's parameters.
      every: update this player on steps ``s`` with ``(s + 1) % every == 0``; a discriminator
        with ``every=1`` and a generator with ``every=k`` gives k:1 alternation, each update
        on its own batch.
      stateful: whether ``loss`` reads and returns the non-gradient model state.
    """

    name: str
    loss: Callable[..., Any]
    optimizer: optax.GradientTransformation
    every: int = 1
    stateful: bool = False

    def __post_init__(self):
        if not self.name:
            raise ValueError("Player.name must be a non-empty string")
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"Player {self.name!r}: every must be an int >= 1, got {self.every!r}")


@dataclasses.dataclass(frozen=True)
class Task:
    """Everything the engine needs to train a model.

    Attributes:
      init: ``(rng, example_batch) -> dict[player_name, params]``.
      players: the players, updated in this order within a step.
      init_model_state: optional ``(rng, example_batch, params) -> model_state``.
      post_update: optional ``(params, model_state, step) -> model_state``, run after the
        players' updates of a step (for example an EMA of a generator's weights).
    """

    init: Callable[[Any, Any], dict[str, PyTree]]
    players: tuple[Player, ...]
    init_model_state: Callable[[Any, Any, Any], PyTree] | None = None
    post_update: Callable[[Any, Any, Any], PyTree] | None = None

    def __post_init__(self):
        if not self.players:
            raise ValueError("Task needs at least one Player")
        names = [p.name for p in self.players]
        if len(set(names)) != len(names):
            raise ValueError(f"Task players must have distinct names, got {names}")

    @property
    def single(self) -> bool:
        return len(self.players) == 1 and self.players[0].name == SINGLE

    @classmethod
    def from_loss(
        cls,
        init: Callable[[Any, Any], PyTree],
        loss: Callable[..., Any],
        optimizer: optax.GradientTransformation,
        *,
        stateful: bool = False,
        init_model_state: Callable[[Any, Any, Any], PyTree] | None = None,
        post_update: Callable[[Any, Any, Any], PyTree] | None = None,
    ) -> Task:
        """A one-player task from ``init(rng, batch) -> params`` and ``loss(params, ...)``.

        The parameters are stored under the key ``"model"``; ``loss`` and the hooks receive
        the model's own parameters, not the dict.
        """

        if stateful:

            def player_loss(params, state, batch, rng):
                return loss(params[SINGLE], state, batch, rng)
        else:

            def player_loss(params, batch, rng):
                return loss(params[SINGLE], batch, rng)

        state_init = None
        if init_model_state is not None:

            def state_init(rng, batch, params):
                return init_model_state(rng, batch, params[SINGLE])

        hook = None
        if post_update is not None:

            def hook(params, state, step):
                return post_update(params[SINGLE], state, step)

        return cls(
            init=lambda rng, batch: {SINGLE: init(rng, batch)},
            players=(Player(SINGLE, player_loss, optimizer, stateful=stateful),),
            init_model_state=state_init,
            post_update=hook,
        )


SINGLE = "model"

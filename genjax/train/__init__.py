"""The one training engine: tasks, train states, compiled steps, loops and checkpoints."""

from genjax.task import SINGLE, Player, Task
from genjax.train.checkpoint import Checkpointer, CheckpointError, ResumeError
from genjax.train.loop import FitResult, NonFiniteError, TrainConfig, chunk_ends, fit
from genjax.train.metrics_log import MetricsLog, write_figures
from genjax.train.state import TrainState, init_state
from genjax.train.step import STRATEGIES, Engine, make_update

__all__ = [
    "SINGLE",
    "STRATEGIES",
    "CheckpointError",
    "Checkpointer",
    "Engine",
    "FitResult",
    "MetricsLog",
    "NonFiniteError",
    "Player",
    "ResumeError",
    "Task",
    "TrainConfig",
    "TrainState",
    "chunk_ends",
    "fit",
    "init_state",
    "make_update",
    "write_figures",
]

"""Subprocess for the resume test: trains the toy task into a work directory.

argv: workdir steps kill_mode kill_at out_npz
  kill_mode: none | step (SIGKILL itself right after logging step kill_at)
           | save (SIGKILL itself while the checkpoint of step kill_at is being written)
"""

import os
import signal
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import toy

from genjax.data import Preprocess
from genjax.train import fit

workdir, steps, mode, kill_at, out = sys.argv[1:6]
steps, kill_at = int(steps), int(kill_at)

if mode == "save":
    # Die at the moment Orbax would rename the finished temporary directory of step kill_at
    # to its final name: the data is written, the checkpoint is not committed. (Dying right
    # after Checkpointer.save returned raced the background writer, which under load had
    # not yet created the temporary directory.)
    from orbax.checkpoint._src.path import atomicity

    real_finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize_or_die(self, *args, **kwargs):
        if self.get_final().name == str(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
        return await real_finalize(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die


def on_log(step, record):
    if mode == "step" and step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


config = toy.train_config(
    steps, seed=3, fuse_steps=4, log_every=4, checkpoint_every=8, keep_checkpoints=2
)
result = fit(
    toy.task(noise=0.1),
    toy.digits_dataset(),
    config,
    workdir,
    preprocess_spec=Preprocess(flatten=True, binarize="dynamic"),
    on_log=on_log,
)
flat = {
    jax.tree_util.keystr(p): np.asarray(v)
    for p, v in jax.tree_util.tree_leaves_with_path(result.state.params)
}
np.savez(out, step=int(result.state.step), **flat)

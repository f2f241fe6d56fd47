"""Subprocess for the resume test: trains the toy task into a work directory.

argv: workdir steps kill_mode kill_at out_npz
  kill_mode: none | step (SIGKILL itself right after logging step kill_at)
           | save (SIGKILL itself while the checkpoint of step kill_at is being written)
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import toy

from genjax.data import Preprocess
from genjax.train import fit

workdir, steps, mode, kill_at, out = sys.argv[1:6]
steps, kill_at = int(steps), int(kill_at)

on_log = toy.kill_hooks(mode, kill_at)

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
np.savez(out, step=int(result.state.step), **toy.flat_params(result.state.params))

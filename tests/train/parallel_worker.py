"""Subprocess for the data-parallel tests (needs XLA_FLAGS set before JAX starts).

argv[1] == "strategies": 20 steps of the toy task through every strategy, per step, scan-fused
and device-resident; prints the largest parameter difference from the one-device run as JSON.
argv[1] == "host" PID PORT WORKDIR OUT: one process of a two-process run (jax.distributed).
argv[1] == "single" WORKDIR OUT: the same training in one process, for comparison.
"""

import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import toy

from genjax.data import Preprocess
from genjax.data.pipeline import Batcher, preprocess
from genjax.train import STRATEGIES, Engine, TrainConfig, fit, init_state

SPEC = Preprocess(flatten=True)
STEPS, BATCH = 20, 64


def prepare(raw, rng):
    return preprocess(raw, rng, SPEC, 16)


def flat_params(params):
    return {
        jax.tree_util.keystr(p): np.asarray(v)
        for p, v in jax.tree_util.tree_leaves_with_path(params)
    }


def strategies():
    data = toy.digits_dataset(1024)
    task = toy.task()
    batcher = Batcher(data, BATCH, seed=1)
    raws = batcher.raw_batches(0, STEPS)
    example = prepare({k: v[0] for k, v in raws.items()}, None)
    host0 = jax.tree.map(np.asarray, init_state(task, jax.random.PRNGKey(0), example))
    results = {"devices": jax.device_count()}
    reference = None
    for strategy in STRATEGIES:
        engine = Engine(task, prepare, strategy=strategy, donate=False)
        outs = {}
        s = engine.place_state(host0)
        for i in range(STEPS):
            s, _ = engine.step(s, engine.place_batch(batcher.raw_batch(i)))
        outs["step"] = engine.fetch_state(s)
        s, _ = engine.run(engine.place_state(host0), engine.place_batch(raws, stacked=True))
        outs["run"] = engine.fetch_state(s)
        resident = engine.place_resident(dict(data.features))
        s, _ = engine.run_on_device(
            engine.place_state(host0), resident, num_steps=STEPS, batch_size=BATCH, seed=1
        )
        outs["device"] = engine.fetch_state(s)
        if reference is None:
            reference = flat_params(outs["step"].params)
        for mode, st in outs.items():
            assert int(st.step) == STEPS
            got = flat_params(st.params)
            diff = max(float(np.max(np.abs(got[k] - reference[k]))) for k in reference)
            results[f"{strategy}/{mode}"] = diff
    print(json.dumps(results))


def train(workdir, out, strategy):
    config = TrainConfig(
        steps=STEPS,
        batch_size=BATCH,
        seed=1,
        strategy=strategy,
        fuse_steps=5,
        log_every=5,
        checkpoint_every=10,
        progress=False,
    )
    result = fit(
        toy.task(noise=0.0), toy.digits_dataset(1024), config, workdir, preprocess_spec=SPEC
    )
    if jax.process_index() == 0:
        np.savez(out, **flat_params(result.state.params))


if __name__ == "__main__":
    if sys.argv[1] == "strategies":
        strategies()
    elif sys.argv[1] == "host":
        pid, port, workdir, out = sys.argv[2:6]
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=int(pid)
        )
        assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
        train(workdir, out, "mesh")
        jax.distributed.shutdown()
    else:
        train(sys.argv[2], sys.argv[3], "jit")

"""Resume after SIGKILL ends bitwise equal to a run that was never interrupted."""

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import toy

WORKER = Path(__file__).with_name("resume_worker.py")
STEPS = 48


def _run(workdir, out, mode="none", kill_at=0, env=None, timeout=None):
    cmd = [sys.executable, str(WORKER), str(workdir), str(STEPS), mode, str(kill_at), str(out)]
    return toy.run_worker(cmd, env=env, timeout=timeout)


@pytest.fixture
def env(tmp_path):
    return toy.cache_env(tmp_path)


_params = toy.load_params


@pytest.mark.slow
def test_sigkill_at_five_points_resumes_bitwise(tmp_path, env):
    ref = _run(tmp_path / "ref", tmp_path / "ref.npz", env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]

    work, out = tmp_path / "killed", tmp_path / "killed.npz"
    # Five kills at known points: before the first checkpoint (the restart begins from
    # scratch), between checkpoints, in the middle of two saves, and right after a save.
    kills = [("step", 4), ("step", 12), ("save", 24), ("step", 28), ("save", 40)]
    previous = None
    for mode, at in kills:
        r = _run(work, out, mode, at, env=env)
        assert r.returncode == -9, (mode, at, r.returncode, r.stderr[-3000:])
        if previous is not None and previous[0] == "save":
            # The restart names the save the previous kill left half-written.
            assert f"half-written checkpoint {work / 'checkpoints'}/{previous[1]}." in r.stderr
        previous = (mode, at)
        assert not out.exists()
        if mode == "step" and at < 8:
            # Killed before the first checkpoint: the restart has nothing to resume from.
            ckpts = work / "checkpoints"
            assert not ckpts.exists() or not any(p.name.isdigit() for p in ckpts.iterdir())
        if mode == "save":
            # Killed mid-write: only Orbax's temporary directory exists for that step.
            names = {p.name for p in (work / "checkpoints").iterdir()}
            assert f"{at}.orbax-checkpoint-tmp" in names and str(at) not in names, names
    # Two more SIGKILLs from outside at arbitrary moments (they may also land during start-up
    # or after the run has finished; either way the final result must not change).
    rnd = random.Random(0)
    for _ in range(2):
        _run(work, out, env=env, timeout=rnd.uniform(4.0, 9.0))
    if out.exists():
        out.unlink()
    final = _run(work, out, env=env)
    assert final.returncode == 0, final.stderr[-3000:]

    a, b = _params(tmp_path / "ref.npz"), _params(out)
    assert a.keys() == b.keys()
    assert int(a["step"]) == int(b["step"]) == STEPS
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # The metrics log has one train line per logged step, no duplicates from the replays.
    lines = (work / "metrics.jsonl").read_text().splitlines()
    steps = [int(json.loads(line)["step"]) for line in lines]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == STEPS // 4
